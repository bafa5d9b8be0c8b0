// SPDX-License-Identifier: GPL-2.0
/*
 * No consumer sleeps through a refusal.
 *
 * A consumer pinned to one CPU blocks with no timeout in epoll (level
 * or edge triggered, or two EPOLLEXCLUSIVE waiters that share the
 * ring), poll() or select(), asking only for EPOLLIN, or in a blocking
 * read() of the asyncfd, while a producer
 * on the other CPU keeps far more results in flight than a ring of 4
 * holds: KAIO reads on null_blk completing inline, in softirq and in
 * hard interrupt context, and the test producer from every context.
 * Refusals race the drain, and one that lands after the consumer's
 * claim must wake it, or it sleeps for ever with the result in the aio
 * ring.  Each wakeup the consumer drains the ring, claims the overflow
 * count and collects exactly that many refused results.  In the end
 * every cookie came back once, through the ring or through a claim,
 * and the claims add up to the refusals.  A watchdog fails the test
 * when nothing moves for 30 s: that is how a lost wakeup shows, and
 * how a claim of more than was refused shows for KAIO, as
 * io_getevents() waits for completions that never come.
 *
 * Then plain stores across CPUs: no refusals, and the producer posts
 * its next small batch only once the consumer took the last, so the
 * consumer falls asleep and must be woken from the other CPU each time.
 *
 * Last, io_uring's multishot poll, a waiter that stays queued and never
 * polls the file again: every batch must wake it, not only the first.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <liburing.h>

#include "../kselftest_harness.h"
#include "asyncfd_ring.h"
#include "kaio.h"
#include "required.h"
#include "stress_helpers.h"
#include "test_producer.h"

#define NO_PRODUCER "no " TEST_PRODUCER_PATH ": needs CONFIG_TEST_ASYNCFD and debugfs"

#define PRODUCER_CPU	0
#define CONSUMER_CPU	1

/*
 * Each run lasts a time budget, not a count: a slow machine gets
 * smaller counts, not a failure.  The 55 runs below (11 tests for each of 5
 * consumers) must fit in about 120 s of a TCG guest with KASAN, with
 * setup and the final drain on top: 40 refusal runs of 1.5 s and 15
 * store runs of 1 s leave a third of that for them.
 */
#define REFUSAL_BUDGET_NS	(1500 * 1000 * 1000LL)
#define STORE_BUDGET_NS		(1000 * 1000 * 1000LL)
#define WATCHDOG_SECONDS	30
/* Setup, budget and drain, plus a watchdog that fires: the harness must not. */
#define TEST_SECONDS		90

/* A ring of 4 holds 3 results: at 64 in flight, most drains race refusals. */
#define REFUSAL_RING		4
#define KAIO_DEPTH		64
#define HARDIRQ_COMPLETION_NSEC	10000
/* A post of the test producer takes a stride of cookies, and fills 16 to all. */
#define POST_STRIDE		64
#define POST_MIN		16
/* Flow control keeps at most one batch outstanding: it never fills this. */
#define STORE_RING		256
#define STORE_MAX_BATCH		8

/* The cookie arrays bound a run as well; a fast machine may hit them. */
#define MAX_COOKIES		0x800000
#define MAX_POSTS		(MAX_COOKIES / POST_STRIDE)
/* That a run did run: far below what a slow guest does in the budget. */
#define MIN_RESULTS		100

#define READY_RING		1
#define READY_STOP		2

enum wait_kind {
	WAIT_EPOLL,
	WAIT_EPOLL_ET,
	WAIT_POLL,
	WAIT_SELECT,
	WAIT_EPOLL_EXCLUSIVE,
	WAIT_READ,		/* the stop is a flag and a signal */
};

struct live;

struct consumer {
	struct live *lv;
	pthread_t thread;
	int epfd;
	const char *doing;		/* for the watchdog's report */
	uint64_t wakeups;		/* waits that reported the asyncfd */
	long sleeps;			/* voluntary context switches */
};

/* One run: a ring, its consumers, a producer and the watchdog. */
struct live {
	enum wait_kind kind;
	struct asyncfd_ring ring;
	int stop_fd;			/* readable once all is accounted for */
	bool stopping;			/* ... for a consumer in read() */
	struct consumer consumers[2];
	unsigned int nr_consumers;

	bool kaio;			/* else the test producer */
	aio_context_t aio;
	int dev_fd;
	int tp;
	const char *context;
	long context_bit;
	bool flow_control;		/* post only once the last was reaped */
	int64_t budget_ns;
	uint64_t rng;
	unsigned int nr_cpus;

	pthread_mutex_t ring_lock;	/* a ring has one consumer at a time */
	pthread_mutex_t lock;		/* everything below */
	pthread_cond_t cond;		/* broadcast when any of it changes */
	uint8_t *seen;			/* per cookie, times seen */
	uint64_t next_cookie;		/* the cookies below were handed out */
	uint8_t *post_stored;		/* per post, how many the ring took */
	uint32_t nr_posts;
	uint64_t submitted, stored, refused;
	uint64_t via_ring, claimed, via_getevents, on_consumer_cpu;
	bool producing;
	const char *failed;
	int error;
	uint64_t progress;		/* atomic: results seen plus claimed */
	double seconds;

	/* KAIO: slot i owns iocbs[i] and its buffer while its read runs. */
	struct iocb iocbs[KAIO_DEPTH];
	uint64_t slot_cookie[KAIO_DEPTH];
	unsigned int free_slots[KAIO_DEPTH];
	unsigned int nr_free;
	char *bufs;

	pthread_t producer, watchdog;
	pthread_mutex_t wd_lock;
	pthread_cond_t wd_cond;
	bool wd_stop;
};

static int pin_to_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

