// SPDX-License-Identifier: GPL-2.0
/*
 * Delivery from every context the test producer posts from, one at a
 * time and all at once, and the wakeup that a result which has to wait
 * owes a sleeping waiter.  These race producers against the consumer
 * and its waiters, and are kept apart so that a run under KCSAN can
 * take them whole.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/sysinfo.h>

#include "../kselftest_harness.h"
#include "asyncfd_test.h"

/* A ring big enough for every round, so that nothing has to wait. */
FIXTURE(context) {
	struct asyncfd_ring ring;
};

FIXTURE_VARIANT(context) {
	const char *name;
	long res;		/* context bits the producer must report */
};

FIXTURE_VARIANT_ADD(context, process) {
	.name = "process", .res = TEST_PRODUCER_IN_TASK,
};

FIXTURE_VARIANT_ADD(context, kthread) {
	.name = "kthread", .res = TEST_PRODUCER_IN_TASK,
};

FIXTURE_VARIANT_ADD(context, workqueue) {
	.name = "workqueue", .res = TEST_PRODUCER_IN_TASK,
};

FIXTURE_VARIANT_ADD(context, softirq) {
	.name = "softirq", .res = TEST_PRODUCER_IN_SOFTIRQ,
};

FIXTURE_VARIANT_ADD(context, hardirq) {
	.name = "hardirq", .res = TEST_PRODUCER_IN_HARDIRQ,
};

#define CONTEXT_RING	256
#define CONTEXT_COUNT	200

FIXTURE_SETUP(context)
{
	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, CONTEXT_RING, 0));
}

FIXTURE_TEARDOWN(context)
{
	asyncfd_ring_exit(&self->ring);
}

TEST_F(context, results_arrive_in_order_once)
{
	struct asyncfd_result res[CONTEXT_COUNT + 1];
	int ncpus = get_nprocs_conf();
	unsigned int round, i;

	/* Three rounds through a ring of 256: the indices wrap twice. */
	for (round = 0; round < 3; round++) {
		__u64 cookie = 1 + round * CONTEXT_COUNT;

		post(_metadata, self->ring.fd, variant->name, cookie,
		     CONTEXT_COUNT, 7, CONTEXT_COUNT);
		ASSERT_EQ(CONTEXT_COUNT, reap_all(&self->ring, res, CONTEXT_COUNT + 1));
		for (i = 0; i < CONTEXT_COUNT; i++) {
			ASSERT_EQ(cookie + i, res[i].cookie);
			ASSERT_EQ(i, res[i].obj);
			ASSERT_EQ(variant->res, res[i].res);
			ASSERT_LE(0, res[i].res2);
			ASSERT_GT(ncpus, res[i].res2);
		}
	}
	EXPECT_EQ(0, kflags(&self->ring));
	EXPECT_EQ(0, fdinfo_get(self->ring.fd, "asyncfd-waited-total"));
}

/*
 * The copy of a result that waits keeps every field, whatever context
 * posted it.  Catches a copy that loses obj, res or res2, or one made
 * where the context forbids the allocation (lockdep, might_sleep).
 */
