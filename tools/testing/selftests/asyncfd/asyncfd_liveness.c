// SPDX-License-Identifier: GPL-2.0
/*
 * No consumer sleeps through a result, stored or waiting.
 *
 * A consumer pinned to one CPU blocks with no timeout in epoll (level
 * or edge triggered, or two EPOLLEXCLUSIVE waiters that share the
 * ring), poll() or select(), asking only for EPOLLIN, or in a blocking
 * read() of the asyncfd, while a producer on the other CPU keeps more
 * results in flight than a ring of 4 holds: KAIO reads on null_blk
 * completing inline, in softirq and in hard interrupt context, and the
 * test producer from every context.  What finds no room waits in the
 * kernel, and a result stored, or made to wait, after the consumer's
 * last look must wake it, or it sleeps for ever.  Each wakeup the
 * consumer reaps the ring, and while kflags says that results wait, asks
 * for them with asyncfd(fd, NULL, 0) and reaps again.  In the end every
 * cookie came back once, through the ring alone, and those of the test
 * producer in the order it posted them; io_getevents() finds nothing.
 * Every run makes results wait, whatever the timing, and checks that
 * they did.  A watchdog fails the test when nothing moves for 30 s:
 * that is how a lost wakeup shows.
 *
 * Then plain stores across CPUs: nothing waits, and the producer posts
 * its next small batch only once the consumer took the last, so the
 * consumer falls asleep and must be woken from the other CPU each time.
 * The test producer posts from the producer's CPU in every context, as
 * each result's res2 must say, and the consumer must have been woken
 * from its sleep by results.
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

#define PRODUCER_CPU	0
#define CONSUMER_CPU	1

/*
 * Each run lasts a time budget, not a count: a slow machine gets
 * smaller counts, not a failure.  The 66 runs below (11 tests for each
 * of 6 consumers) spend 48 budgets of 1.5 s making results wait and 18
 * of 1 s storing, and must fit with their setup and final drains in
 * the time a TCG guest with KASAN allows the program.
 */
#define WAIT_BUDGET_NS		(1500 * 1000 * 1000LL)
#define STORE_BUDGET_NS		(1000 * 1000 * 1000LL)
#define WATCHDOG_SECONDS	30
/* Setup, budget and drain, plus a watchdog that fires: the harness must not. */
#define TEST_SECONDS		90

/* A ring of 4 holds 3 results: at 64 in flight, most drains race waits. */
#define WAIT_RING		4
#define KAIO_DEPTH		64
#define HARDIRQ_COMPLETION_NSEC	10000
/*
 * Every 16th round of reads, the producer keeps the consumers off the
 * ring until all KAIO_DEPTH have completed, so that most of them wait
 * in the kernel in every run, however fast the consumer.
 */
#define KAIO_STALL_EVERY	16
/* How often a stalled producer looks whether all reads completed. */
#define KAIO_STALL_POLL_US	100

/*
 * A post of the test producer takes a stride of cookies, and fills 16
 * to all of it, in calls of more results than the ring can hold, so
 * that some of each call wait.  A call that would make more wait than
 * the ring has entries is refused whole, and retried: the largest must
 * fit an empty ring with one slot to spare, or it would retry for ever.
 */
#define POST_STRIDE		64
#define POST_MIN		16
#define BATCH_MIN		WAIT_RING
#define BATCH_MAX		(2 * WAIT_RING - 2)
/*
 * Every 8th post is a probe: once the consumer has taken everything, a
 * call of 7 into the empty ring stores 3 and makes 4 wait, the most the
 * kernel keeps for a producer without storage of its own; nothing else
 * is posted until the consumer has flushed them in.
 */
#define PROBE_EVERY		8
#define PROBE_COUNT		(2 * WAIT_RING - 1)
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
	uint64_t woken;			/* of those, waits that slept first */
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
	const char *producer_doing;	/* for the watchdog's report */

	pthread_mutex_t ring_lock;	/* a ring has one consumer at a time */
	pthread_mutex_t lock;		/* everything below */
	pthread_cond_t cond;		/* broadcast when any of it changes */
	uint8_t *seen;			/* per cookie, times seen */
	uint64_t next_cookie;		/* the cookies below were handed out */
	uint64_t last_cookie;		/* the test producer's, in the ring */
	uint8_t *post_count;		/* per post, how many it was for */
	uint32_t nr_posts;
	uint64_t submitted, stored, waited, retries, probes, stalls;
	uint64_t via_ring, on_producer_cpu, on_consumer_cpu;
	bool producing;
	const char *failed;
	int error;
	uint64_t progress;		/* atomic: results seen */
	uint64_t kflags_seen;		/* atomic: drains that found results waiting */
	uint64_t flushes;		/* atomic */
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

