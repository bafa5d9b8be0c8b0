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

/* Static, so zeroed: iuser, ikernel and kflags start at 0. */
static struct asyncfd_uring ring;
static struct asyncfd_result entries[RING_SIZE];
static struct iocb iocbs[NREADS];
static char bufs[NREADS][BLOCK];
static char seen[NREADS];

/*
 * Take every result the kernel has published, checking that each one
 * belongs to a read of ours, read a whole block and is the first for
 * it; return how many.
 */
static unsigned int reap(const char *how)
{
	struct asyncfd_result r;
	unsigned int head, tail, n = 0;

	/* Acquire: the entries before ikernel are written in full. */
	tail = __atomic_load_n(&ring.ikernel, __ATOMIC_ACQUIRE);
	for (head = ring.iuser; head != tail; head = (head + 1) % RING_SIZE) {
		r = entries[head];
		if (r.cookie >= NREADS || r.obj != (uintptr_t)&iocbs[r.cookie] ||
		    r.res != BLOCK || seen[r.cookie]++)
			errx(EXIT_FAILURE, "unexpected result %llu",
			     (unsigned long long)r.cookie);
		printf("read %llu: %lld bytes%s\n", (unsigned long long)r.cookie,
		       (long long)r.res, how);
		n++;
	}
	/* Release: the copies are done before the kernel reuses the slots. */
	__atomic_store_n(&ring.iuser, tail, __ATOMIC_RELEASE);
	return n;
}

/* Whether results wait in the kernel for room in the ring. */
static int waiting(void)
{
	return __atomic_load_n(&ring.kflags, __ATOMIC_ACQUIRE) &
	       ASYNCFD_KF_WAITING;
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
		iocbs[i].aio_data = i; /* the cookie: any value, 0 included */
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
	 * No timeout: the asyncfd is readable while the ring holds results
	 * or results wait in the kernel.
	 */
	pfd.fd = afd;
	pfd.events = POLLIN;
	done = 0;
	while (done < NREADS) {
		if (poll(&pfd, 1, -1) == -1)
			err(EXIT_FAILURE, "poll");
		done += reap("");
		/*
		 * Results that found the ring full wait in the kernel, in
		 * order, until asked for: the flush moves them into the room
		 * that reap() made.
		 */
		while (waiting()) {
			if (syscall(__NR_asyncfd, afd, NULL, 0) == -1)
				err(EXIT_FAILURE, "asyncfd flush");
			done += reap(", after waiting in the kernel");
		}
	}

	syscall(SYS_io_destroy, aio);
	close(afd);
	close(fd);
	exit(EXIT_SUCCESS);
}
