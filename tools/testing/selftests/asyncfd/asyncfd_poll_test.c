// SPDX-License-Identifier: GPL-2.0
/*
 * Readiness and wakeups through poll(), select() and epoll: POLLIN while
 * the ring holds results or results wait, POLLPRI exactly while they
 * wait, an edge for every post and for every batch that has to wait,
 * and a sleeping waiter woken for whichever of those events it asked for.
 */

#define _GNU_SOURCE
#include <poll.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include "../kselftest_harness.h"
#include "asyncfd_test.h"

TEST_F(producer, poll_reports_pending_results)
{
	struct pollfd pfd = {
		.fd = self->ring.fd,
		.events = POLLIN | POLLRDNORM | POLLOUT | POLLPRI,
	};
	struct asyncfd_result res;

	EXPECT_EQ(0, poll(&pfd, 1, 0));
	post(_metadata, self->ring.fd, "process", 1, 3, 3, 3);
	ASSERT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN | POLLRDNORM, pfd.revents);

	/* Ready until the last result is consumed. */
	ASSERT_EQ(1, asyncfd_reap(&self->ring, &res, 1));
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	expect_results(_metadata, &self->ring, 2, 2);
	EXPECT_EQ(0, poll(&pfd, 1, 0));
}

TEST_F(producer, select_reports_pending_results)
{
	struct timeval zero = {};
	int fd = self->ring.fd;
	fd_set rfds;

	FD_ZERO(&rfds);
	FD_SET(fd, &rfds);
	EXPECT_EQ(0, select(fd + 1, &rfds, NULL, NULL, &zero));

	post(_metadata, fd, "softirq", 1, 2, 1, 2);
	FD_ZERO(&rfds);
	FD_SET(fd, &rfds);
	EXPECT_EQ(1, select(fd + 1, &rfds, NULL, NULL, &zero));
	EXPECT_TRUE(FD_ISSET(fd, &rfds));

	expect_results(_metadata, &self->ring, 1, 2);
	FD_ZERO(&rfds);
	FD_SET(fd, &rfds);
	EXPECT_EQ(0, select(fd + 1, &rfds, NULL, NULL, &zero));
}

TEST_F(producer, epoll_level_triggered)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	ASSERT_GE(ep, 0);
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, self->ring.fd, &ev));
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));

	post(_metadata, self->ring.fd, "workqueue", 1, 4, 2, 4);
	ASSERT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN, ev.events);
	/* Level-triggered: still there until consumed. */
	EXPECT_EQ(1, epoll_wait(ep, &ev, 1, 0));

	expect_results(_metadata, &self->ring, 1, 4);
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));
	close(ep);
}

TEST_F(producer, epoll_edge_triggered_once_per_post)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int fd = self->ring.fd;

	ASSERT_GE(ep, 0);
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));

	post(_metadata, fd, "hardirq", 1, 2, 1, 2);
	EXPECT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));

	/* A new post is a new edge, even with results still pending. */
	post(_metadata, fd, "hardirq", 3, 2, 2, 2);
	EXPECT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));

	/* Consuming is no edge. */
	expect_results(_metadata, &self->ring, 1, 4);
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));

	post(_metadata, fd, "hardirq", 5, 1, 1, 1);
	EXPECT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	close(ep);
}

/*
 * A post wakes pollers only if one of them polled since the last wake.
 * Any epoll set that reported the file polled it, so each set still
 * sees an edge for every post after its own last report.
 */
TEST_F(producer, epoll_edge_triggered_edge_for_every_set)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int first = epoll_create1(EPOLL_CLOEXEC);
	int second = epoll_create1(EPOLL_CLOEXEC);
	int fd = self->ring.fd;

	ASSERT_GE(first, 0);
	ASSERT_GE(second, 0);
	ASSERT_EQ(0, epoll_ctl(first, EPOLL_CTL_ADD, fd, &ev));
	ASSERT_EQ(0, epoll_ctl(second, EPOLL_CTL_ADD, fd, &ev));

	post(_metadata, fd, "hardirq", 1, 1, 1, 1);
	EXPECT_EQ(1, epoll_wait(first, &ev, 1, 0));

	/* Not the ring going from empty to non-empty, yet an edge. */
	post(_metadata, fd, "hardirq", 2, 1, 1, 1);
	EXPECT_EQ(1, epoll_wait(first, &ev, 1, 0));
	EXPECT_EQ(0, epoll_wait(first, &ev, 1, 0));
	EXPECT_EQ(1, epoll_wait(second, &ev, 1, 0));
	EXPECT_EQ(0, epoll_wait(second, &ev, 1, 0));

	post(_metadata, fd, "hardirq", 3, 1, 1, 1);
	EXPECT_EQ(1, epoll_wait(second, &ev, 1, 0));
	EXPECT_EQ(1, epoll_wait(first, &ev, 1, 0));

	expect_results(_metadata, &self->ring, 1, 3);
	close(second);
	close(first);
}

TEST_F(producer, poll_wakes_blocked_waiter)
{
	store_wakes(_metadata, &self->ring, WAIT_POLL);
}