TEST_F(context, full_ring_results_wait_then_arrive_in_order)
{
	struct asyncfd_result res[CONTEXT_RING];
	struct asyncfd_ring *ring = &self->ring;
	int ncpus = get_nprocs_conf();
	unsigned int n = 0, i;
	int fd = ring->fd;

	post(_metadata, fd, variant->name, 1, CONTEXT_RING + 44, 16,
	     CONTEXT_RING - 1);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	EXPECT_EQ(45, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(45, fdinfo_get(fd, "asyncfd-waiting-copied"));
	expect_results(_metadata, ring, 1, CONTEXT_RING - 1);
	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(0, kflags(ring));
	n = reap_all(ring, res, ARRAY_SIZE(res));
	ASSERT_EQ(45, n);
	for (i = 0; i < n; i++) {
		ASSERT_EQ(CONTEXT_RING + i, res[i].cookie);
		ASSERT_EQ(CONTEXT_RING - 1 + i, res[i].obj);
		ASSERT_EQ(variant->res, res[i].res);
		ASSERT_LE(0, res[i].res2);
		ASSERT_GT(ncpus, res[i].res2);
	}
	EXPECT_EQ(45, fdinfo_get(fd, "asyncfd-waited-total"));
}

#define STRESS_POSTS	40
#define STRESS_COUNT	25
#define STRESS_BATCH	4

struct stress_producer {
	const char *context;
	int fd;
	int done_fd;		/* an eventfd, to wake the consumer when done */
	__u64 cookie;	/* post i starts at cookie + i * STRESS_COUNT */
	unsigned int stored;
	unsigned int waited;
	unsigned int retries;
	int ret;
	bool done;
};

static void *stress_run(void *arg)
{
	struct stress_producer *p = arg;
	struct post_result pr;
	int tp, i;

	tp = test_producer_open();
	p->ret = tp < 0 ? tp : 0;
	for (i = 0; i < STRESS_POSTS && !p->ret; i++) {
		p->ret = test_producer_send_from(tp, p->fd, p->context, false,
						 true, p->cookie + i * STRESS_COUNT,
						 STRESS_COUNT, STRESS_BATCH, &pr);
		if (!p->ret) {
			p->stored += pr.stored;
			p->waited += pr.waited;
			p->retries += pr.retries;
			p->ret = pr.error;
			if (!p->ret && pr.unposted)
				p->ret = -EIO;
		}
		/* Let the consumer drain, so that the ring is not always full. */
		usleep(1000);
	}
	if (tp >= 0)
		close(tp);
	__atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
	eventfd_write(p->done_fd, 1);
	return NULL;
}

/* One producer per context, all at once, while we consume. */
FIXTURE(stress) {
	struct asyncfd_ring ring;
	int done_fd;
	struct stress_producer producers[ARRAY_SIZE(contexts)];
	pthread_t threads[ARRAY_SIZE(contexts)];
};

FIXTURE_VARIANT(stress) {
	unsigned int size;
};

/*
 * Mostly full: results wait, producers find the bound and retry, and
 * a waiting result may be moved in by a post, a flush or a read.
 */
FIXTURE_VARIANT_ADD(stress, tiny_ring) {
	.size = RING_SIZE,
};

/* Never full: nothing waits. */
FIXTURE_VARIANT_ADD(stress, roomy_ring) {
	.size = ARRAY_SIZE(contexts) * STRESS_POSTS * STRESS_COUNT + 1,
};

FIXTURE_SETUP(stress)
{
	unsigned int i;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, variant->size, 0));
	self->done_fd = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, self->done_fd);
	for (i = 0; i < ARRAY_SIZE(contexts); i++) {
		self->producers[i].context = contexts[i];
		self->producers[i].fd = self->ring.fd;
		self->producers[i].done_fd = self->done_fd;
		self->producers[i].cookie = (__u64)(i + 1) << 32;
	}
}

FIXTURE_TEARDOWN(stress)
{
	asyncfd_ring_exit(&self->ring);
	close(self->done_fd);
}

static bool all_done(const struct stress_producer *producers)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(contexts); i++)
		if (!__atomic_load_n(&producers[i].done, __ATOMIC_ACQUIRE))
			return false;
	return true;
}

/*
 * The consumer loop of the ABI against five producers: wait with no
 * timeout, reap, flush when results wait, reap again.  Every result
 * must arrive exactly once and, per producer, in order.  Catches a
 * waiting result lost, duplicated or overtaken when posts from several
 * contexts, flushes and the bound race.
 */
