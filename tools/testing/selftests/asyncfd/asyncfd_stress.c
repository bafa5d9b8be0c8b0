// SPDX-License-Identifier: GPL-2.0
/*
 * Stress for asyncfd: the test producer posts from every context at once
 * (and from every CPU at once) while consumers reap, flush in what waits
 * in the kernel, swap their rings to random sizes, and close and
 * re-create their asyncfds.  Posts are larger than small rings hold, and
 * mostly retry what the kernel refuses for want of room.  Every cookie
 * handed over must come back once, and none twice; pinned memory must
 * come back to where it started.  Consumers wait with no timeout.
 *
 * Results that wait in the kernel when their asyncfd is closed are
 * dropped with it, so a close that races posts may cost some of them.
 * Half the re-creations close only once posts to the asyncfd have ended
 * and all that waits was flushed in: a post whose asyncfd ends so, or at
 * the end of the run, must deliver exactly what it handed over.
 *
 * Then hostile userspace: while producers post, a thread scribbles over
 * the ring header and entries, flushes, and munmaps and remaps the ring.
 * That ring may deliver garbage, but the kernel must not write outside
 * it, and a well-behaved ring beside it must not lose a result.
 *
 * Both run for a time and check what they did, not how fast: a slower
 * host posts fewer results, as long as there were STRESS_MIN_RESULTS.
 *
 * Knobs, from the environment:
 *	ASYNCFD_STRESS_SECONDS	how long the stress posts (default 20)
 *	ASYNCFD_HOSTILE_SECONDS	length of the hostile run (default 10)
 *	ASYNCFD_STRESS_SEED	seed of the random choices (default: time)
 */

#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "asyncfd_ring.h"
#include "required.h"
#include "stress_helpers.h"
#include "test_producer.h"

/* Plenty for the rings below, and small next to the guest's memory. */
#define STRESS_MEMLOCK_PAGES	4096
/* What the memlock probe may pin: enough to see a leak of a page. */
#define PROBE_MEMLOCK_PAGES	64
/* Proof that the stress ran, whatever the speed of the host. */
#define STRESS_MIN_RESULTS	50000
#define MAX_BATCH		64
/*
 * A gated close first swaps to a ring this large: a retried call of
 * MAX_BATCH then fits as soon as the ring is empty, and posts end.
 */
#define GATE_RING		(4 * MAX_BATCH)

/* The producer's report of one post, to check the cookies against. */
struct post_record {
	uint64_t cookie;
	uint32_t count;
	uint32_t stored;
	uint32_t waited;
	uint32_t unposted;
	uint32_t gen;		/* of the channel's asyncfd it went to */
	uint16_t channel;
	bool stale;		/* the fd was no asyncfd: nothing was posted */
	int error;
};

/*
 * Cookies are handed out from one counter, so each has an index into
 * @seen, which consumers bump as they reap.  The arrays bound the run as
 * well as the time budget does; a run that fills them just ends early.
 */
#define MAX_COOKIES	0x1000000
#define MAX_POSTS	0x40000
/* asyncfds a channel makes in a run, one after the other */
#define MAX_GENS	0x4000

struct stress;

/* A ring that was closed: its last results are reaped at the end. */
struct retired_ring {
	struct asyncfd_ring ring;
	struct retired_ring *next;
};

/* An asyncfd and the thread that consumes, swaps and re-creates it. */
struct channel {
	struct stress *st;
	/*
	 * @gate guards @fd, @gen, @closing and @posting.  A post reads
	 * @fd and @gen together, and counts in @posting until it is
	 * over; a gated close sets @closing, so that no post starts, and
	 * waits for @posting to reach 0, which @gate_fd tells.
	 */
	pthread_mutex_t gate;
	int fd;			/* what producers post to; may be stale */
	uint32_t gen;		/* which of the channel's asyncfds that is */
	bool closing;
	unsigned int posting;
	int gate_fd;
	/* Per gen: its asyncfd was closed while posts may have run. */
	uint8_t *racing;
	struct asyncfd_ring ring;
	struct retired_ring *retired;
	int timer;		/* a timerfd: time for the next swap or reopen */
	uint64_t rng;
	pthread_t thread;
	int ret;		/* 0, or why the consumer gave up */
	uint64_t reaped, swaps, swaps_waiting, reopens, gated, flushes, garbled;
	/* fdinfo's asyncfd-waited-total of the gens that ended gated */
	uint64_t gated_waited;
};

struct producer {
	struct stress *st;
	const char *context;
	bool all_cpus;
	uint64_t rng;
	pthread_t thread;
	int ret;
	uint64_t posts, stale_fd, retried_posts, retries;
};

#define NR_CHANNELS	2
#define NR_PRODUCERS	(ARRAY_SIZE(contexts) + 1)

struct stress {
	uint8_t *seen;			/* per cookie, times reaped */
	uint64_t next_cookie;		/* 1 + the index of the next cookie */
	struct post_record *posts;
	uint32_t nr_posts;
	uint64_t posted;		/* results the producer accounted for */
	unsigned int nr_cpus;
	bool stop;			/* producers: no new posts */
	unsigned int producing;		/* producers still running */
	bool drain;			/* consumers: producers are gone */
	int drain_fd;			/* an eventfd that wakes them for it */
	uint64_t stray;			/* cookies no post handed out */
	struct channel channels[NR_CHANNELS];
	struct producer producers[NR_PRODUCERS];
};

static unsigned int random_ring_size(uint64_t *rng)
{
	/* Now and then the smallest ring: one slot stays empty, one holds. */
	if (rng_one_in(rng, 64))
		return 2;
	if (rng_one_in(rng, 4))
		return 2 + rng_below(rng, 63);
	return 64 + rng_below(rng, 4033);
}