/* Keep the first failure, and stop whoever waits for progress; lock held. */
static void live_fail(struct live *lv, const char *what, int error)
{
	if (!lv->failed) {
		lv->failed = what;
		lv->error = error;
	}
	pthread_cond_broadcast(&lv->cond);
}

static void live_fail_unlocked(struct live *lv, const char *what, int error)
{
	pthread_mutex_lock(&lv->lock);
	live_fail(lv, what, error);
	pthread_mutex_unlock(&lv->lock);
}

/* A read's completion, from the asyncfd ring or the aio ring; lock held. */
static void kaio_seen(struct live *lv, uint64_t cookie, uint64_t obj, int64_t res)
{
	uintptr_t base = (uintptr_t)lv->iocbs;
	unsigned int slot = (obj - base) / sizeof(struct iocb);

	if (!cookie || cookie >= lv->next_cookie || lv->seen[cookie]++) {
		live_fail(lv, "a cookie twice, or one never submitted", EPROTO);
		return;
	}
	if (obj < base || slot >= KAIO_DEPTH || obj != (uintptr_t)&lv->iocbs[slot] ||
	    lv->slot_cookie[slot] != cookie || res != KAIO_BLOCK) {
		live_fail(lv, "a completion naming the wrong iocb, or short", EPROTO);
		return;
	}
	lv->slot_cookie[slot] = 0;
	lv->free_slots[lv->nr_free++] = slot;
}

/* Result i of a post has cookie base + i and obj i; lock held. */
static void tp_seen(struct live *lv, const struct asyncfd_result *res)
{
	uint64_t cookie = res->cookie;

	if (!cookie || cookie >= lv->next_cookie || lv->seen[cookie]++) {
		live_fail(lv, "a cookie twice, or one never posted", EPROTO);
		return;
	}
	if (res->obj != (cookie - 1) % POST_STRIDE || res->res != lv->context_bit ||
	    res->res2 < 0 || res->res2 >= lv->nr_cpus) {
		live_fail(lv, "a result naming the wrong post, context or CPU", EPROTO);
		return;
	}
	lv->on_consumer_cpu += res->res2 == CONSUMER_CPU;
}

/* Exactly @n: what was claimed is in the aio ring or on its way there. */
static int kaio_collect(struct live *lv, unsigned int n)
{
	struct io_event ev[64];
	int i, got;

	while (n) {
		got = n < ARRAY_SIZE(ev) ? n : ARRAY_SIZE(ev);
		got = sys_io_getevents(lv->aio, got, got, ev, NULL);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return -errno;
		pthread_mutex_lock(&lv->lock);
		for (i = 0; i < got; i++)
			kaio_seen(lv, ev[i].data, ev[i].obj, ev[i].res);
		lv->via_getevents += got;
		__atomic_add_fetch(&lv->progress, got, __ATOMIC_RELAXED);
		pthread_cond_broadcast(&lv->cond);
		pthread_mutex_unlock(&lv->lock);
		n -= got;
	}
	return 0;
}

/*
 * One pass, and back to sleep: the ring until empty, then one claim.
 * Whatever comes after must wake us, so no second look.
 */
static int drain(struct consumer *c)
{
	struct live *lv = c->lv;
	struct asyncfd_result res[64];
	unsigned int n, i;

	while ((n = asyncfd_reap(&lv->ring, res, ARRAY_SIZE(res)))) {
		pthread_mutex_lock(&lv->lock);
		for (i = 0; i < n; i++) {
			if (lv->kaio)
				kaio_seen(lv, res[i].cookie, res[i].obj, res[i].res);
			else
				tp_seen(lv, &res[i]);
		}
		lv->via_ring += n;
		__atomic_add_fetch(&lv->progress, n, __ATOMIC_RELAXED);
		pthread_cond_broadcast(&lv->cond);
		pthread_mutex_unlock(&lv->lock);
	}
	n = asyncfd_claim_overflow(&lv->ring);
	if (!n)
		return 0;
	pthread_mutex_lock(&lv->lock);
	lv->claimed += n;
	__atomic_add_fetch(&lv->progress, n, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&lv->cond);
	pthread_mutex_unlock(&lv->lock);
	if (!lv->kaio)
		return 0;
	__atomic_store_n(&c->doing, "collects a claim in io_getevents()", __ATOMIC_RELAXED);
	return kaio_collect(lv, n);
}

/* Block, with no timeout, until the asyncfd or the stop fd is readable. */
static int consumer_wait(struct consumer *c)
{
	struct live *lv = c->lv;
	struct epoll_event ev[2];
	int n, i, ready = 0;

	if (lv->kind == WAIT_POLL) {
		struct pollfd pfd[2] = {
			{ .fd = lv->ring.fd, .events = POLLIN },
			{ .fd = lv->stop_fd, .events = POLLIN },
		};

		n = poll(pfd, 2, -1);
		if (n < 0)
			return errno == EINTR ? 0 : -errno;
		return (pfd[0].revents ? READY_RING : 0) | (pfd[1].revents ? READY_STOP : 0);
	}
	if (lv->kind == WAIT_READ) {
		uint64_t waiting;

		if (__atomic_load_n(&lv->stopping, __ATOMIC_ACQUIRE))
			return READY_STOP;
		n = read(lv->ring.fd, &waiting, sizeof(waiting));
		if (n < 0)
			return errno == EINTR ? 0 : -errno;
		return READY_RING;
	}
	if (lv->kind == WAIT_SELECT) {
		fd_set rd;

		FD_ZERO(&rd);
		FD_SET(lv->ring.fd, &rd);
		FD_SET(lv->stop_fd, &rd);
		n = select((lv->ring.fd > lv->stop_fd ? lv->ring.fd : lv->stop_fd) + 1,
			   &rd, NULL, NULL, NULL);
		if (n < 0)
			return errno == EINTR ? 0 : -errno;
		return (FD_ISSET(lv->ring.fd, &rd) ? READY_RING : 0) |
		       (FD_ISSET(lv->stop_fd, &rd) ? READY_STOP : 0);
	}
	n = epoll_wait(c->epfd, ev, ARRAY_SIZE(ev), -1);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (i = 0; i < n; i++)
		ready |= ev[i].data.u32;
	return ready;
}