TEST_F_TIMEOUT(stress, every_result_arrives_once_in_order, 120)
{
	unsigned int seen[ARRAY_SIZE(contexts)] = {};
	__u64 next[ARRAY_SIZE(contexts)] = {};
	struct pollfd pfd[] = {
		{ .fd = self->ring.fd, .events = POLLIN },
		{ .fd = self->done_fd, .events = POLLIN },
	};
	unsigned int i, n, waited = 0, flushes = 0;
	struct asyncfd_result res[64];
	struct watchdog wd;
	eventfd_t ended;
	bool done = false;
	int left = 0;

	watchdog_start(_metadata, &wd, 100, "stress consumer");
	for (i = 0; i < ARRAY_SIZE(contexts); i++)
		ASSERT_EQ(0, pthread_create(&self->threads[i], NULL, stress_run,
					    &self->producers[i]));

	while (!done || left || asyncfd_ring_ready(&self->ring)) {
		/* Read before reaping: once all are done, all is posted. */
		done = all_done(self->producers);
		if (!done) {
			ASSERT_LE(1, poll(pfd, ARRAY_SIZE(pfd), -1));
			if (pfd[1].revents & POLLIN)
				ASSERT_EQ(0, eventfd_read(self->done_fd, &ended));
		}
		while ((n = asyncfd_reap(&self->ring, res, ARRAY_SIZE(res)))) {
			for (i = 0; i < n; i++) {
				__u64 p = (res[i].cookie >> 32) - 1;
				__u64 off = res[i].cookie & 0xffffffff;

				ASSERT_GT(ARRAY_SIZE(contexts), p);
				/* Nothing is lost: the very next one. */
				ASSERT_EQ(next[p], off);
				ASSERT_EQ(off % STRESS_COUNT, res[i].obj);
				next[p] = off + 1;
				seen[p]++;
			}
		}
		left = 0;
		if (asyncfd_waiting(&self->ring) || done) {
			left = asyncfd_flush(&self->ring);
			ASSERT_LE(0, left);
			flushes++;
		}
	}
	watchdog_stop(&wd);

	for (i = 0; i < ARRAY_SIZE(contexts); i++) {
		struct stress_producer *p = &self->producers[i];

		ASSERT_EQ(0, pthread_join(self->threads[i], NULL));
		TH_LOG("%s: stored %u waited %u retries %u", p->context,
		       p->stored, p->waited, p->retries);
		EXPECT_EQ(0, p->ret);
		EXPECT_EQ(STRESS_POSTS * STRESS_COUNT, p->stored + p->waited);
		EXPECT_EQ(STRESS_POSTS * STRESS_COUNT, seen[i]);
		waited += p->waited;
	}
	TH_LOG("%u flushes", flushes);
	EXPECT_FALSE(asyncfd_waiting(&self->ring));
	EXPECT_EQ(0, fdinfo_get(self->ring.fd, "asyncfd-waiting"));
	EXPECT_EQ(waited, fdinfo_get(self->ring.fd, "asyncfd-waited-total"));
	if (variant->size > ARRAY_SIZE(contexts) * STRESS_POSTS * STRESS_COUNT)
		EXPECT_EQ(0, waited);
}

/*
 * A full ring, with nothing waiting yet, and a waiter of a kind that
 * sleeps on it: whatever wakes the waiter is a result that has to wait.
 * poll() and select() for POLLIN, and read(), cannot sleep on a full
 * ring; an edge-triggered set can, once its last edge was taken.
 */
FIXTURE(wait_wake) {
	struct asyncfd_ring ring;
	int ep;
	__u64 next;	/* cookie of the next post */
	__u64 reaped;	/* cookie of the next result to reap */
};

FIXTURE_VARIANT(wait_wake) {
	enum wait_how how;
	unsigned int events;	/* what the waiter asks for */
	unsigned int revents;	/* what it must get */
};

FIXTURE_VARIANT_ADD(wait_wake, poll_pri) {
	.how = WAIT_POLL, .events = POLLPRI, .revents = POLLPRI,
};