/* Count what @ring holds, and hand the slots back. */
static void channel_reap(struct channel *ch, struct asyncfd_ring *ring)
{
	struct stress *st = ch->st;
	struct asyncfd_result res[128];
	unsigned int n, i;

	while ((n = asyncfd_reap(ring, res, ARRAY_SIZE(res)))) {
		for (i = 0; i < n; i++) {
			uint64_t idx = res[i].cookie - 1;

			if (res[i].cookie == 0 ||
			    idx >= __atomic_load_n(&st->next_cookie, __ATOMIC_ACQUIRE)) {
				__atomic_fetch_add(&st->stray, 1, __ATOMIC_RELAXED);
				continue;
			}
			__atomic_fetch_add(&st->seen[idx], 1, __ATOMIC_RELAXED);
			/* Where it ran: one context bit, on a CPU we have. */
			if (__builtin_popcountll(res[i].res) != 1 ||
			    res[i].res > TEST_PRODUCER_IN_TASK ||
			    (uint64_t)res[i].res2 >= st->nr_cpus)
				ch->garbled++;
		}
		ch->reaped += n;
	}
}

/*
 * The consumer's loop: reap, and while kflags says that results wait,
 * flush them into the room just made and reap again.  Ends with the
 * ring empty and nothing waiting, as far as the last look could tell.
 */
static void channel_consume(struct channel *ch)
{
	int ret;

	for (;;) {
		channel_reap(ch, &ch->ring);
		if (!asyncfd_waiting(&ch->ring))
			return;
		ret = asyncfd_flush(&ch->ring);
		if (ret < 0) {
			ch->ret = ret;
			return;
		}
		ch->flushes++;
	}
}

/* Reap @ring one last time, once the kernel no longer stores into it. */
static void channel_retire(struct channel *ch, struct asyncfd_ring *ring)
{
	channel_reap(ch, ring);
	asyncfd_ring_exit(ring);
}

/* A post may start on @ch unless a gated close waits for posts to end. */
static bool channel_enter(struct channel *ch, int *fd, uint32_t *gen)
{
	bool open;

	pthread_mutex_lock(&ch->gate);
	open = !ch->closing;
	if (open) {
		ch->posting++;
		*fd = ch->fd;
		*gen = ch->gen;
	}
	pthread_mutex_unlock(&ch->gate);
	return open;
}

static void channel_leave(struct channel *ch)
{
	pthread_mutex_lock(&ch->gate);
	if (!--ch->posting && ch->closing)
		eventfd_write(ch->gate_fd, 1);
	pthread_mutex_unlock(&ch->gate);
}

/* Make @ring the channel's next asyncfd, which posts then go to. */
static void channel_publish(struct channel *ch, struct asyncfd_ring *ring)
{
	pthread_mutex_lock(&ch->gate);
	ch->ring = *ring;
	ch->fd = ring->fd;
	ch->gen++;
	ch->closing = false;
	pthread_mutex_unlock(&ch->gate);
}

static void channel_mark_racing(struct channel *ch)
{
	pthread_mutex_lock(&ch->gate);
	ch->racing[ch->gen] = 1;
	pthread_mutex_unlock(&ch->gate);
}

/*
 * Results that wait move into the new ring, as far as it has room; the
 * old one keeps what was stored before the swap: reap it, drop it.
 */
static int channel_swap(struct channel *ch, unsigned int size)
{
	struct asyncfd_ring next;
	int err;

	err = asyncfd_ring_map(&next, size);
	if (err)
		return err;
	ch->swaps_waiting += asyncfd_waiting(&ch->ring);
	err = asyncfd_ring_swap(&ch->ring, &next);
	if (err) {
		asyncfd_ring_exit(&next);
		return err;
	}
	channel_retire(ch, &ch->ring);
	ch->ring = next;
	ch->swaps++;
	return 0;
}

/*
 * Close the asyncfd once no post to it is running, and all that waited
 * in the kernel is in the ring: then it drops nothing.  Its kernel's
 * total of what waited goes into @gated_waited.
 */
static int channel_close_gated(struct channel *ch)
{
	struct pollfd pfd[2] = {
		{ .fd = ch->gate_fd, .events = POLLIN },
		{ .fd = ch->ring.fd, .events = POLLIN },
	};
	unsigned int posting;
	eventfd_t val;
	long long waited;

	pthread_mutex_lock(&ch->gate);
	ch->closing = true;
	pthread_mutex_unlock(&ch->gate);
	eventfd_read(ch->gate_fd, &val);
	/* A retried call larger than the ring could otherwise never end. */
	if (ch->ring.size < GATE_RING && !ch->ret)
		ch->ret = channel_swap(ch, GATE_RING);
	while (!ch->ret) {
		pthread_mutex_lock(&ch->gate);
		posting = ch->posting;
		pthread_mutex_unlock(&ch->gate);
		channel_consume(ch);
		if (!posting)
			break;
		/* The last post to end, or results, wake us. */
		if (poll(pfd, ARRAY_SIZE(pfd), -1) < 0 && errno != EINTR)
			ch->ret = -errno;
		if (pfd[0].revents)
			eventfd_read(ch->gate_fd, &val);
	}
	/* No post runs, and none can start: what waits now is all there is. */
	channel_consume(ch);
	waited = fdinfo_waited_total(ch->ring.fd);
	if (waited >= 0)
		ch->gated_waited += waited;
	else if (!ch->ret)
		ch->ret = -ENOENT;
	close(ch->ring.fd);
	ch->ring.fd = -1;
	return ch->ret;
}

/*
 * Close the asyncfd and make a new one, in one of three ways.  Gated:
 * once posts to it have ended, losing nothing.  Racing: close at once,
 * so that producers meet a closed descriptor for a while; or dup2() a
 * new asyncfd over the old number, so that they carry on into the new
 * ring.  A racing close drops what waits in the kernel, and a producer
 * that looked the old file up before may still store into the old ring,
 * which stays mapped until the end to be reaped.
 */
