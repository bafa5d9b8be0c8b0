// SPDX-License-Identifier: GPL-2.0
/*
 * read() on an asyncfd: it sleeps until there are results, moves the
 * results that wait into the room the consumer made, and counts what the
 * ring holds without consuming it, so that a consumer that waits in
 * read() alone gets every result.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "asyncfd_test.h"

/* A store wakes a blocked reader, which counts what was stored. */
TEST_F(producer, read_wakes_blocked_reader)
{
	store_wakes(_metadata, &self->ring, WAIT_READ);
}

/* Every blocked reader wakes, as every poller does. */
TEST_F(producer, read_wakes_every_blocked_reader)
{
	struct waiter w[3];
	struct watchdog wd;
	unsigned int i;

	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "readers for a store");
	for (i = 0; i < ARRAY_SIZE(w); i++) {
		w[i] = (struct waiter){ .how = WAIT_READ, .fd = self->ring.fd };
		waiter_start(_metadata, &w[i]);
	}
	post(_metadata, self->ring.fd, "softirq", 1, 2, 2, 2);
	for (i = 0; i < ARRAY_SIZE(w); i++) {
		ASSERT_EQ(0, pthread_join(w[i].thread, NULL));
		EXPECT_EQ(1, w[i].ret);
		EXPECT_EQ(2, w[i].waiting);
	}
	watchdog_stop(&wd);
	expect_results(_metadata, &self->ring, 1, 2);
}

/*
 * The count is what lies between iuser and the kernel's tail, wrap
 * included; reading it consumes nothing.
 */
TEST_F(producer, read_counts_results_without_consuming)
{
	struct asyncfd_result res[RING_SIZE];
	__u64 waiting;

	post(_metadata, self->ring.fd, "process", 1, RING_SIZE - 4,
	     RING_SIZE - 4, RING_SIZE - 4);
	ASSERT_EQ(sizeof(waiting), read(self->ring.fd, &waiting, sizeof(waiting)));
	EXPECT_EQ(RING_SIZE - 4, waiting);
	ASSERT_EQ(sizeof(waiting), read(self->ring.fd, &waiting, sizeof(waiting)));
	EXPECT_EQ(RING_SIZE - 4, waiting);
	EXPECT_EQ(RING_SIZE - 6, reap_all(&self->ring, res, RING_SIZE - 6));
	/* Across the end of the ring: 2 old results and 5 new ones. */
	post(_metadata, self->ring.fd, "hardirq", RING_SIZE - 3, 5, 5, 5);
	ASSERT_EQ(sizeof(waiting), read(self->ring.fd, &waiting, sizeof(waiting)));
	EXPECT_EQ(7, waiting);
	expect_results(_metadata, &self->ring, RING_SIZE - 5, 7);
	ASSERT_EQ(0, set_nonblocking(self->ring.fd));
	errno = 0;
	EXPECT_EQ(-1, read(self->ring.fd, &waiting, sizeof(waiting)));
	EXPECT_EQ(EAGAIN, errno);
}

/* A signal ends a blocked read() with EINTR, without SA_RESTART. */
TEST_F(producer, signal_interrupts_blocked_read)
{
	struct sigaction sa = { .sa_handler = ignore_signal }, old;
	struct waiter w = { .how = WAIT_READ, .fd = self->ring.fd };
	struct watchdog wd;

	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, &old));
	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "interrupted read()");
	waiter_start(_metadata, &w);
	ASSERT_EQ(0, pthread_kill(w.thread, SIGUSR1));
	ASSERT_EQ(0, pthread_join(w.thread, NULL));
	watchdog_stop(&wd);
	sigaction(SIGUSR1, &old, NULL);
	EXPECT_EQ(-1, w.ret);
	EXPECT_EQ(EINTR, w.err);
	EXPECT_EQ(0, poll_now(self->ring.fd));
}

/*
 * read() counts what the ring holds, nonblocking or not: EAGAIN is for
 * nothing at all.  Catches a read() that fails with EAGAIN while the
 * ring holds results.
 */