/*
 * POLLPRI means results wait in the kernel, and nothing else; POLLIN
 * means there is work, in the ring or waiting.  poll() itself never
 * reports POLLHUP on an open asyncfd.  Catches POLLPRI that is late or
 * stale, and an empty ring with results waiting that polls idle.
 */
TEST_F(producer, pollpri_exactly_while_results_wait)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDNORM | EPOLLPRI };
	struct asyncfd_ring *ring = &self->ring;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	int fd = ring->fd;

	ASSERT_LE(0, ep);
	ASSERT_EQ(0, epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
	EXPECT_EQ(0, poll_now(fd));
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));

	/* Full, and 3 wait. */
	post(_metadata, fd, "process", 1, RING_SIZE + 2, 4, RING_SIZE - 1);
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	ASSERT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN | EPOLLRDNORM | EPOLLPRI, ev.events);

	/* Reaped, yet still readable: the results that wait are work. */
	expect_results(_metadata, ring, 1, RING_SIZE - 1);
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	ASSERT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN | EPOLLRDNORM | EPOLLPRI, ev.events);

	/* Once in the ring, they are results like any others. */
	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(READABLE, poll_now(fd));
	ASSERT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN | EPOLLRDNORM, ev.events);
	expect_results(_metadata, ring, RING_SIZE, 3);
	EXPECT_EQ(0, poll_now(fd));
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));

	/* A store alone is no POLLPRI. */
	post(_metadata, fd, "hardirq", 100, 1, 1, 1);
	EXPECT_EQ(READABLE, poll_now(fd));
	ASSERT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN | EPOLLRDNORM, ev.events);

	/* 6 fit behind it and 2 wait, until a post with room takes them. */
	post(_metadata, fd, "softirq", 101, RING_SIZE, 2, RING_SIZE - 2);
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	expect_results(_metadata, ring, 100, RING_SIZE - 1);
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	post(_metadata, fd, "workqueue", 109, 1, 1, 1);
	EXPECT_EQ(READABLE, poll_now(fd));
	ASSERT_EQ(1, epoll_wait(ep, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN | EPOLLRDNORM, ev.events);
	expect_results(_metadata, ring, 107, 3);
	EXPECT_EQ(0, poll_now(fd));
	EXPECT_EQ(0, epoll_wait(ep, &ev, 1, 0));
	close(ep);
}

/*
 * A batch that has to wait is an edge, as a stored one is: with the
 * ring full, nothing but waiting happens.  Catches a kernel that does
 * not wake for results that wait, or wakes without EPOLLPRI.
 */