static int channel_reopen(struct channel *ch)
{
	struct retired_ring *old = malloc(sizeof(*old));
	struct asyncfd_ring next;
	unsigned int how = rng_below(&ch->rng, 4);
	int err;

	if (!old)
		return -ENOMEM;
	if (how < 2) {
		err = channel_close_gated(ch);
		old->ring = ch->ring;
		ch->gated++;
	} else if (how == 2) {
		channel_mark_racing(ch);
		close(ch->ring.fd);
		ch->ring.fd = -1;
		old->ring = ch->ring;
		err = 0;
	} else {
		err = asyncfd_ring_setup(&next, random_ring_size(&ch->rng), 0);
		if (err) {
			free(old);
			return err;
		}
		channel_mark_racing(ch);
		if (dup2(next.fd, ch->ring.fd) < 0) {
			err = -errno;
			asyncfd_ring_exit(&next);
			free(old);
			return err;
		}
		close(next.fd);
		next.fd = ch->ring.fd;
		old->ring = ch->ring;
		old->ring.fd = -1;
	}
	if (!err && how < 3)
		err = asyncfd_ring_setup(&next, random_ring_size(&ch->rng), 0);
	old->next = ch->retired;
	ch->retired = old;
	if (err) {
		ch->ring = (struct asyncfd_ring){ .fd = -1 };
		return err;
	}
	channel_publish(ch, &next);
	ch->reopens++;
	return 0;
}

/*
 * Sleep with no timeout: results, and results that wait, wake us through
 * the ring, the timer for the next swap or reopen, and the end of the
 * run through the drain eventfd.
 */
static void *consumer_run(void *arg)
{
	struct channel *ch = arg;
	struct stress *st = ch->st;
	int64_t next_swap = mono_ns(), next_reopen = mono_ns();
	struct retired_ring *old;

	while (!__atomic_load_n(&st->drain, __ATOMIC_ACQUIRE) && !ch->ret) {
		struct pollfd pfd[] = {
			{ .fd = ch->timer, .events = POLLIN },
			{ .fd = st->drain_fd, .events = POLLIN },
			{ .events = POLLIN },	/* the ring's fd, set after a reopen */
		};
		int64_t now = mono_ns();
		uint64_t reaped = ch->reaped;
		bool rearm = false;

		if (now >= next_swap) {
			ch->ret = channel_swap(ch, random_ring_size(&ch->rng));
			next_swap = now + rng_below(&ch->rng, 20000000);
			rearm = true;
		}
		if (now >= next_reopen && !ch->ret) {
			ch->ret = channel_reopen(ch);
			next_reopen = now + rng_below(&ch->rng, 100000000);
			/* The last gen is for the end of the run. */
			if (ch->gen >= MAX_GENS - 1)
				next_reopen = INT64_MAX;
			rearm = true;
		}
		/* Arming it again also takes back a timer that fired. */
		if (rearm && !ch->ret)
			ch->ret = timerfd_at(ch->timer, next_swap < next_reopen ?
					     next_swap : next_reopen);
		if (ch->ret)
			break;
		channel_consume(ch);
		/* What comes after the last look keeps the fd readable. */
		pfd[2].fd = ch->ring.fd;
		if (ch->reaped == reaped && !ch->ret &&
		    poll(pfd, ARRAY_SIZE(pfd), -1) < 0 && errno != EINTR)
			ch->ret = -errno;
	}

	/* No producer is left: close the last asyncfd as a gated one. */
	if (ch->ring.fd >= 0 && !ch->ret)
		channel_close_gated(ch);
	if (ch->ring.fd >= 0) {
		channel_mark_racing(ch);
		close(ch->ring.fd);
	}
	if (ch->ring.mem)
		channel_retire(ch, &ch->ring);
	while ((old = ch->retired)) {
		ch->retired = old->next;
		channel_retire(ch, &old->ring);
		free(old);
	}
	return NULL;
}

/* Hand out @count cookies and a record for the post, or false when out. */
static struct post_record *take_post(struct stress *st, uint32_t count)
{
	uint64_t first = __atomic_fetch_add(&st->next_cookie, count,
					    __ATOMIC_ACQ_REL);
	uint32_t idx;

	if (first + count > MAX_COOKIES)
		return NULL;
	idx = __atomic_fetch_add(&st->nr_posts, 1, __ATOMIC_RELAXED);
	if (idx >= MAX_POSTS)
		return NULL;
	st->posts[idx].cookie = first + 1;
	st->posts[idx].count = count;
	return &st->posts[idx];
}

/* A post's outcome: every result accounted for, and only known errors. */
static bool post_sane(const struct post_result *pr, uint32_t count, bool retry)
{
	if (pr->stored + pr->waited + pr->unposted != count)
		return false;
	/* A post ends early only with an error, and the error says why. */
	if (!pr->error != !pr->unposted)
		return false;
	switch (pr->error) {
	case 0:
	case -EBADFD:
	/* More than the ring and the copies can ever take, retried or not. */
	case -E2BIG:
		return true;
	case -ENOSPC:
	case -ENOMEM:
		return !retry;
	default:
		return false;
	}
}

/*
 * Three posts in four retry calls that find no room for copies, which
 * the consumers make; the fourth ends at the first such call.
 */
static void *producer_run(void *arg)
{
	static const char * const irq_contexts[] = {
		"kthread", "workqueue", "softirq", "hardirq",
	};
	struct producer *p = arg;
	struct stress *st = p->st;
	int tp = test_producer_open();

	p->ret = tp < 0 ? tp : 0;
	while (!p->ret && !__atomic_load_n(&st->stop, __ATOMIC_ACQUIRE)) {
		unsigned int chan = rng_below(&p->rng, NR_CHANNELS);
		struct channel *ch = &st->channels[chan];
		unsigned int per_cpu = 1 + rng_below(&p->rng, 1024);
		unsigned int batch = 1 + rng_below(&p->rng, MAX_BATCH);
		unsigned int cpus = p->all_cpus ? st->nr_cpus : 1;
		bool retry = !rng_one_in(&p->rng, 4);
		const char *context = p->context;
		struct post_result pr;
		struct post_record *rec;
		uint32_t gen;
		int fd;

		if (p->all_cpus)
			context = irq_contexts[rng_below(&p->rng, ARRAY_SIZE(irq_contexts))];
		if (!channel_enter(ch, &fd, &gen)) {
			sched_yield();
			continue;
		}
		rec = take_post(st, per_cpu * cpus);
		if (!rec) {
			channel_leave(ch);
			break;
		}
		rec->channel = chan;
		rec->gen = gen;
		p->ret = test_producer_send_from(tp, fd, context, p->all_cpus, retry,
						 rec->cookie, per_cpu, batch, &pr);
		channel_leave(ch);
		/*
		 * The consumer closed the fd, or its number went to a file
		 * that is not an asyncfd: nothing was posted.
		 */
		if (p->ret == -EBADF || p->ret == -EINVAL) {
			p->ret = 0;
			p->stale_fd++;
			rec->stale = true;
			continue;
		}
		if (p->ret)
			break;
		if (!post_sane(&pr, rec->count, retry)) {
			p->ret = -EPROTO;
			break;
		}
		rec->stored = pr.stored;
		rec->waited = pr.waited;
		rec->unposted = pr.unposted;
		rec->error = pr.error;
		__atomic_fetch_add(&st->posted, rec->count, __ATOMIC_RELAXED);
		p->posts++;
		p->retried_posts += !!pr.retries;
		p->retries += pr.retries;
	}
	if (tp >= 0)
		close(tp);
	__atomic_fetch_sub(&st->producing, 1, __ATOMIC_RELEASE);
	return NULL;
}