static void *consumer_main(void *arg)
{
	struct consumer *c = arg;
	struct live *lv = c->lv;
	struct rusage ru = {};
	long nvcsw;
	int ready = 0, err;

	err = pin_to_cpu(CONSUMER_CPU);
	if (err)
		live_fail_unlocked(lv, "sched_setaffinity", -err);
	getrusage(RUSAGE_THREAD, &ru);
	nvcsw = ru.ru_nvcsw;
	while (!(ready & READY_STOP)) {
		__atomic_store_n(&c->doing, "waits", __ATOMIC_RELAXED);
		ready = consumer_wait(c);
		if (ready < 0) {
			live_fail_unlocked(lv, "waiting", -ready);
			break;
		}
		if (ready & READY_RING)
			__atomic_add_fetch(&c->wakeups, 1, __ATOMIC_RELAXED);
		__atomic_store_n(&c->doing, "waits for the ring", __ATOMIC_RELAXED);
		pthread_mutex_lock(&lv->ring_lock);
		__atomic_store_n(&c->doing, "drains", __ATOMIC_RELAXED);
		err = drain(c);
		pthread_mutex_unlock(&lv->ring_lock);
		if (err) {
			live_fail_unlocked(lv, "io_getevents", -err);
			break;
		}
	}
	__atomic_store_n(&c->doing, "stopped", __ATOMIC_RELAXED);
	getrusage(RUSAGE_THREAD, &ru);
	c->sleeps = ru.ru_nvcsw - nvcsw;
	return NULL;
}

/* Keeps KAIO_DEPTH reads in flight until the budget is spent. */
static void *kaio_producer(void *arg)
{
	struct live *lv = arg;
	int64_t deadline = mono_ns() + lv->budget_ns;
	struct iocb *batch[KAIO_DEPTH];
	unsigned int n;
	int ret, err;

	err = pin_to_cpu(PRODUCER_CPU);
	pthread_mutex_lock(&lv->lock);
	if (err)
		live_fail(lv, "sched_setaffinity", -err);
	while (!lv->failed && mono_ns() < deadline &&
	       lv->next_cookie + KAIO_DEPTH <= MAX_COOKIES) {
		/* A slot comes back once a consumer has seen its completion. */
		while (!lv->nr_free && !lv->failed)
			pthread_cond_wait(&lv->cond, &lv->lock);
		for (n = 0; lv->nr_free; n++) {
			unsigned int slot = lv->free_slots[--lv->nr_free];
			uint64_t cookie = lv->next_cookie++;

			kaio_prep_read(&lv->iocbs[slot], lv->dev_fd, lv->bufs + slot * KAIO_BLOCK,
				       KAIO_BLOCK, (cookie % KAIO_SPAN_BLOCKS) * KAIO_BLOCK,
				       lv->ring.fd, cookie);
			lv->slot_cookie[slot] = cookie;
			batch[n] = &lv->iocbs[slot];
		}
		pthread_mutex_unlock(&lv->lock);
		ret = n ? sys_io_submit(lv->aio, n, batch) : 0;
		err = errno;
		pthread_mutex_lock(&lv->lock);
		if (ret > 0)
			lv->submitted += ret;
		if (ret != (int)n)
			live_fail(lv, "io_submit", ret < 0 ? err : EAGAIN);
	}
	lv->producing = false;
	pthread_cond_broadcast(&lv->cond);
	pthread_mutex_unlock(&lv->lock);
	return NULL;
}

/*
 * Posts of one batch each, so that what the ring took of a post is a
 * prefix of it: the kernel stores until the first full slot.
 */
static void *tp_producer(void *arg)
{
	struct live *lv = arg;
	int64_t deadline = mono_ns() + lv->budget_ns;
	struct post_result out;
	unsigned int count;
	uint64_t cookie;
	int ret, err;

	err = pin_to_cpu(PRODUCER_CPU);
	pthread_mutex_lock(&lv->lock);
	if (err)
		live_fail(lv, "sched_setaffinity", -err);
	while (!lv->failed && mono_ns() < deadline && lv->nr_posts < MAX_POSTS) {
		if (lv->flow_control)
			count = 1 + rng_below(&lv->rng, STORE_MAX_BATCH);
		else
			count = POST_MIN + rng_below(&lv->rng, POST_STRIDE - POST_MIN + 1);
		cookie = 1 + (uint64_t)lv->nr_posts * POST_STRIDE;
		lv->next_cookie = cookie + POST_STRIDE;
		pthread_mutex_unlock(&lv->lock);
		ret = test_producer_send(lv->tp, lv->ring.fd, lv->context, cookie, count,
					 count, &out);
		pthread_mutex_lock(&lv->lock);
		if (ret) {
			live_fail(lv, "the test producer", -ret);
			break;
		}
		if (out.error || out.stored + out.refused != count) {
			live_fail(lv, "a post that lost results", out.error ? -out.error : EPROTO);
			break;
		}
		lv->post_stored[lv->nr_posts++] = out.stored;
		lv->stored += out.stored;
		lv->refused += out.refused;
		/*
		 * Flow control: the consumer falls asleep between batches,
		 * and only a wakeup from this CPU tells it of the next.
		 */
		while (lv->flow_control && !lv->failed && lv->via_ring < lv->stored)
			pthread_cond_wait(&lv->cond, &lv->lock);
	}
	lv->producing = false;
	pthread_cond_broadcast(&lv->cond);
	pthread_mutex_unlock(&lv->lock);
	return NULL;
}