TEST_F(producer, epoll_edge_triggered_edge_per_waiting_batch)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLPRI | EPOLLET };
	int with_pri = epoll_create1(EPOLL_CLOEXEC);
	int in_only = epoll_create1(EPOLL_CLOEXEC);
	int fd = self->ring.fd;
	unsigned int round;

	ASSERT_LE(0, with_pri);
	ASSERT_LE(0, in_only);
	ASSERT_EQ(0, epoll_ctl(with_pri, EPOLL_CTL_ADD, fd, &ev));
	ev.events = EPOLLIN | EPOLLET;
	ASSERT_EQ(0, epoll_ctl(in_only, EPOLL_CTL_ADD, fd, &ev));

	post(_metadata, fd, "process", 1, RING_SIZE - 1, 4, RING_SIZE - 1);
	ASSERT_EQ(1, epoll_wait(with_pri, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN, ev.events);
	ASSERT_EQ(1, epoll_wait(in_only, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN, ev.events);
	EXPECT_EQ(0, epoll_wait(with_pri, &ev, 1, 0));
	EXPECT_EQ(0, epoll_wait(in_only, &ev, 1, 0));

	/* Each batch that waits after a report is an edge. */
	for (round = 0; round < 3; round++) {
		post(_metadata, fd, contexts[round + 2], RING_SIZE + 2 * round,
		     2, 1, 0);
		ASSERT_EQ(1, epoll_wait(with_pri, &ev, 1, 0));
		EXPECT_EQ(EPOLLIN | EPOLLPRI, ev.events);
		ASSERT_EQ(1, epoll_wait(in_only, &ev, 1, 0));
		EXPECT_EQ(EPOLLIN, ev.events);
		EXPECT_EQ(0, epoll_wait(with_pri, &ev, 1, 0));
		EXPECT_EQ(0, epoll_wait(in_only, &ev, 1, 0));
	}

	/*
	 * Whether a flush is an edge is not the point here; once it has
	 * made room, a post that stores some and queues the rest is one.
	 */
	expect_results(_metadata, &self->ring, 1, RING_SIZE - 1);
	EXPECT_EQ(0, asyncfd_flush(&self->ring));
	epoll_drain(with_pri);
	epoll_drain(in_only);
	post(_metadata, fd, "hardirq", RING_SIZE + 6, 2, 2, 1);
	ASSERT_EQ(1, epoll_wait(with_pri, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN | EPOLLPRI, ev.events);
	ASSERT_EQ(1, epoll_wait(in_only, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN, ev.events);

	expect_drained(_metadata, &self->ring, RING_SIZE, RING_SIZE);
	close(in_only);
	close(with_pri);
}

/*
 * A store wakes with EPOLLIN, which a waiter that asked only for
 * POLLPRI passes over; the first result that has to wait must then wake
 * it, with POLLPRI in the wakeup.  Catches a kernel that wakes for a
 * waiting result with the events of a store.
 */
TEST_F(producer, wait_wakes_pri_waiter_after_store_woke)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct asyncfd_ring *ring = &self->ring;
	struct waiter by_poll = {
		.how = WAIT_POLL, .fd = ring->fd, .events = POLLPRI,
	};
	struct waiter by_epoll = { .how = WAIT_EPOLL };
	int in_set = epoll_create1(EPOLL_CLOEXEC);
	struct watchdog wd;

	/* A set that takes the store's wakeup, and is never waited on. */
	ASSERT_LE(0, in_set);
	ASSERT_EQ(0, epoll_ctl(in_set, EPOLL_CTL_ADD, ring->fd, &ev));
	by_epoll.fd = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_LE(0, by_epoll.fd);
	ev.events = EPOLLPRI;
	ASSERT_EQ(0, epoll_ctl(by_epoll.fd, EPOLL_CTL_ADD, ring->fd, &ev));

	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "POLLPRI-only waiters");
	waiter_start(_metadata, &by_poll);
	waiter_start(_metadata, &by_epoll);

	post(_metadata, ring->fd, "hardirq", 1, RING_SIZE - 1, RING_SIZE - 1,
	     RING_SIZE - 1);
	/* The ring is full: the next result waits. */
	post(_metadata, ring->fd, "hardirq", RING_SIZE, 1, 1, 0);

	ASSERT_EQ(0, pthread_join(by_poll.thread, NULL));
	ASSERT_EQ(0, pthread_join(by_epoll.thread, NULL));
	watchdog_stop(&wd);
	EXPECT_EQ(1, by_poll.ret);
	EXPECT_EQ(POLLPRI, by_poll.revents);
	EXPECT_EQ(1, by_epoll.ret);
	EXPECT_EQ(EPOLLPRI, by_epoll.revents);
	ASSERT_EQ(1, epoll_wait(in_set, &ev, 1, 0));
	EXPECT_EQ(EPOLLIN, ev.events);

	expect_drained(_metadata, ring, 1, RING_SIZE);
	close(by_epoll.fd);
	close(in_set);
}

/*
 * A waiter for POLLRDNORM alone, which a wakeup that carries EPOLLIN
 * only, or EPOLLPRI only, passes by.  With the ring empty, poll()
 * sleeps until a store.  With the ring full, poll() would not sleep at
 * all, so an edge-triggered set that asks for EPOLLRDNORM alone, and
 * whose last edge was taken, stands in: only the wakeup for a result
 * that has to wait can give it a new one.
 */
TEST_F(producer, rdnorm_waiter_woken_by_store_and_by_wait)
{
	struct epoll_event ev = { .events = EPOLLRDNORM | EPOLLET };
	struct asyncfd_ring *ring = &self->ring;
	struct waiter by_poll = {
		.how = WAIT_POLL, .fd = ring->fd, .events = POLLRDNORM,
	};
	struct waiter by_epoll = { .how = WAIT_EPOLL };
	struct watchdog wd;

	by_epoll.fd = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_LE(0, by_epoll.fd);
	ASSERT_EQ(0, epoll_ctl(by_epoll.fd, EPOLL_CTL_ADD, ring->fd, &ev));

	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "POLLRDNORM-only waiters");
	waiter_start(_metadata, &by_poll);
	post(_metadata, ring->fd, "hardirq", 1, 1, 1, 1);
	ASSERT_EQ(0, pthread_join(by_poll.thread, NULL));
	EXPECT_EQ(1, by_poll.ret);
	EXPECT_EQ(POLLRDNORM, by_poll.revents);

	post(_metadata, ring->fd, "hardirq", 2, RING_SIZE - 2, RING_SIZE - 2,
	     RING_SIZE - 2);
	ASSERT_EQ(1, epoll_wait(by_epoll.fd, &ev, 1, 0));
	EXPECT_EQ(EPOLLRDNORM, ev.events);
	ASSERT_EQ(0, epoll_wait(by_epoll.fd, &ev, 1, 0));
	waiter_start(_metadata, &by_epoll);
	post(_metadata, ring->fd, "hardirq", RING_SIZE, 1, 1, 0);
	ASSERT_EQ(0, pthread_join(by_epoll.thread, NULL));
	watchdog_stop(&wd);
	EXPECT_EQ(1, by_epoll.ret);
	EXPECT_EQ(EPOLLRDNORM, by_epoll.revents);

	expect_drained(_metadata, ring, 1, RING_SIZE);
	close(by_epoll.fd);
}

int main(int argc, char **argv)
{
	require_asyncfd();
	return test_harness_run(argc, argv);
}
