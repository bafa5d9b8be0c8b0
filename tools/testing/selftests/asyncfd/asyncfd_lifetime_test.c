// SPDX-License-Identifier: GPL-2.0
/*
 * What keeps a ring registered and pinned, and what ends it: a swap,
 * which moves the results that wait into the new ring; munmap() of the
 * ring, which the pinned pages outlive; dup(), fork() and SCM_RIGHTS,
 * which share the asyncfd; and the last close, which frees the results
 * that wait and ends the posts that retry.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <sys/socket.h>

#include "../kselftest_harness.h"
#include "asyncfd_test.h"

TEST_F(producer, swap_keeps_pending_results)
{
	long long vmpin = vmpin_now_kb();
	struct asyncfd_ring next;
	int fd = self->ring.fd;

	post(_metadata, fd, "process", 1, 5, 5, 5);

	/* Start near the end, so that the new ring wraps too. */
	ASSERT_EQ(0, asyncfd_ring_map(&next, 512));
	next.hdr->ikernel = 508;
	next.hdr->iuser = 508;
	ASSERT_EQ(0, asyncfd_ring_swap(&self->ring, &next));
	EXPECT_EQ(vmpin - pages_kb(ring_pages(RING_SIZE)) + pages_kb(ring_pages(512)),
		  vmpin_now_kb());
	/* Readiness is about the new ring only. */
	EXPECT_EQ(0, poll_now(fd));

	post(_metadata, fd, "hardirq", 100, 10, 4, 10);
	EXPECT_EQ(5, asyncfd_ring_ready(&self->ring));
	expect_results(_metadata, &self->ring, 1, 5);
	expect_results(_metadata, &next, 100, 10);

	EXPECT_EQ(512, fdinfo_get(fd, "asyncfd-size"));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-tail"));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-iuser"));
	EXPECT_EQ(ring_pages(512), fdinfo_get(fd, "asyncfd-pinned-pages"));
	asyncfd_ring_exit(&next);
}

/*
 * A swap moves the results that wait into the new ring, ahead of later
 * posts, and the old ring keeps what it had.  Catches waiting results
 * lost or left behind at a swap, or stored into the old ring after it
 * was given back, and a new header whose ikernel or kflags the kernel
 * did not write.
 */
TEST_F(producer, swap_moves_waiting_results_into_new_ring)
{
	struct asyncfd_ring next;
	int fd = self->ring.fd;

	post(_metadata, fd, "process", 1, RING_SIZE + 2, RING_SIZE + 2,
	     RING_SIZE - 1);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(&self->ring));

	/* Near the end, so that the results moved in wrap. */
	ASSERT_EQ(0, asyncfd_ring_map(&next, 2 * RING_SIZE));
	next.hdr->ikernel = 2 * RING_SIZE - 1;
	next.hdr->iuser = 2 * RING_SIZE - 1;
	ASSERT_EQ(0, asyncfd_ring_swap(&self->ring, &next));
	EXPECT_EQ(2, next.hdr->ikernel);
	EXPECT_EQ(0, kflags(&next));
	EXPECT_EQ(READABLE, poll_now(fd));
	EXPECT_EQ(2 * RING_SIZE, fdinfo_get(fd, "asyncfd-size"));
	EXPECT_EQ(2, fdinfo_get(fd, "asyncfd-tail"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting-copied"));
	EXPECT_EQ(2 * RING_SIZE, fdinfo_get(fd, "asyncfd-copy-limit"));
	EXPECT_EQ(3, fdinfo_get(fd, "asyncfd-waited-total"));

	post(_metadata, fd, "hardirq", RING_SIZE + 3, 2, 2, 2);
	EXPECT_EQ(RING_SIZE - 1, self->ring.hdr->ikernel);
	expect_results(_metadata, &self->ring, 1, RING_SIZE - 1);
	expect_results(_metadata, &next, RING_SIZE, 5);
	EXPECT_EQ(0, poll_now(fd));
	asyncfd_ring_exit(&next);
}

/*
 * A new ring with less room than what waits takes what fits, and the
 * rest goes on waiting, as the new header's kflags says.
 */
TEST_F(producer, swap_into_small_ring_keeps_rest_waiting)
{
	struct asyncfd_ring small;
	int fd = self->ring.fd;

	post(_metadata, fd, "process", 1, 2 * RING_SIZE - 1, 2 * RING_SIZE - 1,
	     RING_SIZE - 1);
	ASSERT_EQ(0, asyncfd_ring_map(&small, 4));
	ASSERT_EQ(0, asyncfd_ring_swap(&self->ring, &small));
	EXPECT_EQ(3, small.hdr->ikernel);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(&small));
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	EXPECT_EQ(RING_SIZE - 3, fdinfo_get(fd, "asyncfd-waiting"));

	EXPECT_EQ(RING_SIZE - 1, self->ring.hdr->ikernel);
	expect_results(_metadata, &self->ring, 1, RING_SIZE - 1);
	expect_drained(_metadata, &small, RING_SIZE, RING_SIZE);
	EXPECT_EQ(0, kflags(&small));
	EXPECT_EQ(0, poll_now(fd));
	asyncfd_ring_exit(&small);
}