FIXTURE(stress) {
	struct stress st;
	long long vmpin_base;
	long memlock_base;
	uint64_t seed;
};

FIXTURE_SETUP(stress)
{
	unsigned int i;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	self->seed = env_knob("ASYNCFD_STRESS_SEED", mono_ns());
	ksft_print_msg("seed %llu (ASYNCFD_STRESS_SEED replays the choices)\n",
		       (unsigned long long)self->seed);

	/* Without CAP_IPC_LOCK, rings are charged to our locked_vm. */
	ASSERT_EQ(0, set_ipc_lock(false));
	self->vmpin_base = vmpin_now_kb();
	ASSERT_LE(0, self->vmpin_base);
	self->memlock_base = memlock_headroom(PROBE_MEMLOCK_PAGES);
	ASSERT_LT(0, self->memlock_base);
	ASSERT_EQ(0, set_memlock_pages(STRESS_MEMLOCK_PAGES));

	self->st.seen = calloc(MAX_COOKIES, 1);
	self->st.posts = calloc(MAX_POSTS, sizeof(*self->st.posts));
	ASSERT_NE(NULL, self->st.seen);
	ASSERT_NE(NULL, self->st.posts);
	for (i = 0; i < NR_CHANNELS; i++) {
		self->st.channels[i].racing = calloc(MAX_GENS, 1);
		ASSERT_NE(NULL, self->st.channels[i].racing);
	}
	self->st.nr_cpus = get_nprocs();
}

FIXTURE_TEARDOWN(stress)
{
	unsigned int i;

	for (i = 0; i < NR_CHANNELS; i++)
		free(self->st.channels[i].racing);
	free(self->st.seen);
	free(self->st.posts);
}

/* Pinned memory is back: VmPin, and the user's locked_vm. */
static void expect_unpinned(struct __test_metadata *_metadata,
			    long long vmpin_base, long memlock_base)
{
	EXPECT_EQ(vmpin_base, vmpin_settled(vmpin_base));
	EXPECT_EQ(memlock_base, memlock_headroom(PROBE_MEMLOCK_PAGES));
}

struct tally {
	uint64_t handed, delivered, waited, unposted, lost, dup, phantom;
	uint64_t exact, exact_waited;	/* posts to asyncfds closed gated */
	uint64_t dropped;		/* waited, then a racing close */
};

/*
 * Check every post's cookies against what the producer reported.  The
 * results a post handed over are its first stored + waited, but with
 * "all", each CPU's share ends on its own, so only counts are checked.
 */
static void tally_posts(const struct stress *st, struct tally *t)
{
	uint32_t nr = st->nr_posts < MAX_POSTS ? st->nr_posts : MAX_POSTS;
	uint32_t i, j;

	memset(t, 0, sizeof(*t));
	for (i = 0; i < nr; i++) {
		const struct post_record *rec = &st->posts[i];
		uint32_t handed = rec->stored + rec->waited;
		uint32_t once = 0;
		bool exact;

		for (j = 0; j < rec->count; j++) {
			uint8_t seen = st->seen[rec->cookie - 1 + j];

			once += seen > 0;
			t->dup += seen > 1 ? seen - 1 : 0;
		}
		t->handed += handed;
		t->delivered += once;
		t->waited += rec->waited;
		t->unposted += rec->unposted;
		if (once > handed) {
			t->phantom += once - handed;
			continue;
		}
		exact = !rec->stale && !st->channels[rec->channel].racing[rec->gen];
		if (exact) {
			t->exact++;
			t->exact_waited += rec->waited;
			t->lost += handed - once;
		} else if (once < rec->stored) {
			/* What was stored is in a ring, closed or not. */
			t->lost += rec->stored - once;
		} else {
			t->dropped += handed - once;
		}
	}
}