static uint64_t live_wakeups(struct live *lv)
{
	uint64_t sum = 0;
	unsigned int i;

	for (i = 0; i < lv->nr_consumers; i++)
		sum += __atomic_load_n(&lv->consumers[i].wakeups, __ATOMIC_RELAXED);
	return sum;
}

static void live_report(struct live *lv, const char *why)
{
	unsigned int i;

	pthread_mutex_lock(&lv->lock);
	ksft_print_msg("%s: %llu via ring, %llu claimed, %llu via io_getevents, failure: %s\n",
		       why, (unsigned long long)lv->via_ring, (unsigned long long)lv->claimed,
		       (unsigned long long)lv->via_getevents, lv->failed ?: "none");
	ksft_print_msg("%s: %llu submitted, %llu stored, %llu refused, %llu wakeups, %s\n",
		       why, (unsigned long long)lv->submitted, (unsigned long long)lv->stored,
		       (unsigned long long)lv->refused, (unsigned long long)live_wakeups(lv),
		       lv->producing ? "producing" : "produced all");
	ksft_print_msg("%s: ring holds %u, %u refusals unclaimed\n", why,
		       asyncfd_ring_ready(&lv->ring),
		       __atomic_load_n(&lv->ring.hdr->overflow, __ATOMIC_RELAXED));
	for (i = 0; i < lv->nr_consumers; i++)
		ksft_print_msg("%s: consumer %u %s\n", why, i,
			       __atomic_load_n(&lv->consumers[i].doing, __ATOMIC_RELAXED));
	pthread_mutex_unlock(&lv->lock);
}

/* The timed wait here is the watchdog's own: firing fails the test. */
static void *watchdog_main(void *arg)
{
	struct live *lv = arg;
	int64_t last_change = mono_ns();
	uint64_t last = 0, now;
	struct timespec ts;

	pthread_mutex_lock(&lv->wd_lock);
	while (!lv->wd_stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec++;
		pthread_cond_timedwait(&lv->wd_cond, &lv->wd_lock, &ts);
		now = __atomic_load_n(&lv->progress, __ATOMIC_RELAXED);
		if (now != last) {
			last = now;
			last_change = mono_ns();
			continue;
		}
		if (lv->wd_stop || mono_ns() - last_change < WATCHDOG_SECONDS * NSEC_PER_SEC)
			continue;
		live_report(lv, "stalled");
		ksft_print_msg("no result seen or claimed for %d s\n", WATCHDOG_SECONDS);
		fflush(stdout);
		fflush(stderr);
		_exit(KSFT_FAIL);
	}
	pthread_mutex_unlock(&lv->wd_lock);
	return NULL;
}

static bool live_accounted(const struct live *lv)
{
	if (lv->producing)
		return false;
	if (lv->kaio)
		return lv->via_ring + lv->via_getevents >= lv->submitted;
	return lv->via_ring >= lv->stored && lv->claimed >= lv->refused;
}

FIXTURE(liveness) {
	struct nullb nb;	/* shared: the parent removes it, even after _exit() */
};

FIXTURE_VARIANT(liveness) {
	enum wait_kind kind;
};

FIXTURE_VARIANT_ADD(liveness, epoll) {
	.kind = WAIT_EPOLL,
};

FIXTURE_VARIANT_ADD(liveness, epoll_et) {
	.kind = WAIT_EPOLL_ET,
};

FIXTURE_VARIANT_ADD(liveness, poll) {
	.kind = WAIT_POLL,
};

FIXTURE_VARIANT_ADD(liveness, select) {
	.kind = WAIT_SELECT,
};

FIXTURE_VARIANT_ADD(liveness, epoll_exclusive) {
	.kind = WAIT_EPOLL_EXCLUSIVE,
};

FIXTURE_VARIANT_ADD(liveness, read) {
	.kind = WAIT_READ,
};

FIXTURE_SETUP(liveness)
{
	cpu_set_t set;

	memset(&self->nb, 0, sizeof(self->nb));
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2 || sched_getaffinity(0, sizeof(set), &set) ||
	    !CPU_ISSET(PRODUCER_CPU, &set) || !CPU_ISSET(CONSUMER_CPU, &set))
		MISSING(return, "needs CPUs %d and %d", PRODUCER_CPU, CONSUMER_CPU);
}

FIXTURE_TEARDOWN_PARENT(liveness)
{
	nullb_destroy(&self->nb);
}

/* A run with its ring; NULL once the test is over for want of asyncfd. */
static struct live *live_new(struct __test_metadata *_metadata, enum wait_kind kind,
			     unsigned int ring_size, int64_t budget_ns)
{
	struct live *lv = calloc(1, sizeof(*lv));
	int ret;

	ASSERT_NE(NULL, lv);
	lv->seen = calloc(MAX_COOKIES + 1, 1);
	lv->post_stored = calloc(MAX_POSTS, 1);
	ASSERT_NE(NULL, lv->seen);
	ASSERT_NE(NULL, lv->post_stored);
	lv->kind = kind;
	lv->budget_ns = budget_ns;
	lv->next_cookie = 1;
	lv->dev_fd = -1;
	lv->tp = -1;
	lv->nr_cpus = get_nprocs_conf();
	lv->rng = mono_ns();
	ret = asyncfd_ring_setup(&lv->ring, ring_size, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return NULL, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	lv->stop_fd = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, lv->stop_fd);
	return lv;
}

