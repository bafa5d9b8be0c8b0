/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel AIO for the asyncfd tests and demo: the raw system calls (libc
 * has no wrappers, and libaio's types clash with <linux/aio_abi.h>), and
 * a loop that keeps reads in flight and checks every completion.
 */
#ifndef __ASYNCFD_KAIO_H
#define __ASYNCFD_KAIO_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/aio_abi.h>

#include "asyncfd_ring.h"
#include "nullb.h"

#define KAIO_BLOCK		4096
#define KAIO_SPAN_BLOCKS	256	/* reads cycle over the first 1 MiB */
#define KAIO_MAX_DEPTH	128
#define KAIO_RUN_TIMEOUT	120	/* seconds, for one kaio_run() */

static inline int sys_io_setup(unsigned int nr_events, aio_context_t *ctx)
{
	*ctx = 0;
	return syscall(__NR_io_setup, nr_events, ctx);
}

static inline int sys_io_destroy(aio_context_t ctx)
{
	return syscall(__NR_io_destroy, ctx);
}

static inline int sys_io_submit(aio_context_t ctx, long nr, struct iocb **iocbs)
{
	return syscall(__NR_io_submit, ctx, nr, iocbs);
}

static inline int sys_io_getevents(aio_context_t ctx, long min_nr, long nr,
				   struct io_event *events,
				   struct timespec *timeout)
{
	return syscall(__NR_io_getevents, ctx, min_nr, nr, events, timeout);
}

/* A read of @len bytes at @offset whose completion goes to @afd. */
static inline void kaio_prep_read(struct iocb *iocb, int fd, void *buf,
				  size_t len, off_t offset, int afd,
				  uint64_t cookie)
{
	memset(iocb, 0, sizeof(*iocb));
	iocb->aio_lio_opcode = IOCB_CMD_PREAD;
	iocb->aio_fildes = fd;
	iocb->aio_buf = (uintptr_t)buf;
	iocb->aio_nbytes = len;
	iocb->aio_offset = offset;
	iocb->aio_data = cookie;
	iocb->aio_flags = IOCB_FLAG_ASYNCFD;
	iocb->aio_resfd = afd;
}

/*
 * Keeps up to @depth reads in flight until @total have completed, and
 * checks each completion.  Slot i owns iocbs[i] and its buffer from
 * submission to completion; a completion names its iocb in obj, which
 * frees the slot.
 */
struct kaio_run {
	aio_context_t aio;
	int fd;
	struct asyncfd_ring *ring;
	unsigned int depth;
	unsigned int total;
	bool use_getevents;	/* reap refused completions from the aio ring */

	unsigned int submitted;
	unsigned int completed;
	unsigned int via_ring;
	unsigned int via_getevents;
	unsigned int duplicates;
	unsigned int bad;	/* unknown cookie, wrong obj or wrong res */
	unsigned int submit_calls;
	unsigned int epoll_calls;
	unsigned int getevents_calls;
	int error;		/* errno of a failed system call */
	const char *failed;	/* and which one */

	struct iocb iocbs[KAIO_MAX_DEPTH];
	uint64_t slot_cookie[KAIO_MAX_DEPTH];
	unsigned int free_slots[KAIO_MAX_DEPTH];
	unsigned int nr_free;
	char *bufs;
	unsigned char *seen;
};

static inline int kaio_run_init(struct kaio_run *run, aio_context_t aio,
				int fd, struct asyncfd_ring *ring,
				unsigned int depth, unsigned int total)
{
	unsigned int i;

	memset(run, 0, sizeof(*run));
	run->aio = aio;
	run->fd = fd;
	run->ring = ring;
	run->depth = depth;
	run->total = total;
	run->seen = calloc(total + 1, 1);
	if (posix_memalign((void **)&run->bufs, KAIO_BLOCK, KAIO_MAX_DEPTH * KAIO_BLOCK))
		run->bufs = NULL;
	if (!run->seen || !run->bufs)
		return -ENOMEM;
	for (i = 0; i < depth; i++)
		run->free_slots[run->nr_free++] = i;
	return 0;
}

static inline void kaio_run_exit(struct kaio_run *run)
{
	free(run->seen);
	free(run->bufs);
}

static inline void kaio_run_complete(struct kaio_run *run, uint64_t cookie,
				     uint64_t obj, int64_t res)
{
	uintptr_t base = (uintptr_t)run->iocbs;
	unsigned int slot;

	run->completed++;
	if (!cookie || cookie > run->total) {
		run->bad++;
		return;
	}
	if (run->seen[cookie]++) {
		run->duplicates++;
		return;
	}
	slot = (obj - base) / sizeof(struct iocb);
	if (obj < base || slot >= run->depth ||
	    obj != (uintptr_t)&run->iocbs[slot] ||
	    run->slot_cookie[slot] != cookie || res != KAIO_BLOCK) {
		run->bad++;
		return;
	}
	run->slot_cookie[slot] = 0;
	run->free_slots[run->nr_free++] = slot;
}

static inline unsigned int kaio_run_reap_ring(struct kaio_run *run)
{
	struct asyncfd_result res[64];
	unsigned int i, n, total = 0;

	while ((n = asyncfd_reap(run->ring, res, 64))) {
		for (i = 0; i < n; i++)
			kaio_run_complete(run, res[i].cookie, res[i].obj,
					  res[i].res);
		run->via_ring += n;
		total += n;
	}
	return total;
}

static inline int kaio_run_getevents(struct kaio_run *run, long min_nr,
				     struct timespec *timeout)
{
	struct io_event ev[64];
	int i, n;

	run->getevents_calls++;
	n = sys_io_getevents(run->aio, min_nr, 64, ev, timeout);
	if (n < 0)
		return -errno;
	for (i = 0; i < n; i++)
		kaio_run_complete(run, ev[i].data, ev[i].obj, ev[i].res);
	run->via_getevents += n;
	return n;
}

static inline int kaio_run_submit(struct kaio_run *run)
{
	struct iocb *batch[KAIO_MAX_DEPTH];
	unsigned int n = 0;
	int ret;

	while (n < run->nr_free && run->submitted + n < run->total) {
		unsigned int slot = run->free_slots[run->nr_free - 1 - n];
		uint64_t cookie = run->submitted + n + 1;

		kaio_prep_read(&run->iocbs[slot], run->fd,
			       run->bufs + slot * KAIO_BLOCK, KAIO_BLOCK,
			       (cookie % KAIO_SPAN_BLOCKS) * KAIO_BLOCK, run->ring->fd,
			       cookie);
		run->slot_cookie[slot] = cookie;
		batch[n++] = &run->iocbs[slot];
	}
	if (!n)
		return 0;
	run->nr_free -= n;
	run->submit_calls++;
	ret = sys_io_submit(run->aio, n, batch);
	if (ret != (int)n) {
		run->failed = "io_submit";
		run->error = ret < 0 ? errno : EAGAIN;
		return -1;
	}
	run->submitted += n;
	return 0;
}

/*
 * Wait for the ring with epoll.  A completion the ring refused wakes
 * nobody there, so while overflow says some are in the aio ring, wait
 * in io_getevents() instead, briefly.
 */
static inline int kaio_run_wait(struct kaio_run *run, int epfd,
				unsigned int *overflow)
{
	struct timespec brief = { 0, 1000 * 1000 };
	struct epoll_event ev;
	unsigned int now = __atomic_load_n(&run->ring->hdr->overflow,
					   __ATOMIC_RELAXED);

	if (run->use_getevents && now != *overflow) {
		int n = kaio_run_getevents(run, 1, &brief);

		if (n < 0) {
			run->failed = "io_getevents";
			run->error = -n;
			return -1;
		}
		*overflow += n;
		return 0;
	}
	run->epoll_calls++;
	if (epoll_wait(epfd, &ev, 1, 100) < 0 && errno != EINTR) {
		run->failed = "epoll_wait";
		run->error = errno;
		return -1;
	}
	return 0;
}

/* 0 once all are complete, -1 on a failed call or at the time limit. */
static inline int kaio_run(struct kaio_run *run)
{
	struct epoll_event ev = { .events = EPOLLIN };
	double deadline = nullb_now() + KAIO_RUN_TIMEOUT;
	unsigned int overflow = run->ring->hdr->overflow;
	int epfd, ret = 0;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, run->ring->fd, &ev)) {
		run->failed = "epoll";
		run->error = errno;
		return -1;
	}
	while (run->completed < run->total && !run->bad && !run->duplicates) {
		if (nullb_now() > deadline) {
			run->failed = "time limit";
			run->error = ETIMEDOUT;
			ret = -1;
			break;
		}
		ret = kaio_run_submit(run);
		if (ret)
			break;
		if (kaio_run_reap_ring(run))
			continue;
		ret = kaio_run_wait(run, epfd, &overflow);
		if (ret)
			break;
	}
	close(epfd);
	return ret;
}

static inline unsigned int kaio_run_missing(const struct kaio_run *run)
{
	unsigned int cookie, missing = 0;

	for (cookie = 1; cookie <= run->total; cookie++)
		missing += !run->seen[cookie];
	return missing;
}

#endif /* __ASYNCFD_KAIO_H */
