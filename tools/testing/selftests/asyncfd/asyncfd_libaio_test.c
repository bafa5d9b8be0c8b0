// SPDX-License-Identifier: GPL-2.0
/*
 * An application's view: libaio submits, asyncfd delivers.  Requests
 * outnumber the ring, so some completions find it full and wait in the
 * kernel, each in its own request, until the application makes room
 * and asks for them with a flush.  Every request is counted exactly
 * once through the ring alone: libaio's io_getevents() has nothing to
 * do while the asyncfd is open.  No wait has a timeout.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "asyncfd_ring.h"
#include "nullb.h"
#include "required.h"
#include "stress_helpers.h"

/* As in <linux/aio_abi.h>, which cannot be included with libaio.h. */
#ifndef IOCB_FLAG_ASYNCFD
#define IOCB_FLAG_ASYNCFD	0x4
#endif

#define BLOCK		4096
#define REQUESTS	4000
#define DEPTH		32
#define RING_SIZE	16

FIXTURE(libaio) {
	io_context_t aio;
	struct asyncfd_ring ring;
	struct nullb nb;
	int fd;
};

FIXTURE_VARIANT(libaio) {
	unsigned int irqmode;	/* of null_blk; 3 for a regular file */
};

FIXTURE_VARIANT_ADD(libaio, file) {
	.irqmode = 3,
};

FIXTURE_VARIANT_ADD(libaio, nullb_inline) {
	.irqmode = 0,
};

FIXTURE_VARIANT_ADD(libaio, nullb_softirq) {
	.irqmode = 1,
};

FIXTURE_VARIANT_ADD(libaio, nullb_hardirq) {
	.irqmode = 2,
};

FIXTURE_SETUP(libaio)
{
	char block[BLOCK];
	int ret;

	self->fd = -1;
	memset(&self->nb, 0, sizeof(self->nb));
	ret = asyncfd_ring_setup(&self->ring, RING_SIZE, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	ret = io_setup(DEPTH * 2, &self->aio);
	if (ret == -ENOSYS)
		MISSING(return, "kernel AIO not supported");
	ASSERT_EQ(0, ret);

	if (variant->irqmode == 3) {
		self->fd = open("/tmp/asyncfd_libaio_test",
				O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		ASSERT_LE(0, self->fd);
		unlink("/tmp/asyncfd_libaio_test");
		memset(block, 0x5a, sizeof(block));
		ASSERT_EQ(BLOCK, write(self->fd, block, BLOCK));
		return;
	}
	self->fd = nullb_open(&self->nb, "asyncfd_libaio", variant->irqmode,
			      10000);
	if (self->fd == -ENOENT)
		MISSING(return, "null_blk configfs not available");
	ASSERT_LE(0, self->fd);
}

FIXTURE_TEARDOWN(libaio)
{
	if (self->aio)
		io_destroy(self->aio);
	if (self->fd >= 0)
		close(self->fd);
	nullb_destroy(&self->nb);
	asyncfd_ring_exit(&self->ring);
}

static int take(unsigned char *seen, uint64_t cookie, long res)
{
	if (!cookie || cookie > REQUESTS || seen[cookie] || res != BLOCK)
		return -1;
	seen[cookie] = 1;
	return 0;
}

/*
 * The waits have no timeout: a completion that has to wait makes the
 * asyncfd readable as a stored one does, and stays readable until a
 * flush lets it in.  Should a wait hang, the harness's timeout fails
 * the test.  Catches a kernel that sends results that found the ring
 * full to the aio ring (ABI v2: here they would never be collected).
 */
TEST_F(libaio, every_request_once_through_ring)
{
	struct epoll_event ev = { .events = EPOLLIN };
	unsigned int submitted = 0, done = 0, flushes = 0, bad = 0, i, n;
	struct iocb iocbs[DEPTH], *free_iocbs[DEPTH], *iocbp;
	struct asyncfd_result res[RING_SIZE];
	struct timespec zero = { 0, 0 };
	struct io_event events[1];
	unsigned int nr_free = DEPTH;
	unsigned char *seen;
	char *bufs;
	int epfd, ret;

	seen = calloc(REQUESTS + 1, 1);
	ASSERT_NE(NULL, seen);
	ASSERT_EQ(0, posix_memalign((void **)&bufs, BLOCK, DEPTH * BLOCK));
	for (i = 0; i < DEPTH; i++)
		free_iocbs[i] = &iocbs[i];
	epfd = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_LE(0, epfd);
	ASSERT_EQ(0, epoll_ctl(epfd, EPOLL_CTL_ADD, self->ring.fd, &ev));

	while (done < REQUESTS && !bad) {
		while (nr_free && submitted < REQUESTS) {
			iocbp = free_iocbs[--nr_free];
			io_prep_pread(iocbp, self->fd,
				      bufs + (iocbp - iocbs) * BLOCK, BLOCK, 0);
			submitted++;
			iocbp->data = (void *)(uintptr_t)submitted;
			iocbp->u.c.flags |= IOCB_FLAG_ASYNCFD;
			iocbp->u.c.resfd = self->ring.fd;
			ret = io_submit(self->aio, 1, &iocbp);
			ASSERT_EQ(1, ret) TH_LOG("io_submit: %s", strerror(-ret));
		}
		n = asyncfd_reap(&self->ring, res, RING_SIZE);
		for (i = 0; i < n; i++) {
			bad += take(seen, res[i].cookie, res[i].res);
			free_iocbs[nr_free++] = (struct iocb *)(uintptr_t)res[i].obj;
		}
		done += n;
		/* What waits enters the room just made. */
		if (asyncfd_waiting(&self->ring)) {
			ASSERT_LE(0, asyncfd_flush(&self->ring));
			flushes++;
			continue;
		}
		if (!n && epoll_wait(epfd, &ev, 1, -1) < 0)
			ASSERT_EQ(EINTR, errno);
	}
	EXPECT_EQ(REQUESTS, done);
	EXPECT_EQ(0, bad);
	EXPECT_FALSE(asyncfd_waiting(&self->ring));
	EXPECT_EQ(0, asyncfd_ring_ready(&self->ring));
	/* 32 in flight for a ring of 15: some had to wait. */
	EXPECT_LT(0, flushes);
	EXPECT_LT(0, fdinfo_get(self->ring.fd, "asyncfd-waited-total"));
	EXPECT_EQ(0, io_getevents(self->aio, 0, 1, events, &zero));
	ksft_print_msg("%u reads at depth %d, ring of %d: %u flushes, %lld waited\n",
		       REQUESTS, DEPTH, RING_SIZE, flushes,
		       fdinfo_get(self->ring.fd, "asyncfd-waited-total"));
	close(epfd);
	free(bufs);
	free(seen);
}

TEST_HARNESS_MAIN