static void live_free(struct live *lv)
{
	unsigned int i;

	for (i = 0; i < lv->nr_consumers; i++)
		if (lv->consumers[i].epfd >= 0)
			close(lv->consumers[i].epfd);
	if (lv->aio)
		sys_io_destroy(lv->aio);
	if (lv->dev_fd >= 0)
		close(lv->dev_fd);
	if (lv->tp >= 0)
		close(lv->tp);
	close(lv->stop_fd);
	asyncfd_ring_exit(&lv->ring);
	free(lv->bufs);
	free(lv->post_stored);
	free(lv->seen);
	free(lv);
}

/* Only EPOLLIN: a refusal must be readable, not only EPOLLPRI. */
static void consumer_epoll(struct __test_metadata *_metadata, struct live *lv,
			   struct consumer *c)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u32 = READY_RING };

	if (lv->kind == WAIT_EPOLL_ET)
		ev.events |= EPOLLET;
	if (lv->kind == WAIT_EPOLL_EXCLUSIVE)
		ev.events |= EPOLLEXCLUSIVE;
	c->epfd = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_LE(0, c->epfd);
	ASSERT_EQ(0, epoll_ctl(c->epfd, EPOLL_CTL_ADD, lv->ring.fd, &ev));
	/* Every waiter must see the stop: level triggered, not exclusive. */
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u32 = READY_STOP };
	ASSERT_EQ(0, epoll_ctl(c->epfd, EPOLL_CTL_ADD, lv->stop_fd, &ev));
}

static void interrupt_only(int sig)
{
}

/* No SA_RESTART: the signal must end a consumer's read(). */
static const struct sigaction interrupt_read = { .sa_handler = interrupt_only };

/*
 * Run producer, consumers and watchdog until every result is accounted
 * for, then stop the consumers; they must have got there through their
 * blocking waits alone.  Leaves the counts final.
 */
static void live_run(struct __test_metadata *_metadata, struct live *lv,
		     void *(*producer)(void *))
{
	pthread_condattr_t attr;
	long long refusals;
	int64_t start;
	unsigned int i;
	long sleeps = 0;

	ASSERT_EQ(0, pthread_mutex_init(&lv->ring_lock, NULL));
	ASSERT_EQ(0, pthread_mutex_init(&lv->lock, NULL));
	ASSERT_EQ(0, pthread_cond_init(&lv->cond, NULL));
	ASSERT_EQ(0, pthread_mutex_init(&lv->wd_lock, NULL));
	ASSERT_EQ(0, pthread_condattr_init(&attr));
	ASSERT_EQ(0, pthread_condattr_setclock(&attr, CLOCK_MONOTONIC));
	ASSERT_EQ(0, pthread_cond_init(&lv->wd_cond, &attr));

	/* Two EPOLLEXCLUSIVE waiters, each with an epoll set of its own. */
	lv->nr_consumers = lv->kind == WAIT_EPOLL_EXCLUSIVE ? 2 : 1;
	for (i = 0; i < lv->nr_consumers; i++) {
		lv->consumers[i].lv = lv;
		lv->consumers[i].epfd = -1;
		lv->consumers[i].doing = "starts";
		if (lv->kind != WAIT_POLL && lv->kind != WAIT_SELECT &&
		    lv->kind != WAIT_READ)
			consumer_epoll(_metadata, lv, &lv->consumers[i]);
	}
	if (lv->kind == WAIT_READ)
		ASSERT_EQ(0, sigaction(SIGUSR1, &interrupt_read, NULL));

	lv->producing = true;
	start = mono_ns();
	ASSERT_EQ(0, pthread_create(&lv->watchdog, NULL, watchdog_main, lv));
	for (i = 0; i < lv->nr_consumers; i++)
		ASSERT_EQ(0, pthread_create(&lv->consumers[i].thread, NULL, consumer_main,
					    &lv->consumers[i]));
	ASSERT_EQ(0, pthread_create(&lv->producer, NULL, producer, lv));
	ASSERT_EQ(0, pthread_join(lv->producer, NULL));

	pthread_mutex_lock(&lv->lock);
	while (!lv->failed && !live_accounted(lv))
		pthread_cond_wait(&lv->cond, &lv->lock);
	pthread_mutex_unlock(&lv->lock);
	lv->seconds = (mono_ns() - start) / 1e9;

	ASSERT_EQ(0, eventfd_write(lv->stop_fd, 1));
	__atomic_store_n(&lv->stopping, true, __ATOMIC_RELEASE);
	for (i = 0; i < lv->nr_consumers; i++) {
		/*
		 * A reader may have looked at the flag just before it was
		 * set, and take the signal before it sleeps: signal again
		 * until it is gone.  The watchdog bounds the loop.
		 */
		while (lv->kind == WAIT_READ &&
		       pthread_tryjoin_np(lv->consumers[i].thread, NULL)) {
			pthread_kill(lv->consumers[i].thread, SIGUSR1);
			usleep(1000);
		}
		if (lv->kind != WAIT_READ)
			ASSERT_EQ(0, pthread_join(lv->consumers[i].thread, NULL));
		sleeps += lv->consumers[i].sleeps;
	}
	pthread_mutex_lock(&lv->wd_lock);
	lv->wd_stop = true;
	pthread_cond_signal(&lv->wd_cond);
	pthread_mutex_unlock(&lv->wd_lock);
	ASSERT_EQ(0, pthread_join(lv->watchdog, NULL));

	refusals = fdinfo_refused(lv->ring.fd);
	ksft_print_msg("%llu via ring, %llu claimed, %lld refusals, %.2f s\n",
		       (unsigned long long)lv->via_ring, (unsigned long long)lv->claimed,
		       refusals, lv->seconds);
	ksft_print_msg("%llu wakeups, %ld sleeps\n", (unsigned long long)live_wakeups(lv),
		       sleeps);
	EXPECT_EQ(NULL, lv->failed) {
		live_report(lv, "failed");
		TH_LOG("%s: %s", lv->failed, strerror(lv->error));
	}
	/* Nothing arrived after the consumers stopped. */
	EXPECT_EQ(0, asyncfd_ring_ready(&lv->ring));
	EXPECT_EQ(0, lv->ring.hdr->overflow);
	/* The kernel's own count of refusals: each was claimed once. */
	EXPECT_EQ(refusals, lv->claimed);
}