TEST_F(producer, nonblocking_read_with_results_returns_count)
{
	int fd = self->ring.fd;
	__u64 count = 0;

	ASSERT_EQ(0, set_nonblocking(fd));
	post(_metadata, fd, "process", 1, 3, 3, 3);
	ASSERT_EQ(sizeof(count), read(fd, &count, sizeof(count)));
	EXPECT_EQ(3, count);
	ASSERT_EQ(sizeof(count), read(fd, &count, sizeof(count)));
	EXPECT_EQ(3, count);

	/* A full ring with results waiting, too. */
	post(_metadata, fd, "hardirq", 4, RING_SIZE - 1, RING_SIZE - 1,
	     RING_SIZE - 4);
	ASSERT_EQ(sizeof(count), read(fd, &count, sizeof(count)));
	EXPECT_EQ(RING_SIZE - 1, count);
	expect_drained(_metadata, &self->ring, 1, RING_SIZE + 2);
	errno = 0;
	EXPECT_EQ(-1, read(fd, &count, sizeof(count)));
	EXPECT_EQ(EAGAIN, errno);
}

/*
 * read() flushes before it counts: into a full ring nothing moves, into
 * room the waiting results do; and with the ring empty but results
 * waiting it returns at once.  Catches a read() that counts without
 * flushing, or sleeps while results wait.
 */
TEST_F(producer, read_moves_waiting_results_in)
{
	struct asyncfd_ring *ring = &self->ring;
	struct asyncfd_result res[3];
	struct watchdog wd;
	int fd = ring->fd;
	__u64 count;

	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "read() with results waiting");
	post(_metadata, fd, "process", 1, RING_SIZE + 1, RING_SIZE + 1,
	     RING_SIZE - 1);
	ASSERT_EQ(sizeof(count), read(fd, &count, sizeof(count)));
	EXPECT_EQ(RING_SIZE - 1, count);
	EXPECT_EQ(2, fdinfo_get(fd, "asyncfd-waiting"));

	ASSERT_EQ(3, asyncfd_reap(ring, res, 3));
	ASSERT_EQ(sizeof(count), read(fd, &count, sizeof(count)));
	EXPECT_EQ(RING_SIZE - 1 - 3 + 2, count);
	EXPECT_EQ(0, kflags(ring));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(READABLE, poll_now(fd));
	expect_results(_metadata, ring, 4, RING_SIZE - 1 - 3 + 2);

	/* 17 waits behind a ring that we then empty. */
	post(_metadata, fd, "hardirq", 10, RING_SIZE, RING_SIZE, RING_SIZE - 1);
	expect_results(_metadata, ring, 10, RING_SIZE - 1);
	ASSERT_EQ(sizeof(count), read(fd, &count, sizeof(count)));
	EXPECT_EQ(1, count);
	watchdog_stop(&wd);
	EXPECT_EQ(0, kflags(ring));
	expect_results(_metadata, ring, 17, 1);
}

/*
 * A consumer that waits in read() alone, and reaps what it counts, gets
 * every result, waiting ones included, and then EAGAIN.  The counts are
 * exact, as read() moves what fits before it counts.
 */
TEST_F(producer, read_loop_reaps_everything)
{
	static const __u64 counts[] = { RING_SIZE - 1, RING_SIZE - 1, 1 };
	struct asyncfd_result res[RING_SIZE];
	struct asyncfd_ring *ring = &self->ring;
	__u64 cookie = 1, count;
	struct watchdog wd;
	unsigned int i;

	post(_metadata, ring->fd, "process", 1, 2 * RING_SIZE - 1,
	     2 * RING_SIZE - 1, RING_SIZE - 1);
	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "read() loop");
	for (i = 0; i < ARRAY_SIZE(counts); i++) {
		ASSERT_EQ(sizeof(count), read(ring->fd, &count, sizeof(count)));
		ASSERT_EQ(counts[i], count);
		ASSERT_EQ(count, asyncfd_reap(ring, res, count));
		expect_cookies(_metadata, res, count, cookie);
		cookie += count;
	}
	watchdog_stop(&wd);
	ASSERT_EQ(0, set_nonblocking(ring->fd));
	errno = 0;
	EXPECT_EQ(-1, read(ring->fd, &count, sizeof(count)));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(0, poll_now(ring->fd));
}

int main(int argc, char **argv)
{
	require_asyncfd();
	return test_harness_run(argc, argv);
}