TEST_F_TIMEOUT(stress, every_cookie_once_while_rings_churn, 150)
{
	struct stress *st = &self->st;
	int64_t start = mono_ns();
	int64_t end = start + env_knob("ASYNCFD_STRESS_SECONDS", 20) * NSEC_PER_SEC;
	uint64_t swaps = 0, swaps_waiting = 0, reopens = 0, gated = 0, flushes = 0;
	uint64_t reaped = 0, garbled = 0, gated_waited = 0;
	uint64_t stale_fd = 0, retried_posts = 0, retries = 0;
	struct tally t;
	unsigned int i;

	st->drain_fd = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, st->drain_fd);
	for (i = 0; i < NR_CHANNELS; i++) {
		struct channel *ch = &st->channels[i];

		ch->st = st;
		ch->rng = self->seed + 1000 + i;
		ASSERT_EQ(0, pthread_mutex_init(&ch->gate, NULL));
		ch->gate_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		ASSERT_LE(0, ch->gate_fd);
		ch->timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		ASSERT_LE(0, ch->timer);
		ASSERT_EQ(0, asyncfd_ring_setup(&ch->ring, random_ring_size(&ch->rng), 0));
		ch->fd = ch->ring.fd;
		ASSERT_EQ(0, pthread_create(&ch->thread, NULL, consumer_run, ch));
	}
	st->producing = NR_PRODUCERS;
	for (i = 0; i < NR_PRODUCERS; i++) {
		struct producer *p = &st->producers[i];

		p->st = st;
		p->rng = self->seed + i;
		/* The last producer posts from every CPU at once. */
		p->all_cpus = i == ARRAY_SIZE(contexts);
		p->context = p->all_cpus ? "all" : contexts[i];
		ASSERT_EQ(0, pthread_create(&p->thread, NULL, producer_run, p));
	}

	/*
	 * Producers stop early on an error, which the joins report, or
	 * once they are out of cookies, which is no failure.
	 */
	while (__atomic_load_n(&st->producing, __ATOMIC_ACQUIRE) == NR_PRODUCERS &&
	       mono_ns() < end)
		usleep(50000);
	__atomic_store_n(&st->stop, true, __ATOMIC_RELEASE);
	for (i = 0; i < NR_PRODUCERS; i++) {
		struct producer *p = &st->producers[i];

		ASSERT_EQ(0, pthread_join(p->thread, NULL));
		EXPECT_EQ(0, p->ret) TH_LOG("producer %s", p->context);
		EXPECT_LT(0, p->posts) TH_LOG("producer %s", p->context);
		stale_fd += p->stale_fd;
		retried_posts += p->retried_posts;
		retries += p->retries;
	}
	__atomic_store_n(&st->drain, true, __ATOMIC_RELEASE);
	ASSERT_EQ(0, eventfd_write(st->drain_fd, 1));
	for (i = 0; i < NR_CHANNELS; i++) {
		struct channel *ch = &st->channels[i];

		ASSERT_EQ(0, pthread_join(ch->thread, NULL));
		EXPECT_EQ(0, ch->ret) TH_LOG("channel %u: %s", i, strerror(-ch->ret));
		swaps += ch->swaps;
		swaps_waiting += ch->swaps_waiting;
		reopens += ch->reopens;
		gated += ch->gated;
		flushes += ch->flushes;
		reaped += ch->reaped;
		garbled += ch->garbled;
		gated_waited += ch->gated_waited;
		close(ch->timer);
		close(ch->gate_fd);
		pthread_mutex_destroy(&ch->gate);
	}
	close(st->drain_fd);

	tally_posts(st, &t);
	ksft_print_msg("results %llu handed %llu delivered %llu unposted %llu lost %llu dup %llu\n",
		       (unsigned long long)st->posted,
		       (unsigned long long)t.handed,
		       (unsigned long long)t.delivered,
		       (unsigned long long)t.unposted,
		       (unsigned long long)t.lost, (unsigned long long)t.dup);
	ksft_print_msg("waited %llu exact-posts %llu of which waited %llu dropped-at-close %llu\n",
		       (unsigned long long)t.waited,
		       (unsigned long long)t.exact,
		       (unsigned long long)t.exact_waited,
		       (unsigned long long)t.dropped);
	ksft_print_msg("posts %u retried %llu retries %llu stale-fd %llu\n",
		       st->nr_posts, (unsigned long long)retried_posts,
		       (unsigned long long)retries, (unsigned long long)stale_fd);
	ksft_print_msg("swaps %llu while-waiting %llu reopens %llu gated %llu flushes %llu\n",
		       (unsigned long long)swaps, (unsigned long long)swaps_waiting,
		       (unsigned long long)reopens, (unsigned long long)gated,
		       (unsigned long long)flushes);
	ksft_print_msg("reaped %llu phantom %llu stray %llu garbled %llu seconds %.1f\n",
		       (unsigned long long)reaped,
		       (unsigned long long)t.phantom,
		       (unsigned long long)st->stray,
		       (unsigned long long)garbled,
		       (mono_ns() - start) / (double)NSEC_PER_SEC);
	fflush(stdout);

	EXPECT_LE(STRESS_MIN_RESULTS, st->posted);
	EXPECT_EQ(st->posted, t.handed + t.unposted);
	EXPECT_EQ(reaped, t.delivered + t.dup + st->stray);
	EXPECT_EQ(0, t.lost);
	EXPECT_EQ(0, t.dup);
	EXPECT_EQ(0, t.phantom);
	EXPECT_EQ(0, st->stray);
	EXPECT_EQ(0, garbled);
	/*
	 * The kernels of the asyncfds closed gated counted what waited in
	 * them: all that the exact posts made wait, and perhaps some that
	 * stale posts of the other channel did.
	 */
	EXPECT_LE(t.exact_waited, gated_waited);
	EXPECT_GE(t.waited, gated_waited);
	/* The run did what it is for. */
	EXPECT_LT(0, swaps);
	EXPECT_LT(0, reopens);
	EXPECT_LT(0, gated);
	EXPECT_LT(0, t.exact_waited);
	EXPECT_LT(0, flushes);
	EXPECT_LT(0, t.delivered);
	expect_unpinned(_metadata, self->vmpin_base, self->memlock_base);
}

/*
 * Hostile userspace.  Each ring lives in a mapping laid out as
 *
 *	guard | canary | header page | entry pages | canary | guard
 *
 * with the header mid-page and the last entries short of the page end,
 * so that canary bytes share pages with everything the kernel pins.
 * Guards are PROT_NONE; at the end they must still be untouched zeroes.
 */
#define HOSTILE_ENTRY_PAGES	4
#define HOSTILE_HDR_OFFSET	2048
#define HOSTILE_SLACK		3	/* canary entries after the ring */
#define HOSTILE_PAGES		(5 + HOSTILE_ENTRY_PAGES)

struct hostile_region {
	char *base;
	struct asyncfd_uring *hdr;
	struct asyncfd_result *entries;
	unsigned int size;
};

static size_t page_size(void)
{
	return getpagesize();
}

static uint8_t canary_byte(const struct hostile_region *r, const char *p)
{
	size_t off = p - r->base;

	return 0xa5 ^ (off * 31) ^ (off >> 8);
}