static void refusals_kaio(struct __test_metadata *_metadata, enum wait_kind kind,
			  struct nullb *nb, unsigned int irqmode, unsigned long completion_nsec)
{
	struct timespec zero = { 0, 0 };
	struct io_event ev;
	uint64_t cookie, unseen = 0;
	struct live *lv;
	char name[32];
	unsigned int i;
	int ret;

	lv = live_new(_metadata, kind, REFUSAL_RING, REFUSAL_BUDGET_NS);
	if (!lv)
		return;
	lv->kaio = true;
	ret = sys_io_setup(KAIO_DEPTH * 2, &lv->aio);
	if (ret && errno == ENOSYS)
		MISSING(return, "kernel AIO not supported");
	ASSERT_EQ(0, ret);
	/* Named per process: a run killed before its teardown leaves one. */
	snprintf(name, sizeof(name), "asyncfd_live%d", getpid());
	lv->dev_fd = nullb_open(nb, name, irqmode, completion_nsec);
	if (lv->dev_fd == -ENOENT)
		MISSING(return, "null_blk configfs not available");
	ASSERT_LE(0, lv->dev_fd);
	ASSERT_EQ(0, posix_memalign((void **)&lv->bufs, KAIO_BLOCK, KAIO_DEPTH * KAIO_BLOCK));
	for (i = 0; i < KAIO_DEPTH; i++)
		lv->free_slots[lv->nr_free++] = i;

	live_run(_metadata, lv, kaio_producer);
	for (cookie = 1; cookie < lv->next_cookie; cookie++)
		unseen += lv->seen[cookie] != 1;
	ksft_print_msg("irqmode %u: %llu reads, %llu via io_getevents\n", irqmode,
		       (unsigned long long)lv->submitted,
		       (unsigned long long)lv->via_getevents);
	EXPECT_EQ(0, unseen);
	EXPECT_EQ(lv->submitted, lv->via_ring + lv->via_getevents);
	EXPECT_EQ(lv->claimed, lv->via_getevents);
	/* 64 reads in flight into a ring that holds 3: some were refused. */
	EXPECT_LT(0, lv->claimed);
	EXPECT_LE(MIN_RESULTS, lv->submitted);
	/* The timeout is the test: no completion was left in the aio ring. */
	EXPECT_EQ(0, sys_io_getevents(lv->aio, 0, 1, &ev, &zero));
	live_free(lv);
}

static struct live *tp_new(struct __test_metadata *_metadata, enum wait_kind kind,
			   unsigned int ring_size, int64_t budget_ns, const char *context,
			   long context_bit)
{
	struct live *lv;

	lv = live_new(_metadata, kind, ring_size, budget_ns);
	if (!lv)
		return NULL;
	if (!test_producer_available())
		MISSING(return NULL, NO_PRODUCER);
	lv->tp = test_producer_open();
	ASSERT_LE(0, lv->tp);
	lv->context = context;
	lv->context_bit = context_bit;
	return lv;
}

/* Cookies where they must be: the first stored of each post once, none else. */
static uint64_t tp_misplaced(const struct live *lv)
{
	uint64_t misplaced = 0;
	uint32_t post, i;

	for (post = 0; post < lv->nr_posts; post++)
		for (i = 0; i < POST_STRIDE; i++)
			misplaced += lv->seen[1 + (uint64_t)post * POST_STRIDE + i] !=
				     (i < lv->post_stored[post]);
	return misplaced;
}

static void refusals_tp(struct __test_metadata *_metadata, enum wait_kind kind,
			const char *context, long context_bit)
{
	struct live *lv;

	lv = tp_new(_metadata, kind, REFUSAL_RING, REFUSAL_BUDGET_NS, context, context_bit);
	if (!lv)
		return;
	live_run(_metadata, lv, tp_producer);
	ksft_print_msg("%s: %u posts, %llu stored, %llu refused, %llu from CPU %d\n",
		       context, lv->nr_posts, (unsigned long long)lv->stored,
		       (unsigned long long)lv->refused,
		       (unsigned long long)lv->on_consumer_cpu, CONSUMER_CPU);
	EXPECT_EQ(0, tp_misplaced(lv));
	EXPECT_EQ(lv->stored, lv->via_ring);
	EXPECT_EQ(lv->refused, lv->claimed);
	/* Posts of 16 to 64 into a ring that holds 3: some were refused. */
	EXPECT_LT(0, lv->refused);
	EXPECT_LE(MIN_RESULTS, lv->stored + lv->refused);
	live_free(lv);
}

static void stores_tp(struct __test_metadata *_metadata, enum wait_kind kind,
		      const char *context, long context_bit)
{
	struct live *lv;

	lv = tp_new(_metadata, kind, STORE_RING, STORE_BUDGET_NS, context, context_bit);
	if (!lv)
		return;
	lv->flow_control = true;
	live_run(_metadata, lv, tp_producer);
	ksft_print_msg("%s: %u posts, %llu stored, %llu from CPU %d\n", context,
		       lv->nr_posts, (unsigned long long)lv->stored,
		       (unsigned long long)lv->on_consumer_cpu, CONSUMER_CPU);
	EXPECT_EQ(0, lv->refused);
	EXPECT_EQ(0, lv->claimed);
	EXPECT_EQ(0, tp_misplaced(lv));
	EXPECT_EQ(lv->stored, lv->via_ring);
	EXPECT_LT(0, live_wakeups(lv));
	EXPECT_LE(MIN_RESULTS, lv->stored);
	live_free(lv);
}