/* Keep the first failure, and stop whoever waits for progress; lock held. */
static void live_fail(struct live *lv, const char *what, int error)
{
	if (!lv->failed) {
		__atomic_store_n(&lv->failed, what, __ATOMIC_RELAXED);
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

static void set_doing(const char **doing, const char *what)
{
	__atomic_store_n(doing, what, __ATOMIC_RELAXED);
}

/*
 * A read's completion.  Reads complete in any order, so only the
 * cookie, the iocb and the length are checked; lock held.
 */
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

/*
 * Result i of a post has cookie base + i and obj i.  One producer posts
 * one post after the other, and results that wait enter the ring before
 * any posted later: cookies only grow.  Lock held.
 */
static void tp_seen(struct live *lv, const struct asyncfd_result *res)
{
	uint64_t cookie = res->cookie;

	if (!cookie || cookie >= lv->next_cookie || lv->seen[cookie]++) {
		live_fail(lv, "a cookie twice, or one never posted", EPROTO);
		return;
	}
	if (cookie <= lv->last_cookie) {
		live_fail(lv, "a result that overtook one posted before it", EPROTO);
		return;
	}
	lv->last_cookie = cookie;
	if (res->obj != (cookie - 1) % POST_STRIDE || res->res != lv->context_bit ||
	    res->res2 < 0 || res->res2 >= lv->nr_cpus) {
		live_fail(lv, "a result naming the wrong post, context or CPU", EPROTO);
		return;
	}
	lv->on_producer_cpu += res->res2 == PRODUCER_CPU;
	lv->on_consumer_cpu += res->res2 == CONSUMER_CPU;
}

/*
 * One pass: reap until the ring is empty and kflags says that nothing
 * waits, then back to sleep.  Whatever comes after must wake us, so no
 * second look.  The loop, and not one flush per wakeup, is what an edge
 * triggered consumer needs: a flush wakes nobody, and results that still
 * wait after it make no new edge.
 */
static int drain(struct consumer *c)
{
	struct live *lv = c->lv;
	struct asyncfd_result res[64];
	unsigned int n, i;
	int ret;

	for (;;) {
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
		if (!asyncfd_waiting(&lv->ring))
			return 0;
		__atomic_add_fetch(&lv->kflags_seen, 1, __ATOMIC_RELAXED);
		set_doing(&c->doing, "flushes");
		ret = asyncfd_flush(&lv->ring);
		if (ret < 0)
			return ret;
		__atomic_add_fetch(&lv->flushes, 1, __ATOMIC_RELAXED);
		set_doing(&c->doing, "drains");
	}
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
		uint64_t in_ring;

		if (__atomic_load_n(&lv->stopping, __ATOMIC_ACQUIRE))
			return READY_STOP;
		n = read(lv->ring.fd, &in_ring, sizeof(in_ring));
		if (n < 0)
			return errno == EINTR ? 0 : -errno;
		return n == sizeof(in_ring) ? READY_RING : -EPROTO;
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

/*
 * The consumer's voluntary context switches so far: one more after its
 * wait means that it slept there, until something woke it.
 */
static long consumer_switches(void)
{
	struct rusage ru = {};

	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_nvcsw;
}

static void *consumer_main(void *arg)
{
	struct consumer *c = arg;
	struct live *lv = c->lv;
	long start, before;
	int ready = 0, err;

	err = pin_to_cpu(CONSUMER_CPU);
	if (err)
		live_fail_unlocked(lv, "sched_setaffinity", -err);
	start = consumer_switches();
	while (!(ready & READY_STOP)) {
		set_doing(&c->doing, "waits");
		before = consumer_switches();
		ready = consumer_wait(c);
		if (ready < 0) {
			live_fail_unlocked(lv, "waiting", -ready);
			break;
		}
		if (ready & READY_RING) {
			__atomic_add_fetch(&c->wakeups, 1, __ATOMIC_RELAXED);
			if (consumer_switches() != before)
				c->woken++;
		}
		set_doing(&c->doing, "waits for the ring");
		pthread_mutex_lock(&lv->ring_lock);
		set_doing(&c->doing, "drains");
		err = drain(c);
		pthread_mutex_unlock(&lv->ring_lock);
		if (err) {
			live_fail_unlocked(lv, "asyncfd(fd, NULL, 0)", -err);
			break;
		}
	}
	set_doing(&c->doing, "stopped");
	c->sleeps = consumer_switches() - start;
	return NULL;
}

/*
 * With ring_lock held and every slot's read submitted, wait until all
 * have completed: the ring takes 3, and the rest must wait in the
 * kernel.  Consumers that wake meanwhile block on ring_lock.  No event
 * says "all completed", so look now and then; the watchdog bounds it.
 */
static void kaio_stall(struct live *lv)
{
	long long waiting;

	set_doing(&lv->producer_doing, "keeps the consumers off until all reads completed");
	while (!__atomic_load_n(&lv->failed, __ATOMIC_RELAXED)) {
		waiting = fdinfo_waiting(lv->ring.fd);
		if (waiting < 0) {
			live_fail_unlocked(lv, "no asyncfd-waiting in fdinfo", ENOENT);
			break;
		}
		if (asyncfd_ring_ready(&lv->ring) + waiting >= KAIO_DEPTH)
			break;
		usleep(KAIO_STALL_POLL_US);
	}
	set_doing(&lv->producer_doing, "submits");
}

/* Keeps KAIO_DEPTH reads in flight until the budget is spent. */
static void *kaio_producer(void *arg)
{
	struct live *lv = arg;
	int64_t deadline = mono_ns() + lv->budget_ns;
	struct iocb *batch[KAIO_DEPTH];
	unsigned int n, round = 0;
	bool stall;
	int ret, err;

	err = pin_to_cpu(PRODUCER_CPU);
	pthread_mutex_lock(&lv->lock);
	if (err)
		live_fail(lv, "sched_setaffinity", -err);
	while (!lv->failed && mono_ns() < deadline &&
	       lv->next_cookie + KAIO_DEPTH <= MAX_COOKIES) {
		stall = round++ % KAIO_STALL_EVERY == 0;
		if (stall) {
			/*
			 * In the consumers' order, ring_lock first.  Slots
			 * stay as they are while we hold it: only a consumer
			 * frees them, so every one gets a read below.
			 */
			pthread_mutex_unlock(&lv->lock);
			pthread_mutex_lock(&lv->ring_lock);
			pthread_mutex_lock(&lv->lock);
		} else {
			/* A slot comes back once a consumer has seen its completion. */
			while (!lv->nr_free && !lv->failed)
				pthread_cond_wait(&lv->cond, &lv->lock);
		}
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
		if (stall) {
			if (ret == (int)n)
				kaio_stall(lv);
			pthread_mutex_unlock(&lv->ring_lock);
		}
		pthread_mutex_lock(&lv->lock);
		if (ret > 0)
			lv->submitted += ret;
		if (ret != (int)n)
			live_fail(lv, "io_submit", ret < 0 ? err : EAGAIN);
		else
			lv->stalls += stall;
	}
	set_doing(&lv->producer_doing, "produced all");
	lv->producing = false;
	pthread_cond_broadcast(&lv->cond);
	pthread_mutex_unlock(&lv->lock);
	return NULL;
}

/* Until the consumers have seen all that was handed over; lock held. */
static void tp_catch_up(struct live *lv)
{
	while (!lv->failed && lv->via_ring < lv->stored + lv->waited)
		pthread_cond_wait(&lv->cond, &lv->lock);
}

/*
 * Posts of POST_MIN to POST_STRIDE results, or flow controlled ones of a
 * batch each.  Each hands over every result: a call refused for want of
 * room is retried, once the consumer has made room.
 */
static void *tp_producer(void *arg)
{
	struct live *lv = arg;
	int64_t deadline = mono_ns() + lv->budget_ns;
	struct post_result out;
	unsigned int count, batch;
	uint64_t cookie;
	bool probe;
	int ret, err;

	err = pin_to_cpu(PRODUCER_CPU);
	pthread_mutex_lock(&lv->lock);
	if (err)
		live_fail(lv, "sched_setaffinity", -err);
	while (!lv->failed && mono_ns() < deadline && lv->nr_posts < MAX_POSTS) {
		probe = !lv->flow_control && lv->nr_posts % PROBE_EVERY == 0;
		if (lv->flow_control) {
			count = 1 + rng_below(&lv->rng, STORE_MAX_BATCH);
			batch = count;
		} else if (probe) {
			count = PROBE_COUNT;
			batch = count;
			set_doing(&lv->producer_doing, "waits for an empty ring to probe");
			tp_catch_up(lv);
		} else {
			count = POST_MIN + rng_below(&lv->rng, POST_STRIDE - POST_MIN + 1);
			batch = BATCH_MIN + rng_below(&lv->rng, BATCH_MAX - BATCH_MIN + 1);
		}
		cookie = 1 + (uint64_t)lv->nr_posts * POST_STRIDE;
		lv->next_cookie = cookie + POST_STRIDE;
		set_doing(&lv->producer_doing, "posts");
		pthread_mutex_unlock(&lv->lock);
		/* The writer is on the producer's CPU: a process post runs there. */
		if (!strcmp(lv->context, "process"))
			ret = test_producer_send_from(lv->tp, lv->ring.fd, lv->context,
						      false, !lv->flow_control, cookie,
						      count, batch, &out);
		else
			ret = test_producer_send_on(lv->tp, lv->ring.fd, lv->context,
						    PRODUCER_CPU, !lv->flow_control,
						    cookie, count, batch, &out);
		pthread_mutex_lock(&lv->lock);
		if (ret) {
			live_fail(lv, "the test producer", -ret);
			break;
		}
		if (out.error || out.unposted || out.stored + out.waited != count) {
			live_fail(lv, "a post that did not hand over every result",
				  out.error ? -out.error : EPROTO);
			break;
		}
		/* Every call brought more than the ring has room for. */
		if (!lv->flow_control && !out.waited) {
			live_fail(lv, "a post beyond the ring's room where nothing waited", EPROTO);
			break;
		}
		/* Into the empty ring: its room, then copies up to its size. */
		if (probe && (out.stored != WAIT_RING - 1 || out.waited != WAIT_RING)) {
			live_fail(lv, "a probe that did not store 3 and make 4 wait", EPROTO);
			break;
		}
		lv->post_count[lv->nr_posts++] = count;
		lv->stored += out.stored;
		lv->waited += out.waited;
		lv->retries += out.retries;
		lv->probes += probe;
		/*
		 * Flow control: the consumer falls asleep between batches,
		 * and only a wakeup from this CPU tells it of the next.  After
		 * a probe, only its flush brings the 4 that wait.
		 */
		set_doing(&lv->producer_doing, "waits for the consumer to catch up");
		if (lv->flow_control || probe)
			tp_catch_up(lv);
	}
	set_doing(&lv->producer_doing, "produced all");
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
	ksft_print_msg("%s: %llu via ring, %llu flushes, failure: %s\n",
		       why, (unsigned long long)lv->via_ring,
		       (unsigned long long)__atomic_load_n(&lv->flushes, __ATOMIC_RELAXED),
		       lv->failed ?: "none");
	ksft_print_msg("%s: %llu submitted, %llu stored, %llu waited, %llu wakeups\n",
		       why, (unsigned long long)lv->submitted, (unsigned long long)lv->stored,
		       (unsigned long long)lv->waited, (unsigned long long)live_wakeups(lv));
	ksft_print_msg("%s: ring holds %u, kflags %#x, %lld wait in the kernel\n", why,
		       asyncfd_ring_ready(&lv->ring),
		       __atomic_load_n(&lv->ring.hdr->kflags, __ATOMIC_RELAXED),
		       fdinfo_waiting(lv->ring.fd));
	ksft_print_msg("%s: producer %s\n", why,
		       __atomic_load_n(&lv->producer_doing, __ATOMIC_RELAXED));
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
		ksft_print_msg("no result seen for %d s\n", WATCHDOG_SECONDS);
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
		return lv->via_ring >= lv->submitted;
	return lv->via_ring >= lv->stored + lv->waited;
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
	lv->post_count = calloc(MAX_POSTS, 1);
	ASSERT_NE(NULL, lv->seen);
	ASSERT_NE(NULL, lv->post_count);
	lv->kind = kind;
	lv->budget_ns = budget_ns;
	lv->next_cookie = 1;
	lv->dev_fd = -1;
	lv->tp = -1;
	lv->nr_cpus = get_nprocs_conf();
	lv->rng = mono_ns();
	lv->producer_doing = "starts";
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
	free(lv->post_count);
	free(lv->seen);
	free(lv);
}

/* Only EPOLLIN: results that wait must make the fd readable, not only EPOLLPRI. */
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

/* What the kernel says of a run, once it is over, and how it woke us. */
struct live_fdinfo {
	long long waiting, waited_total, peak;
	uint64_t woken;		/* waits that slept until a result came */
};

/*
 * Run producer, consumers and watchdog until every result is accounted
 * for, then stop the consumers; they must have got there through their
 * blocking waits alone.  Leaves the counts final, and checks what every
 * run must end with: nothing in the ring, nothing waiting.
 */
static void live_run(struct __test_metadata *_metadata, struct live *lv,
		     void *(*producer)(void *), struct live_fdinfo *fi)
{
	pthread_condattr_t attr;
	int64_t start;
	unsigned int i;
	long sleeps = 0;

	fi->woken = 0;

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
		fi->woken += lv->consumers[i].woken;
	}
	pthread_mutex_lock(&lv->wd_lock);
	lv->wd_stop = true;
	pthread_cond_signal(&lv->wd_cond);
	pthread_mutex_unlock(&lv->wd_lock);
	ASSERT_EQ(0, pthread_join(lv->watchdog, NULL));

	fi->waiting = fdinfo_waiting(lv->ring.fd);
	fi->waited_total = fdinfo_waited_total(lv->ring.fd);
	fi->peak = fdinfo_waiting_peak(lv->ring.fd);
	ksft_print_msg("%llu via ring, %lld waited, at most %lld at once, %.2f s\n",
		       (unsigned long long)lv->via_ring, fi->waited_total, fi->peak,
		       lv->seconds);
	ksft_print_msg("%llu wakeups, %llu after sleeping in the wait, %ld sleeps\n",
		       (unsigned long long)live_wakeups(lv), (unsigned long long)fi->woken,
		       sleeps);
	ksft_print_msg("%llu drains saw kflags, %llu flushes\n",
		       (unsigned long long)lv->kflags_seen, (unsigned long long)lv->flushes);
	EXPECT_EQ(NULL, lv->failed) {
		live_report(lv, "failed");
		TH_LOG("%s: %s", lv->failed, strerror(lv->error));
	}
	/* Nothing arrived after the consumers stopped, and nothing waits. */
	EXPECT_EQ(0, asyncfd_ring_ready(&lv->ring));
	EXPECT_FALSE(asyncfd_waiting(&lv->ring));
	EXPECT_EQ(0, fi->waiting);
	EXPECT_LE(0, fi->waited_total);
	EXPECT_LE(0, fi->peak);
	/*
	 * Each consumer waits before it first looks at the ring, and a
	 * result woke it.  The consumers slept: blocked in their waits,
	 * or on ring_lock.
	 */
	EXPECT_LT(0, live_wakeups(lv));
	EXPECT_LT(0, sleeps);
}

static void waits_kaio(struct __test_metadata *_metadata, enum wait_kind kind,
		       struct nullb *nb, unsigned int irqmode, unsigned long completion_nsec)
{
	struct timespec zero = { 0, 0 };
	struct live_fdinfo fi;
	struct io_event ev;
	uint64_t cookie, unseen = 0;
	struct live *lv;
	char name[32];
	unsigned int i;
	int ret;

	lv = live_new(_metadata, kind, WAIT_RING, WAIT_BUDGET_NS);
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

	live_run(_metadata, lv, kaio_producer, &fi);
	for (cookie = 1; cookie < lv->next_cookie; cookie++)
		unseen += lv->seen[cookie] != 1;
	ksft_print_msg("irqmode %u: %llu reads, %llu stalls\n", irqmode,
		       (unsigned long long)lv->submitted, (unsigned long long)lv->stalls);
	EXPECT_EQ(0, unseen);
	EXPECT_EQ(lv->submitted, lv->via_ring);
	/* Completions that waited stayed in the asyncfd: the aio ring is empty. */
	EXPECT_EQ(0, sys_io_getevents(lv->aio, 0, 1, &ev, &zero));
	/*
	 * Each stall had all KAIO_DEPTH reads complete into a ring that
	 * holds 3, with nobody reaping: the rest waited, at once.  Nothing
	 * could make more wait than were in flight.
	 */
	EXPECT_LT(0, lv->stalls);
	EXPECT_LE(KAIO_DEPTH - (WAIT_RING - 1), fi.waited_total);
	EXPECT_LE(KAIO_DEPTH - (WAIT_RING - 1), fi.peak);
	EXPECT_GE(KAIO_DEPTH, fi.peak);
	/*
	 * After a stall, the consumer reaps 3 of 64, and only its flush
	 * brings the others: new reads replace the 3 it took, no more.
	 */
	EXPECT_LT(0, lv->kflags_seen);
	EXPECT_LT(0, lv->flushes);
	EXPECT_LE(MIN_RESULTS, lv->submitted);
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

/* Cookies where they must be: each of a post once, none past its count. */
static uint64_t tp_misplaced(const struct live *lv)
{
	uint64_t misplaced = 0;
	uint32_t post, i;

	for (post = 0; post < lv->nr_posts; post++)
		for (i = 0; i < POST_STRIDE; i++)
			misplaced += lv->seen[1 + (uint64_t)post * POST_STRIDE + i] !=
				     (i < lv->post_count[post]);
	return misplaced;
}

/*
 * What every test producer run checks: each result came back once, in
 * order, through the ring, and every one was posted on the producer's
 * CPU, as its res2 says: the writer's for the process context, the CPU
 * the producer was told to post on for the others.  So every wakeup by
 * a result came from the CPU the consumer is not on.
 */
static void tp_check(struct __test_metadata *_metadata, struct live *lv)
{
	ksft_print_msg("%s: %u posts, %llu stored, %llu waited, %llu retries\n",
		       lv->context, lv->nr_posts, (unsigned long long)lv->stored,
		       (unsigned long long)lv->waited, (unsigned long long)lv->retries);
	ksft_print_msg("%s: %llu from CPU %d, %llu from CPU %d\n", lv->context,
		       (unsigned long long)lv->on_producer_cpu, PRODUCER_CPU,
		       (unsigned long long)lv->on_consumer_cpu, CONSUMER_CPU);
	EXPECT_EQ(0, tp_misplaced(lv));
	EXPECT_EQ(lv->stored + lv->waited, lv->via_ring);
	EXPECT_LE(MIN_RESULTS, lv->via_ring);
	EXPECT_EQ(lv->via_ring, lv->on_producer_cpu);
	EXPECT_EQ(0, lv->on_consumer_cpu);
}

static void waits_tp(struct __test_metadata *_metadata, enum wait_kind kind,
		     const char *context, long context_bit)
{
	struct live_fdinfo fi;
	struct live *lv;

	lv = tp_new(_metadata, kind, WAIT_RING, WAIT_BUDGET_NS, context, context_bit);
	if (!lv)
		return;
	live_run(_metadata, lv, tp_producer, &fi);
	tp_check(_metadata, lv);
	/* Every post made some wait, as the producer reported... */
	EXPECT_LE(lv->nr_posts, lv->waited);
	/* ... and so does the kernel, which had no other producer. */
	EXPECT_EQ(lv->waited, fi.waited_total);
	/*
	 * The kernel keeps at most the ring's size in copies for a
	 * producer without storage of its own, and each probe reached it.
	 */
	EXPECT_LT(0, lv->probes);
	EXPECT_EQ(WAIT_RING, fi.peak);
	/* After a probe, only a flush brings the 4 that wait. */
	EXPECT_LE(lv->probes, lv->kflags_seen);
	EXPECT_LE(lv->probes, lv->flushes);
	live_free(lv);
}

static void stores_tp(struct __test_metadata *_metadata, enum wait_kind kind,
		      const char *context, long context_bit)
{
	struct live_fdinfo fi;
	struct live *lv;

	lv = tp_new(_metadata, kind, STORE_RING, STORE_BUDGET_NS, context, context_bit);
	if (!lv)
		return;
	lv->flow_control = true;
	live_run(_metadata, lv, tp_producer, &fi);
	tp_check(_metadata, lv);
	/*
	 * Between batches the consumer falls asleep in its wait, and only
	 * a result posted on the other CPU can end that sleep.
	 */
	EXPECT_LT(0, fi.woken);
	/* One batch of at most 8 at a time, into a ring of 256. */
	EXPECT_EQ(0, lv->waited);
	EXPECT_EQ(0, lv->retries);
	EXPECT_EQ(0, fi.waited_total);
	EXPECT_EQ(0, fi.peak);
	EXPECT_EQ(0, lv->kflags_seen);
	EXPECT_EQ(0, lv->flushes);
	live_free(lv);
}

TEST_F_TIMEOUT(liveness, waits_kaio_inline, TEST_SECONDS)
{
	waits_kaio(_metadata, variant->kind, &self->nb, 0, 0);
}

TEST_F_TIMEOUT(liveness, waits_kaio_softirq, TEST_SECONDS)
{
	waits_kaio(_metadata, variant->kind, &self->nb, 1, 0);
}

TEST_F_TIMEOUT(liveness, waits_kaio_hardirq, TEST_SECONDS)
{
	waits_kaio(_metadata, variant->kind, &self->nb, 2, HARDIRQ_COMPLETION_NSEC);
}

TEST_F_TIMEOUT(liveness, waits_process, TEST_SECONDS)
{
	waits_tp(_metadata, variant->kind, "process", TEST_PRODUCER_IN_TASK);
}

TEST_F_TIMEOUT(liveness, waits_kthread, TEST_SECONDS)
{
	waits_tp(_metadata, variant->kind, "kthread", TEST_PRODUCER_IN_TASK);
}

TEST_F_TIMEOUT(liveness, waits_workqueue, TEST_SECONDS)
{
	waits_tp(_metadata, variant->kind, "workqueue", TEST_PRODUCER_IN_TASK);
}

TEST_F_TIMEOUT(liveness, waits_softirq, TEST_SECONDS)
{
	waits_tp(_metadata, variant->kind, "softirq", TEST_PRODUCER_IN_SOFTIRQ);
}

TEST_F_TIMEOUT(liveness, waits_hardirq, TEST_SECONDS)
{
	waits_tp(_metadata, variant->kind, "hardirq", TEST_PRODUCER_IN_HARDIRQ);
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
 * no timeout for a completion, reaps the ring without any poll, flushing
 * in what waits, and takes the completions left, so that only the next
 * batch can end the next wait.
 * A watchdog fails the test when a completion never comes.
 */
#define URING_ENTRIES		8
#define URING_RING		64
#define URING_ROUNDS		50
#define URING_MAX_BATCH		8
#define URING_WAIT_ROUND	25
/*
 * More than the ring holds: it takes URING_RING - 1 and the rest wait,
 * fewer than the ring's size, so that one call takes them all.
 */
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

/* The multishot poll, still armed; returns the POLLPRI it reports. */
static int uring_check_cqe(struct __test_metadata *_metadata,
			   const struct io_uring_cqe *cqe)
{
	EXPECT_EQ(URING_POLL_TAG, cqe->user_data);
	/* A negative res is an error, and the end of the request. */
	EXPECT_LT(0, cqe->res) {
		TH_LOG("poll completed with %s", strerror(-cqe->res));
	}
	EXPECT_EQ(POLLIN, cqe->res & POLLIN);
	EXPECT_NE(0, cqe->flags & IORING_CQE_F_MORE);
	return cqe->res > 0 ? cqe->res & POLLPRI : 0;
}

/*
 * Reap @ring into @res, and while results wait, flush them in and reap
 * again; returns how many, and the flushes in @flushes.
 */
static unsigned int uring_reap(struct __test_metadata *_metadata,
			       struct asyncfd_ring *ring, struct asyncfd_result *res,
			       unsigned int max, unsigned int *flushes)
{
	unsigned int n = 0;

	*flushes = 0;
	for (;;) {
		n += asyncfd_reap(ring, res + n, max - n);
		if (!asyncfd_waiting(ring))
			return n;
		/* All that waits fits the room the reap made. */
		EXPECT_EQ(0, asyncfd_flush(ring));
		if (++*flushes > 1)
			return n;
	}
}

/* Not a liveness variant: one thread, and no CPU to pin. */
TEST(io_uring_multishot_poll_sees_every_batch)
{
	struct uring_watchdog wd = { .fd = -1 };
	struct asyncfd_result res[URING_OVERFILL];
	unsigned int round, count, n, i, flushes, cqes = 0, extra = 0, waited = 0;
	struct io_uring_cqe *cqe;
	struct io_uring_sqe *sqe;
	pthread_condattr_t attr;
	struct asyncfd_ring ring;
	struct io_uring uring;
	struct post_result out;
	uint64_t cookie = 1;
	long context_bit;
	bool overfill;
	int tp, ret, pri;

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
		overfill = round == URING_WAIT_ROUND;
		count = overfill ? URING_OVERFILL : 1 + round % URING_MAX_BATCH;
		context_bit = round % 2 ? TEST_PRODUCER_IN_HARDIRQ : TEST_PRODUCER_IN_TASK;

		/* One batch, one call into the kernel, one wake. */
		uring_step(&wd, round, "posts");
		ASSERT_EQ(0, test_producer_send(tp, ring.fd, round % 2 ? "hardirq" : "process",
						cookie, count, count, &out));
		ASSERT_EQ(0, out.error);
		ASSERT_EQ(0, out.unposted);
		ASSERT_EQ(overfill ? URING_RING - 1 : count, out.stored);
		ASSERT_EQ(count - out.stored, out.waited);
		waited += out.waited;

		uring_step(&wd, round, "waits for a CQE");
		ASSERT_EQ(0, io_uring_wait_cqe(&uring, &cqe));
		pri = uring_check_cqe(_metadata, cqe);
		io_uring_cqe_seen(&uring, cqe);
		__atomic_store_n(&wd.cqes, ++cqes, __ATOMIC_RELAXED);

		uring_step(&wd, round, "reaps");
		n = uring_reap(_metadata, &ring, res, ARRAY_SIZE(res), &flushes);
		ASSERT_EQ(count, n);
		ASSERT_EQ(overfill, flushes);
		for (i = 0; i < n; i++) {
			ASSERT_EQ(cookie + i, res[i].cookie);
			ASSERT_EQ(i, res[i].obj);
			ASSERT_EQ(context_bit, res[i].res);
		}
		cookie += count;

		/*
		 * Completions coalesce, and a kernel may post more than one
		 * for a batch: take them all now, as the next round must
		 * wait for a completion of its own.
		 */
		while (!io_uring_peek_cqe(&uring, &cqe)) {
			pri |= uring_check_cqe(_metadata, cqe);
			io_uring_cqe_seen(&uring, cqe);
			extra++;
		}
		/* The post's wake said that results wait, and only then. */
		ASSERT_EQ(overfill ? POLLPRI : 0, pri);
	}

	pthread_mutex_lock(&wd.lock);
	wd.stop = true;
	pthread_cond_signal(&wd.cond);
	pthread_mutex_unlock(&wd.lock);
	ASSERT_EQ(0, pthread_join(wd.thread, NULL));

	ksft_print_msg("%u rounds, %u CQEs waited for, %u more, %u waited and flushed in\n",
		       round, cqes, extra, waited);
	EXPECT_EQ(URING_OVERFILL - (URING_RING - 1), waited);
	/* The kernel's own count, and all of them waited at once. */
	EXPECT_EQ(waited, fdinfo_waited_total(ring.fd));
	EXPECT_EQ(waited, fdinfo_waiting_peak(ring.fd));
	EXPECT_FALSE(asyncfd_waiting(&ring));
	/* The poll request holds the file: cancel it before the close. */
	io_uring_queue_exit(&uring);
	close(tp);
	asyncfd_ring_exit(&ring);
}

TEST_HARNESS_MAIN