static bool in_ring(const struct hostile_region *r, const char *p)
{
	const char *hdr = (const char *)r->hdr;
	const char *entries = (const char *)r->entries;

	return (p >= hdr && p < hdr + sizeof(*r->hdr)) ||
	       (p >= entries && p < entries + r->size * sizeof(*r->entries));
}

/* Canary every byte of the inner pages [@first, @last) outside the ring. */
static void canary_fill(struct hostile_region *r, size_t first, size_t last)
{
	char *p;

	for (p = r->base + first * page_size(); p < r->base + last * page_size(); p++)
		if (!in_ring(r, p))
			*p = canary_byte(r, p);
}

/* Bytes outside the ring that are not what we left there. */
static size_t canary_damage(const struct hostile_region *r)
{
	const char *p;
	size_t bad = 0;

	for (p = r->base + page_size(); p < r->base + (HOSTILE_PAGES - 1) * page_size(); p++)
		if (!in_ring(r, p) && (uint8_t)*p != canary_byte(r, p))
			bad++;
	return bad;
}

/* A clean ring header, as asyncfd() accepts it. */
static void hostile_reset(struct hostile_region *r)
{
	memset(r->entries, 0, r->size * sizeof(*r->entries));
	memset(r->hdr, 0, sizeof(*r->hdr));
	r->hdr->ptr = (uintptr_t)r->entries;
	r->hdr->size = r->size;
}