TEST_F_TIMEOUT(liveness, refusals_kaio_inline, TEST_SECONDS)
{
	refusals_kaio(_metadata, variant->kind, &self->nb, 0, 0);
}

TEST_F_TIMEOUT(liveness, refusals_kaio_softirq, TEST_SECONDS)
{
	refusals_kaio(_metadata, variant->kind, &self->nb, 1, 0);
}

TEST_F_TIMEOUT(liveness, refusals_kaio_hardirq, TEST_SECONDS)
{
	refusals_kaio(_metadata, variant->kind, &self->nb, 2, HARDIRQ_COMPLETION_NSEC);
}

TEST_F_TIMEOUT(liveness, refusals_process, TEST_SECONDS)
{
	refusals_tp(_metadata, variant->kind, "process", TEST_PRODUCER_IN_TASK);
}

TEST_F_TIMEOUT(liveness, refusals_kthread, TEST_SECONDS)
{
	refusals_tp(_metadata, variant->kind, "kthread", TEST_PRODUCER_IN_TASK);
}

TEST_F_TIMEOUT(liveness, refusals_workqueue, TEST_SECONDS)
{
	refusals_tp(_metadata, variant->kind, "workqueue", TEST_PRODUCER_IN_TASK);
}

TEST_F_TIMEOUT(liveness, refusals_softirq, TEST_SECONDS)
{
	refusals_tp(_metadata, variant->kind, "softirq", TEST_PRODUCER_IN_SOFTIRQ);
}

TEST_F_TIMEOUT(liveness, refusals_hardirq, TEST_SECONDS)
{
	refusals_tp(_metadata, variant->kind, "hardirq", TEST_PRODUCER_IN_HARDIRQ);
}

TEST_F_TIMEOUT(liveness, stores_process, TEST_SECONDS)
{
	stores_tp(_metadata, variant->kind, "process", TEST_PRODUCER_IN_TASK);
}

TEST_F_TIMEOUT(liveness, stores_softirq, TEST_SECONDS)
{
	stores_tp(_metadata, variant->kind, "softirq", TEST_PRODUCER_IN_SOFTIRQ);
}

TEST_F_TIMEOUT(liveness, stores_hardirq, TEST_SECONDS)
{
	stores_tp(_metadata, variant->kind, "hardirq", TEST_PRODUCER_IN_HARDIRQ);
}

/*
 * io_uring's multishot poll stays on the asyncfd's wait queue and posts
 * a completion from each wake's key without calling ->poll again: a
 * kernel that woke once until somebody polled would post for the first
 * batch only.  Each round posts a batch into an empty ring, waits with
 * no timeout for a completion, reaps the ring without any poll and
 * takes the completions left, so that only the next batch can end the
 * next wait.
 * A watchdog fails the test when a completion never comes.
 */
#define URING_ENTRIES		8
#define URING_RING		64
#define URING_ROUNDS		50
#define URING_MAX_BATCH		8
#define URING_REFUSAL_ROUND	25
/* More than the ring holds: it takes URING_RING - 1 and refuses the rest. */
#define URING_OVERFILL		(URING_RING + 16)
#define URING_POLL_TAG		1
/* A round takes microseconds; below TEST()'s 30 s, the report is ours. */
#define URING_WATCHDOG_SECONDS	20

struct uring_watchdog {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	int fd;
	/* Atomic: where the test is, for the report, and that it moves. */
	unsigned int round;
	const char *doing;
	unsigned int steps;
	unsigned int cqes;
};

static void uring_step(struct uring_watchdog *wd, unsigned int round, const char *doing)
{
	__atomic_store_n(&wd->round, round, __ATOMIC_RELAXED);
	__atomic_store_n(&wd->doing, doing, __ATOMIC_RELAXED);
	__atomic_add_fetch(&wd->steps, 1, __ATOMIC_RELAXED);
}

/* The timed wait here is the watchdog's own: firing fails the test. */
static void *uring_watchdog_main(void *arg)
{
	struct uring_watchdog *wd = arg;
	int64_t last_change = mono_ns();
	unsigned int last = 0, now;
	struct pollfd pfd;
	struct timespec ts;

	pthread_mutex_lock(&wd->lock);
	while (!wd->stop) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec++;
		pthread_cond_timedwait(&wd->cond, &wd->lock, &ts);
		now = __atomic_load_n(&wd->steps, __ATOMIC_RELAXED);
		if (now != last) {
			last = now;
			last_change = mono_ns();
			continue;
		}
		if (wd->stop ||
		    mono_ns() - last_change < URING_WATCHDOG_SECONDS * NSEC_PER_SEC)
			continue;
		/*
		 * A zero timeout, as this only reports: readable with no
		 * completion posted means the poll request missed a wake.
		 */
		pfd = (struct pollfd){ .fd = wd->fd, .events = POLLIN | POLLPRI };
		if (poll(&pfd, 1, 0) < 0)
			pfd.revents = 0;
		ksft_print_msg("stalled: round %u %s, after %u CQEs; the asyncfd polls %#x\n",
			       __atomic_load_n(&wd->round, __ATOMIC_RELAXED),
			       __atomic_load_n(&wd->doing, __ATOMIC_RELAXED),
			       __atomic_load_n(&wd->cqes, __ATOMIC_RELAXED), pfd.revents);
		ksft_print_msg("no io_uring completion for %d s\n", URING_WATCHDOG_SECONDS);
		fflush(stdout);
		fflush(stderr);
		_exit(KSFT_FAIL);
	}
	pthread_mutex_unlock(&wd->lock);
	return NULL;
}