TEST_F(producer, munmapped_ring_keeps_working_until_swap)
{
	long long vmpin = vmpin_now_kb();
	struct asyncfd_ring next;
	int fd = self->ring.fd;

	asyncfd_ring_unmap(&self->ring);
	post(_metadata, fd, "process", 1, 3, 3, 3);
	EXPECT_EQ(READABLE, poll_now(fd));
	EXPECT_EQ(3, fdinfo_get(fd, "asyncfd-tail"));
	/* Nobody consumes from the pinned pages: 10 to 13 fit, 6 wait. */
	post(_metadata, fd, "hardirq", 10, 10, 3, RING_SIZE - 1 - 3);
	EXPECT_EQ(10 - (RING_SIZE - 1 - 3), fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	EXPECT_EQ(vmpin, vmpin_now_kb());

	/* What waited goes into the new ring; what was stored stays behind. */
	ASSERT_EQ(0, asyncfd_ring_map(&next, 1024));
	ASSERT_EQ(0, asyncfd_ring_swap(&self->ring, &next));
	EXPECT_EQ(vmpin - pages_kb(ring_pages(RING_SIZE)) + pages_kb(ring_pages(1024)),
		  vmpin_now_kb());
	EXPECT_EQ(READABLE, poll_now(fd));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting"));
	expect_results(_metadata, &next, 10 + RING_SIZE - 1 - 3,
		       10 - (RING_SIZE - 1 - 3));
	post(_metadata, fd, "process", 100, 2, 2, 2);
	expect_results(_metadata, &next, 100, 2);
	EXPECT_EQ(10 - (RING_SIZE - 1 - 3),
		  fdinfo_get(fd, "asyncfd-waited-total"));
	asyncfd_ring_exit(&next);
}

TEST_F(producer, ring_stays_registered_until_last_close)
{
	long long vmpin = vmpin_now_kb();
	int fd = self->ring.fd, dupfd;

	dupfd = dup(fd);
	ASSERT_GE(dupfd, 0);
	ASSERT_EQ(0, close(fd));
	self->ring.fd = -1;

	post(_metadata, dupfd, "process", 1, 3, 3, 3);
	expect_results(_metadata, &self->ring, 1, 3);
	EXPECT_EQ(vmpin, vmpin_now_kb());

	ASSERT_EQ(0, close(dupfd));
	EXPECT_EQ(vmpin - pages_kb(ring_pages(RING_SIZE)), vmpin_now_kb());
}

TEST_F(producer, fork_child_posts_into_parent_ring)
{
	struct asyncfd_ring *ring = &self->ring;
	long long vmpin = vmpin_now_kb();
	pid_t pid;

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct post_result pr;

		CHILD_CHECK(test_producer_post(ring->fd, "process", 1, 4, 4, &pr) == 0);
		CHILD_CHECK(pr.stored == 4);
		/*
		 * The pages stay pinned by, and charged to, the parent; our
		 * copy of the ring, made at fork, never sees a result.
		 */
		CHILD_CHECK(vmpin_now_kb() == 0);
		CHILD_CHECK(asyncfd_ring_ready(ring) == 0);
		CHILD_CHECK(ring->entries[0].cookie == 0);
		_exit(0);
	}
	ASSERT_EQ(0, wait_child(pid));
	EXPECT_EQ(vmpin, vmpin_now_kb());
	expect_results(_metadata, ring, 1, 4);
}