static int hostile_map(struct hostile_region *r)
{
	size_t page = page_size();

	r->base = mmap(NULL, HOSTILE_PAGES * page, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (r->base == MAP_FAILED)
		return -errno;
	if (mprotect(r->base + page, (HOSTILE_PAGES - 2) * page,
		     PROT_READ | PROT_WRITE))
		return -errno;
	r->hdr = (struct asyncfd_uring *)(r->base + 2 * page + HOSTILE_HDR_OFFSET);
	r->entries = (struct asyncfd_result *)(r->base + 3 * page);
	r->size = HOSTILE_ENTRY_PAGES * page / sizeof(*r->entries) - HOSTILE_SLACK;
	canary_fill(r, 1, HOSTILE_PAGES - 1);
	hostile_reset(r);
	return 0;
}

/* Guard pages still zero: made readable for the look, then not again. */
static bool guards_untouched(const struct hostile_region *r)
{
	size_t page = page_size(), i;
	const char *guard;

	for (guard = r->base; guard < r->base + HOSTILE_PAGES * page;
	     guard += (HOSTILE_PAGES - 1) * page) {
		if (mprotect((void *)guard, page, PROT_READ))
			return false;
		for (i = 0; i < page; i++)
			if (guard[i])
				return false;
	}
	return true;
}

/*
 * Replace the pages from @first to @last with fresh ones: the kernel
 * keeps its pinned old pages, which we no longer see, and must not touch
 * the new ones outside what we write.
 */
static int hostile_remap(struct hostile_region *r, size_t first, size_t last)
{
	size_t page = page_size();
	void *at = r->base + first * page;

	if (munmap(at, (last - first) * page))
		return -errno;
	if (mmap(at, (last - first) * page, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != at)
		return -errno;
	canary_fill(r, first, last);
	return 0;
}

struct hostile {
	struct hostile_region regions[2];
	int fd;
	bool stop;
	uint64_t rng;
	uint64_t scribbles, remaps, swaps, swaps_refused, flushes;
	int ret;
};

static void scribble_once(struct hostile *h, struct hostile_region *r)
{
	uint64_t val = rng_next(&h->rng);

	switch (rng_below(&h->rng, 8)) {
	case 0:
		/* At or past size, no room: results wait, up to the bound. */
		r->hdr->iuser = val;
		break;
	case 1:
		/* The kernel's words: it never reads them back. */
		r->hdr->ikernel = val;
		break;
	case 2:
		r->hdr->kflags = rng_one_in(&h->rng, 2) ? ASYNCFD_KF_WAITING : val;
		break;
	case 3:
		r->hdr->ptr = rng_one_in(&h->rng, 2) ? val : (uintptr_t)r->base;
		break;
	case 4:
		r->hdr->size = val;
		break;
	case 5:
		r->entries[val % r->size].cookie = val;
		break;
	case 6:
		/* Consume as a sloppy reader would: skip ahead. */
		r->hdr->iuser = (r->hdr->iuser + 1 + val % 8) % r->size;
		break;
	case 7:
		memset(r->entries, rng_one_in(&h->rng, 2) ? 0 : (int)val,
		       r->size * sizeof(*r->entries));
		break;
	}
	h->scribbles++;
}

static void *scribbler_run(void *arg)
{
	struct hostile *h = arg;
	unsigned int cur = 0;

	while (!h->ret && !__atomic_load_n(&h->stop, __ATOMIC_ACQUIRE)) {
		struct hostile_region *r = &h->regions[cur];

		if (rng_one_in(&h->rng, 200)) {
			/* The header page, the entries, or both. */
			size_t first = rng_one_in(&h->rng, 2) ? 2 : 3;
			size_t last = rng_one_in(&h->rng, 2) ? 3 : HOSTILE_PAGES - 2;

			if (last <= first)
				last = HOSTILE_PAGES - 2;
			h->ret = hostile_remap(r, first, last);
			h->remaps++;
		} else if (rng_one_in(&h->rng, 50)) {
			/* Ask for what waits, whatever the header says. */
			if (sys_asyncfd(h->fd, NULL, 0) < 0)
				h->ret = -errno;
			h->flushes++;
		} else if (rng_one_in(&h->rng, 100)) {
			/* Move to the other ring, which may be garbage too. */
			struct hostile_region *next = &h->regions[!cur];

			if (rng_one_in(&h->rng, 4))
				hostile_reset(next);
			if (sys_asyncfd(h->fd, next->hdr, 0) == h->fd) {
				cur = !cur;
				h->swaps++;
			} else if (errno == EINVAL || errno == EFAULT) {
				h->swaps_refused++;
			} else {
				h->ret = -errno;
			}
		} else {
			scribble_once(h, r);
		}
	}
	return NULL;
}

struct steady_producer {
	int fd;
	const char *context;
	bool all_cpus;
	bool retry;		/* for a ring that is consumed */
	bool *stop;
	int done_fd;		/* an eventfd written at the end, or -1 */
	uint64_t cookie;	/* next cookie, from a range of its own */
	uint64_t posted, stored, waited, unposted;
	int ret;
	pthread_t thread;
};

/*
 * Post again and again into @fd, whose ring is not our business.  With
 * nobody consuming it, the kernel refuses calls once the copies that
 * wait reach the ring's size: that ends a post that does not retry.
 */
static void *steady_run(void *arg)
{
	struct steady_producer *p = arg;
	unsigned int cpus = p->all_cpus ? get_nprocs() : 1;
	int tp = test_producer_open();

	p->ret = tp < 0 ? tp : 0;
	while (!p->ret && !__atomic_load_n(p->stop, __ATOMIC_ACQUIRE)) {
		struct post_result pr;
		bool refused;

		p->ret = test_producer_send_from(tp, p->fd, p->context,
						 p->all_cpus, p->retry,
						 p->cookie, 256, 16, &pr);
		if (p->ret)
			break;
		refused = pr.error == -E2BIG ||
			  (!p->retry &&
			   (pr.error == -ENOSPC || pr.error == -ENOMEM));
		if ((pr.error && !refused) || !pr.error != !pr.unposted ||
		    pr.stored + pr.waited + pr.unposted != 256 * cpus)
			p->ret = -EPROTO;
		p->cookie += 256 * cpus;
		p->posted += 256 * cpus;
		p->stored += pr.stored;
		p->waited += pr.waited;
		p->unposted += pr.unposted;
	}
	if (tp >= 0)
		close(tp);
	if (p->done_fd >= 0)
		eventfd_write(p->done_fd, 1);
	return NULL;
}

FIXTURE(hostile) {
	struct hostile h;
	struct asyncfd_ring witness;
	long long vmpin_base;
	uint64_t seed;
};

FIXTURE_SETUP(hostile)
{
	unsigned int i;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	self->seed = env_knob("ASYNCFD_STRESS_SEED", mono_ns());
	ksft_print_msg("seed %llu (ASYNCFD_STRESS_SEED replays the choices)\n",
		       (unsigned long long)self->seed);
	self->vmpin_base = vmpin_now_kb();
	self->h.rng = self->seed;
	for (i = 0; i < ARRAY_SIZE(self->h.regions); i++)
		ASSERT_EQ(0, hostile_map(&self->h.regions[i]));
	self->h.fd = sys_asyncfd(-1, self->h.regions[0].hdr, 0);
	ASSERT_LE(0, self->h.fd);
	ASSERT_EQ(0, asyncfd_ring_setup(&self->witness, 4096, 0));
}

FIXTURE_TEARDOWN(hostile)
{
	unsigned int i;

	if (self->h.fd >= 0)
		close(self->h.fd);
	asyncfd_ring_exit(&self->witness);
	for (i = 0; i < ARRAY_SIZE(self->h.regions); i++)
		if (self->h.regions[i].base)
			munmap(self->h.regions[i].base, HOSTILE_PAGES * page_size());
}

/* What a well-behaved consumer saw. */
struct witness {
	uint64_t got;
	uint64_t next;		/* the cookie after the last */
	uint64_t bad;		/* out of order */
	uint64_t flushes;
	int error;		/* of a failed flush */
};

/*
 * Reap a ring, flushing in what waits: cookies in order, each once, as
 * one producer posts them and results that wait enter the ring before
 * any posted later.
 */
static void witness_reap(struct asyncfd_ring *ring, struct witness *w)
{
	struct asyncfd_result res[128];
	unsigned int n, i;
	int ret;

	for (;;) {
		while ((n = asyncfd_reap(ring, res, ARRAY_SIZE(res)))) {
			for (i = 0; i < n; i++) {
				if (res[i].cookie < w->next)
					w->bad++;
				w->next = res[i].cookie + 1;
			}
			w->got += n;
		}
		if (!asyncfd_waiting(ring))
			return;
		ret = asyncfd_flush(ring);
		if (ret < 0) {
			w->error = ret;
			return;
		}
		w->flushes++;
	}
}

/* Reap @ring until @done_fd, an eventfd, says its producer is done. */
static int witness_until(struct asyncfd_ring *ring, struct witness *w, int done_fd)
{
	struct pollfd pfd[2] = {
		{ .fd = ring->fd, .events = POLLIN },
		{ .fd = done_fd, .events = POLLIN },
	};

	do {
		if (poll(pfd, ARRAY_SIZE(pfd), -1) < 0 && errno != EINTR)
			return -errno;
		witness_reap(ring, w);
	} while (!pfd[1].revents);
	return 0;
}

/*
 * Results that waited for the hostile ring, moved into a clean one: each
 * must be one that a steady producer posted.
 */
static uint64_t hostile_moved(struct asyncfd_ring *ring,
			      const struct steady_producer *hp, unsigned int nr,
			      uint64_t *bad)
{
	struct asyncfd_result res[128];
	unsigned int n, i, p;
	uint64_t got = 0;

	while ((n = asyncfd_reap(ring, res, ARRAY_SIZE(res)))) {
		for (i = 0; i < n; i++) {
			p = (res[i].cookie - 1) >> 40;
			if (p >= nr || res[i].cookie >= hp[p].cookie)
				(*bad)++;
		}
		got += n;
	}
	return got;
}

TEST_F_TIMEOUT(hostile, scribbling_stays_inside_the_ring, 90)
{
	int64_t end = mono_ns() + env_knob("ASYNCFD_HOSTILE_SECONDS", 10) * NSEC_PER_SEC;
	struct steady_producer hp[ARRAY_SIZE(contexts) + 1] = {};
	struct steady_producer witness_p = {};
	struct witness w = { .next = 0 }, wc = { .next = 0 };
	uint64_t posted = 0, waited = 0, unposted = 0;
	uint64_t moved, moved_bad = 0;
	struct asyncfd_ring clean;
	struct post_result pr;
	pthread_t scribbler;
	long long waiting;
	bool stop = false;
	unsigned int i;
	int timer;

	for (i = 0; i < ARRAY_SIZE(hp); i++) {
		hp[i].fd = self->h.fd;
		hp[i].all_cpus = i == ARRAY_SIZE(contexts);
		hp[i].context = hp[i].all_cpus ? "hardirq" : contexts[i];
		hp[i].stop = &stop;
		hp[i].done_fd = -1;
		hp[i].cookie = 1 + ((uint64_t)i << 40);
		ASSERT_EQ(0, pthread_create(&hp[i].thread, NULL, steady_run, &hp[i]));
	}
	/*
	 * One producer, so the witness sees its cookies in order.  Its
	 * consumer runs, so it retries what the kernel refuses.
	 */
	witness_p.fd = self->witness.fd;
	witness_p.context = "hardirq";
	witness_p.retry = true;
	witness_p.stop = &stop;
	witness_p.done_fd = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, witness_p.done_fd);
	witness_p.cookie = 1;
	ASSERT_EQ(0, pthread_create(&witness_p.thread, NULL, steady_run, &witness_p));
	ASSERT_EQ(0, pthread_create(&scribbler, NULL, scribbler_run, &self->h));

	/* The witness consumer waits for its ring or for the end, nothing else. */
	timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	ASSERT_LE(0, timer);
	ASSERT_EQ(0, timerfd_at(timer, end));
	EXPECT_EQ(0, witness_until(&self->witness, &w, timer));
	close(timer);
	__atomic_store_n(&stop, true, __ATOMIC_RELEASE);
	__atomic_store_n(&self->h.stop, true, __ATOMIC_RELEASE);
	/* Its producer's last post may wait for room until we make it. */
	EXPECT_EQ(0, witness_until(&self->witness, &w, witness_p.done_fd));
	ASSERT_EQ(0, pthread_join(witness_p.thread, NULL));
	EXPECT_EQ(0, witness_p.ret);
	close(witness_p.done_fd);
	witness_reap(&self->witness, &w);
	ASSERT_EQ(0, pthread_join(scribbler, NULL));
	for (i = 0; i < ARRAY_SIZE(hp); i++) {
		ASSERT_EQ(0, pthread_join(hp[i].thread, NULL));
		EXPECT_EQ(0, hp[i].ret) TH_LOG("producer %s", hp[i].context);
		posted += hp[i].posted;
		waited += hp[i].waited;
		unposted += hp[i].unposted;
	}

	ksft_print_msg("hostile posted %llu scribbles %llu remaps %llu\n",
		       (unsigned long long)posted,
		       (unsigned long long)self->h.scribbles,
		       (unsigned long long)self->h.remaps);
	ksft_print_msg("hostile waited %llu unposted %llu flushes %llu\n",
		       (unsigned long long)waited, (unsigned long long)unposted,
		       (unsigned long long)self->h.flushes);
	ksft_print_msg("hostile swaps %llu refused-swaps %llu\n",
		       (unsigned long long)self->h.swaps,
		       (unsigned long long)self->h.swaps_refused);
	ksft_print_msg("witness results %llu handed %llu delivered %llu\n",
		       (unsigned long long)witness_p.posted,
		       (unsigned long long)(witness_p.stored + witness_p.waited),
		       (unsigned long long)w.got);
	ksft_print_msg("witness out-of-order %llu flushes %llu\n",
		       (unsigned long long)w.bad, (unsigned long long)w.flushes);
	fflush(stdout);
	EXPECT_EQ(0, self->h.ret);
	EXPECT_LT(0, self->h.remaps);
	EXPECT_LT(0, self->h.swaps);
	EXPECT_LT(0, self->h.flushes);
	EXPECT_LT(0, posted);
	/* Never closed, and it retried: all it handed over came back. */
	EXPECT_EQ(0, w.error);
	EXPECT_EQ(0, witness_p.unposted);
	EXPECT_EQ(witness_p.posted, witness_p.stored + witness_p.waited);
	EXPECT_EQ(witness_p.stored + witness_p.waited, w.got);
	EXPECT_EQ(0, w.bad);
	EXPECT_LT(0, w.got);
	for (i = 0; i < ARRAY_SIZE(self->h.regions); i++) {
		EXPECT_EQ(0, canary_damage(&self->h.regions[i])) TH_LOG("region %u", i);
		EXPECT_TRUE(guards_untouched(&self->h.regions[i])) TH_LOG("region %u", i);
	}

	/*
	 * The asyncfd still works once it has a sane ring again.  What
	 * waited in the kernel, at most the hostile ring's size, moves
	 * into the clean ring at the swap, all of it: real results.
	 */
	ASSERT_EQ(0, asyncfd_ring_map(&clean, 1024));
	waiting = fdinfo_waiting(self->h.fd);
	ASSERT_LE(0, waiting);
	EXPECT_GE(self->h.regions[0].size, waiting);
	ASSERT_EQ(self->h.fd, sys_asyncfd(self->h.fd, clean.hdr, 0));
	clean.fd = self->h.fd;
	self->h.fd = -1;
	EXPECT_FALSE(asyncfd_waiting(&clean));
	moved = hostile_moved(&clean, hp, ARRAY_SIZE(hp), &moved_bad);
	ksft_print_msg("%llu waited until the swap\n", (unsigned long long)moved);
	EXPECT_EQ(waiting, moved);
	EXPECT_EQ(0, moved_bad);
	ASSERT_EQ(0, test_producer_post(clean.fd, "process", 1, 1000, 64, &pr));
	EXPECT_EQ(1000, pr.stored);
	witness_reap(&clean, &wc);
	EXPECT_EQ(1000, wc.got);
	EXPECT_EQ(1001, wc.next);
	EXPECT_EQ(0, wc.bad);
	EXPECT_EQ(0, wc.flushes);
	asyncfd_ring_exit(&clean);
	asyncfd_ring_exit(&self->witness);
	for (i = 0; i < ARRAY_SIZE(self->h.regions); i++) {
		munmap(self->h.regions[i].base, HOSTILE_PAGES * page_size());
		self->h.regions[i].base = NULL;
	}
	EXPECT_EQ(self->vmpin_base, vmpin_now_kb());
}

TEST_HARNESS_MAIN