FIXTURE_VARIANT_ADD(wait_wake, select_except) {
	.how = WAIT_SELECT, .events = POLLPRI, .revents = POLLPRI,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_lt_pri) {
	.how = WAIT_EPOLL, .events = EPOLLPRI, .revents = EPOLLPRI,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_et) {
	.how = WAIT_EPOLL, .events = EPOLLIN | EPOLLET, .revents = EPOLLIN,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_et_rdnorm) {
	.how = WAIT_EPOLL, .events = EPOLLRDNORM | EPOLLET,
	.revents = EPOLLRDNORM,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_et_pri) {
	.how = WAIT_EPOLL, .events = EPOLLIN | EPOLLPRI | EPOLLET,
	.revents = EPOLLIN | EPOLLPRI,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_exclusive) {
	.how = WAIT_EPOLL, .events = EPOLLIN | EPOLLET | EPOLLEXCLUSIVE,
	.revents = EPOLLIN,
};

/*
 * Fill @ring with nothing waiting, from cookie *@next on, and take the
 * edges that made in @ep, if any.
 */
static void wait_wake_fill(struct __test_metadata *_metadata,
			   struct asyncfd_ring *ring, int ep, __u64 *next,
			   unsigned int count)
{
	post(_metadata, ring->fd, "process", *next, count, count, count);
	*next += count;
	EXPECT_EQ(RING_SIZE - 1, asyncfd_ring_ready(ring));
	EXPECT_FALSE(asyncfd_waiting(ring));
	if (ep >= 0)
		epoll_drain(ep);
}

FIXTURE_SETUP(wait_wake)
{
	struct epoll_event ev = { .events = variant->events };

	self->ep = -1;
	self->next = 1;
	self->reaped = 1;
	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, RING_SIZE, 0));
	if (variant->how == WAIT_EPOLL) {
		self->ep = epoll_create1(EPOLL_CLOEXEC);
		ASSERT_LE(0, self->ep);
		ASSERT_EQ(0, epoll_ctl(self->ep, EPOLL_CTL_ADD, self->ring.fd, &ev));
	}
	wait_wake_fill(_metadata, &self->ring, self->ep, &self->next,
		       RING_SIZE - 1);
}

FIXTURE_TEARDOWN(wait_wake)
{
	if (self->ep >= 0)
		close(self->ep);
	asyncfd_ring_exit(&self->ring);
}

/*
 * Each round: a waiter sleeps on the full ring, one result has to wait,
 * the waiter wakes; then the ring is emptied, the result flushed in and
 * the ring filled again.  Catches a kernel that does not wake for a
 * result that waits, or wakes without the events poll would report.
 */
TEST_F(wait_wake, result_that_waits_wakes_blocked_waiter)
{
	struct watchdog wd;
	unsigned int round;

	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "waiter for a waiting result");
	for (round = 0; round < 3; round++) {
		struct waiter w = {
			.how = variant->how,
			.fd = self->ep >= 0 ? self->ep : self->ring.fd,
			.events = variant->events,
		};

		waiter_start(_metadata, &w);
		post(_metadata, self->ring.fd, contexts[round + 2], self->next,
		     1, 1, 0);
		self->next++;
		ASSERT_EQ(0, pthread_join(w.thread, NULL));
		EXPECT_EQ(1, w.ret);
		EXPECT_EQ(variant->revents, w.revents);

		expect_results(_metadata, &self->ring, self->reaped, RING_SIZE - 1);
		self->reaped += RING_SIZE - 1;
		EXPECT_EQ(0, asyncfd_flush(&self->ring));
		wait_wake_fill(_metadata, &self->ring, self->ep, &self->next,
			       RING_SIZE - 2);
	}
	watchdog_stop(&wd);
	EXPECT_EQ(3, fdinfo_get(self->ring.fd, "asyncfd-waited-total"));
	expect_drained(_metadata, &self->ring, self->reaped, RING_SIZE - 1);
	EXPECT_EQ(0, poll_now(self->ring.fd));
}

int main(int argc, char **argv)
{
	require_asyncfd();
	return test_harness_run(argc, argv);
}