TEST(scm_rights_receiver_posts_into_sender_ring)
{
	struct asyncfd_ring ring;
	long long vmpin;
	int sv[2];
	pid_t pid;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	/* A stream socket, so that the child sees EOF if we fail early. */
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	/* Fork first: the child gets the asyncfd only through the socket. */
	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		struct post_result pr;
		int fd;

		close(sv[0]);
		fd = recv_fd(sv[1]);
		CHILD_CHECK(fd >= 0);
		CHILD_CHECK(is_asyncfd(fd));
		CHILD_CHECK(test_producer_post(fd, "softirq", 1, 6, 2, &pr) == 0);
		CHILD_CHECK(pr.stored == 6);
		_exit(0);
	}
	close(sv[1]);

	vmpin = vmpin_now_kb();
	ASSERT_EQ(0, asyncfd_ring_setup(&ring, RING_SIZE, 0));
	ASSERT_EQ(0, send_fd(sv[0], ring.fd));
	/* From now on only the child's descriptor keeps the ring registered. */
	close(ring.fd);
	ring.fd = -1;

	ASSERT_EQ(0, wait_child(pid));
	/* The child's exit released the ring; what it stored is ours. */
	EXPECT_EQ(vmpin, vmpin_now_kb());
	expect_results(_metadata, &ring, 1, 6);
	asyncfd_ring_exit(&ring);
	close(sv[0]);
}

/*
 * Closing the asyncfd frees the copies of the results that wait, and a
 * producer still at work, here one retrying a call that the bound
 * refused, gets -EBADFD and hands nothing more over.  Catches copies
 * leaked at release (kmemleak, which the harness scans after the run,
 * reports them), copies stored into the ring after the close, and a
 * producer left retrying for ever (the watchdog).
 */
TEST(close_frees_waiting_results)
{
	static const char * const retrying[] = {
		"kthread", "workqueue", "softirq", "hardirq",
	};
	long long base = vmpin_now_kb();
	struct watchdog wd;
	unsigned int i;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "a retrying post and a close");
	for (i = 0; i < ARRAY_SIZE(retrying); i++) {
		struct retry_poster p = {
			.context = retrying[i],
			.cookie = 2 * RING_SIZE - 1,
			.count = 5,
			.batch = 1,
		};
		struct asyncfd_ring ring;
		pthread_t thread;

		ASSERT_EQ(0, asyncfd_ring_setup(&ring, RING_SIZE, 0));
		/* Full, and one copy short of the bound. */
		post(_metadata, ring.fd, "process", 1, 2 * RING_SIZE - 2,
		     2 * RING_SIZE - 2, RING_SIZE - 1);
		p.fd = ring.fd;
		p.tp = test_producer_open();
		ASSERT_LE(0, p.tp);
		ASSERT_EQ(0, pthread_create(&thread, NULL, retry_poster_run, &p));

		/*
		 * Its first result reaches the bound; from the second on it
		 * retries, holding the asyncfd, until the close.
		 */
		while (fdinfo_get(ring.fd, "asyncfd-waiting") != RING_SIZE)
			usleep(1000);
		ASSERT_EQ(0, close(ring.fd));
		ring.fd = -1;
		/*
		 * The poster holds the context, not the file: close() dropped
		 * the last reference, and the release unpinned the ring
		 * before close() returned.
		 */
		EXPECT_EQ(base, vmpin_now_kb());
		ASSERT_EQ(0, pthread_join(thread, NULL));
		close(p.tp);

		ASSERT_EQ(0, p.ret);
		TH_LOG("%s: %u retries before the close", p.context,
		       p.result.retries);
		EXPECT_EQ(-EBADFD, p.result.error);
		EXPECT_EQ(0, p.result.stored);
		EXPECT_EQ(1, p.result.waited);
		EXPECT_EQ(p.count - 1, p.result.unposted);
		/* The ring is ours again, with what was stored before. */
		EXPECT_EQ(RING_SIZE - 1, ring.hdr->ikernel);
		expect_results(_metadata, &ring, 1, RING_SIZE - 1);
		asyncfd_ring_exit(&ring);
	}
	watchdog_stop(&wd);
}

int main(int argc, char **argv)
{
	require_asyncfd();
	return test_harness_run(argc, argv);
}