/* The multishot poll, still armed; with POLLPRI only for a refusal. */
static void uring_check_cqe(struct __test_metadata *_metadata,
			    const struct io_uring_cqe *cqe, int pri)
{
	ASSERT_EQ(URING_POLL_TAG, cqe->user_data);
	/* A negative res is an error, and the end of the request. */
	ASSERT_LT(0, cqe->res) {
		TH_LOG("poll completed with %s", strerror(-cqe->res));
	}
	ASSERT_EQ(POLLIN, cqe->res & POLLIN);
	if (pri >= 0)
		ASSERT_EQ(pri, cqe->res & POLLPRI);
	ASSERT_NE(0, cqe->flags & IORING_CQE_F_MORE);
}

/* Not a liveness variant: one thread, and no CPU to pin. */
TEST(io_uring_multishot_poll_sees_every_batch)
{
	struct uring_watchdog wd = { .fd = -1 };
	struct asyncfd_result res[URING_RING];
	unsigned int round, count, n, i, cqes = 0, extra = 0, claimed = 0;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	pthread_condattr_t attr;
	struct asyncfd_ring ring;
	struct io_uring uring;
	struct post_result out;
	uint64_t cookie = 1;
	long context_bit;
	bool refusal;
	int tp, ret;

	ret = asyncfd_ring_setup(&ring, URING_RING, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	tp = test_producer_open();
	ASSERT_LE(0, tp);
	ret = io_uring_queue_init(URING_ENTRIES, &uring, 0);
	if (ret == -ENOSYS)
		MISSING(return, "io_uring not supported");
	ASSERT_EQ(0, ret);

	/* POLLPRI too: a completion reports only the events asked for. */
	sqe = io_uring_get_sqe(&uring);
	ASSERT_NE(NULL, sqe);
	io_uring_prep_poll_multishot(sqe, ring.fd, POLLIN | POLLPRI);
	io_uring_sqe_set_data64(sqe, URING_POLL_TAG);
	ASSERT_EQ(1, io_uring_submit(&uring));
	/* An empty ring: arming must not complete. */
	ASSERT_EQ(-EAGAIN, io_uring_peek_cqe(&uring, &cqe));

	wd.fd = ring.fd;
	ASSERT_EQ(0, pthread_mutex_init(&wd.lock, NULL));
	ASSERT_EQ(0, pthread_condattr_init(&attr));
	ASSERT_EQ(0, pthread_condattr_setclock(&attr, CLOCK_MONOTONIC));
	ASSERT_EQ(0, pthread_cond_init(&wd.cond, &attr));
	ASSERT_EQ(0, pthread_create(&wd.thread, NULL, uring_watchdog_main, &wd));

	for (round = 0; round < URING_ROUNDS; round++) {
		refusal = round == URING_REFUSAL_ROUND;
		count = refusal ? URING_OVERFILL : 1 + round % URING_MAX_BATCH;
		context_bit = round % 2 ? TEST_PRODUCER_IN_HARDIRQ : TEST_PRODUCER_IN_TASK;

		/* One batch, one call into the kernel, one wake. */
		uring_step(&wd, round, "posts");
		ASSERT_EQ(0, test_producer_send(tp, ring.fd, round % 2 ? "hardirq" : "process",
						cookie, count, count, &out));
		ASSERT_EQ(0, out.error);
		ASSERT_EQ(count, out.stored + out.refused);
		ASSERT_EQ(refusal ? URING_RING - 1 : count, out.stored);

		uring_step(&wd, round, "waits for a CQE");
		ASSERT_EQ(0, io_uring_wait_cqe(&uring, &cqe));
		uring_check_cqe(_metadata, cqe, refusal ? POLLPRI : 0);
		io_uring_cqe_seen(&uring, cqe);
		__atomic_store_n(&wd.cqes, ++cqes, __ATOMIC_RELAXED);

		uring_step(&wd, round, "reaps");
		n = asyncfd_reap(&ring, res, ARRAY_SIZE(res));
		ASSERT_EQ(out.stored, n);
		for (i = 0; i < n; i++) {
			ASSERT_EQ(cookie + i, res[i].cookie);
			ASSERT_EQ(i, res[i].obj);
			ASSERT_EQ(context_bit, res[i].res);
		}
		n = asyncfd_claim_overflow(&ring);
		ASSERT_EQ(out.refused, n);
		claimed += n;
		cookie += count;

		/*
		 * Completions coalesce, and a kernel may post more than one
		 * for a batch: take them all now, as the next round must
		 * wait for a completion of its own.
		 */
		while (!io_uring_peek_cqe(&uring, &cqe)) {
			uring_check_cqe(_metadata, cqe, -1);
			io_uring_cqe_seen(&uring, cqe);
			extra++;
		}
	}

	pthread_mutex_lock(&wd.lock);
	wd.stop = true;
	pthread_cond_signal(&wd.cond);
	pthread_mutex_unlock(&wd.lock);
	ASSERT_EQ(0, pthread_join(wd.thread, NULL));

	ksft_print_msg("%u rounds, %u CQEs waited for, %u more, %u refused and claimed\n",
		       round, cqes, extra, claimed);
	EXPECT_EQ(URING_OVERFILL - (URING_RING - 1), claimed);
	/* The kernel's own count of refusals. */
	EXPECT_EQ(claimed, fdinfo_refused(ring.fd));
	/* The poll request holds the file: cancel it before the close. */
	io_uring_queue_exit(&uring);
	close(tp);
	asyncfd_ring_exit(&ring);
}

TEST_HARNESS_MAIN
