// SPDX-License-Identifier: GPL-2.0
/*
 * The example program of the asyncfd(2) manual page, so that the program
 * the manual shows is built and run with the tests.  Below this comment
 * it must equal the manual's copy, which indents by four spaces where
 * this one has tabs.
 */

#define _GNU_SOURCE
#include <err.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/asyncfd.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef __NR_asyncfd
#define __NR_asyncfd 463
#endif

#define NREADS 4
#define BLOCK 512
#define RING_SIZE 4 /* holds 3 results, fewer than NREADS */

/* Static, so zeroed: a zero cookie marks a free slot. */
static struct asyncfd_uring ring;
static struct asyncfd_result entries[RING_SIZE];
static struct iocb iocbs[NREADS];
static char bufs[NREADS][BLOCK];
static char seen[NREADS];

/* Check that a result is one of our reads, and the first for it. */
static void report(__u64 cookie, __u64 obj, __s64 res, const char *how)
{
	if (cookie < 1 || cookie > NREADS ||
	    obj != (uintptr_t)&iocbs[cookie - 1] || seen[cookie - 1]++)
		errx(EXIT_FAILURE, "unexpected result %llu", cookie);
	printf("read %llu: %lld bytes%s\n", cookie, res, how);
}

/* Take every result the kernel has published; return how many. */
static unsigned int consume(void)
{
	struct asyncfd_result r;
	unsigned int head, tail, n = 0;

	/* Acquire: the entries before ikernel are written in full. */
	tail = __atomic_load_n(&ring.ikernel, __ATOMIC_ACQUIRE);
	for (head = ring.iuser; head != tail; head = (head + 1) % RING_SIZE) {
		r = entries[head];
		/* Release: the copy is done before the kernel reuses the slot. */
		__atomic_store_n(&entries[head].cookie, 0, __ATOMIC_RELEASE);
		report(r.cookie, r.obj, r.res, "");
		n++;
	}
	__atomic_store_n(&ring.iuser, tail, __ATOMIC_RELEASE);
	return n;
}

/* Take the results the ring refused from the aio ring; return how many. */
static unsigned int collect(aio_context_t aio)
{
	struct io_event ev[NREADS];
	unsigned int i, n;

	/*
	 * The kernel adds each refusal to overflow atomically, and the
	 * exchange claims it exactly once.
	 */
	n = __atomic_exchange_n(&ring.overflow, 0, __ATOMIC_ACQ_REL);
	if (!n)
		return 0;
	if (n > NREADS)
		errx(EXIT_FAILURE, "%u results refused", n);
	/*
	 * Wait for exactly n events, without a timeout: a completion that
	 * was counted is in the aio ring already, or about to be.
	 */
	if (syscall(SYS_io_getevents, aio, n, n, ev, NULL) != n)
		err(EXIT_FAILURE, "io_getevents");
	for (i = 0; i < n; i++)
		report(ev[i].data, ev[i].obj, ev[i].res, ", via io_getevents");
	return n;
}

int main(int argc, char *argv[])
{
	const char *path = argc > 1 ? argv[1] : "/proc/self/exe";
	struct iocb *iocbp[NREADS];
	aio_context_t aio = 0;
	struct pollfd pfd;
	unsigned int done;
	int afd, fd, i;

	fd = open(path, O_RDONLY);
	if (fd == -1)
		err(EXIT_FAILURE, "open %s", path);

	ring.ptr = (uintptr_t)entries;
	ring.size = RING_SIZE;
	afd = syscall(__NR_asyncfd, -1, &ring, ASYNCFD_CLOEXEC);
	if (afd == -1)
		err(EXIT_FAILURE, "asyncfd");

	if (syscall(SYS_io_setup, NREADS, &aio) == -1)
		err(EXIT_FAILURE, "io_setup");
	for (i = 0; i < NREADS; i++) {
		iocbs[i].aio_data = i + 1; /* the cookie: never 0 */
		iocbs[i].aio_lio_opcode = IOCB_CMD_PREAD;
		iocbs[i].aio_fildes = fd;
		iocbs[i].aio_buf = (uintptr_t)bufs[i];
		iocbs[i].aio_nbytes = BLOCK;
		iocbs[i].aio_offset = (off_t)i * BLOCK;
		iocbs[i].aio_flags = IOCB_FLAG_ASYNCFD;
		iocbs[i].aio_resfd = afd;
		iocbp[i] = &iocbs[i];
	}
	if (syscall(SYS_io_submit, aio, NREADS, iocbp) != NREADS)
		err(EXIT_FAILURE, "io_submit");

	/*
	 * No timeout: the asyncfd is readable while results wait in the
	 * ring or refused ones wait to be claimed.
	 */
	pfd.fd = afd;
	pfd.events = POLLIN;
	done = 0;
	while (done < NREADS) {
		if (poll(&pfd, 1, -1) == -1)
			err(EXIT_FAILURE, "poll");
		done += consume();
		done += collect(aio);
	}

	syscall(SYS_io_destroy, aio);
	close(afd);
	close(fd);
	exit(EXIT_SUCCESS);
}
