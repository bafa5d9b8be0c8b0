/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Kernel AIO for the asyncfd tests and demo: the raw system calls (libc
 * has no wrappers, and libaio's types clash with <linux/aio_abi.h>), and
 * a loop that keeps reads in flight and checks every completion.
 */
#ifndef __ASYNCFD_KAIO_H
#define __ASYNCFD_KAIO_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/aio_abi.h>

#include "asyncfd_ring.h"
#include "nullb.h"
#include "stress_helpers.h"

#define KAIO_BLOCK		4096
#define KAIO_SPAN_BLOCKS	256	/* reads cycle over the first 1 MiB */
#define KAIO_MAX_DEPTH	128
/*
 * No wait in here has a timeout.  A watchdog fails the run instead when
 * no completion came for this long: at the slowest, a read takes
 * milliseconds, so only a lost completion or wakeup gets near it.
 */
#define KAIO_STALL_SECONDS	10

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
 * An fsync of @fd, or an fdatasync if @datasync, whose completion goes
 * to @afd.  aio runs it in a workqueue, which completes it there.
 */
static inline void kaio_prep_fsync(struct iocb *iocb, int fd, bool datasync,
				   int afd, uint64_t cookie)
{
	memset(iocb, 0, sizeof(*iocb));
	iocb->aio_lio_opcode = datasync ? IOCB_CMD_FDSYNC : IOCB_CMD_FSYNC;
	iocb->aio_fildes = fd;
	iocb->aio_data = cookie;
	iocb->aio_flags = IOCB_FLAG_ASYNCFD;
	iocb->aio_resfd = afd;
}

/*
 * A watchdog on a progress counter: the process exits with a failure,
 * after @report has said what it was waiting for, when the counter has
 * not moved for KAIO_STALL_SECONDS.  The waits it watches have no
 * timeout of their own, so only a stall fails a test, never a slow
 * machine.
 */
struct kaio_watch {
	const unsigned int *progress;	/* read with atomics */
	void (*report)(void *arg);
	void *arg;
	int stop;			/* an eventfd, -1 while nobody watches */
	pthread_t thread;
};

static inline void *kaio_watch_main(void *arg)
{
	struct kaio_watch *w = arg;
	struct pollfd stop = { .fd = w->stop, .events = POLLIN };
	unsigned int seen = __atomic_load_n(w->progress, __ATOMIC_RELAXED);
	int ret;

	while ((ret = poll(&stop, 1, KAIO_STALL_SECONDS * 1000)) <= 0) {
		unsigned int now = __atomic_load_n(w->progress, __ATOMIC_RELAXED);

		if (ret < 0 || now != seen) {
			seen = now;
			continue;
		}
		printf("# no progress for %d s, stuck at %u\n",
		       KAIO_STALL_SECONDS, now);
		if (w->report)
			w->report(w->arg);
		fflush(stdout);
		/* KSFT_FAIL, for the test harness and for the demo alike */
		_exit(1);
	}
	return NULL;
}

/* 0, or an errno and nobody watches. */
static inline int kaio_watch_start(struct kaio_watch *w,
				   const unsigned int *progress,
				   void (*report)(void *arg), void *arg)
{
	int err;

	*w = (struct kaio_watch){
		.progress = progress, .report = report, .arg = arg,
	};
	w->stop = eventfd(0, EFD_CLOEXEC);
	if (w->stop < 0)
		return errno;
	err = pthread_create(&w->thread, NULL, kaio_watch_main, w);
	if (err) {
		close(w->stop);
		w->stop = -1;
	}
	return err;
}

static inline void kaio_watch_stop(struct kaio_watch *w)
{
	if (w->stop < 0)
		return;
	eventfd_write(w->stop, 1);
	pthread_join(w->thread, NULL);
	close(w->stop);
	w->stop = -1;
}

/*
 * Keeps up to @depth reads in flight until @total have completed, and
 * checks each completion.  Slot i owns iocbs[i] and its buffer from
 * submission to completion; a completion names its iocb in obj, which
 * frees the slot.  Every completion comes through the ring: those that
 * found it full wait in the kernel until a flush lets them in.
 */
struct kaio_run {
	aio_context_t aio;
	int fd;
	struct asyncfd_ring *ring;
	unsigned int depth;
	unsigned int total;

	unsigned int submitted;
	unsigned int completed;	/* stored with atomics: the watchdog reads it */
	unsigned int via_ring;
	unsigned int via_getevents;	/* only after the asyncfd was closed */
	unsigned int flushes;	/* reaps after which results still waited */
	unsigned int duplicates;
	unsigned int bad;	/* unknown cookie, wrong obj or wrong res */
	unsigned int submit_calls;
	unsigned int epoll_calls;
	unsigned int getevents_calls;
	int error;		/* errno of a failed system call */
	const char *failed;	/* and which one */
	struct kaio_watch watch;

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
	run->watch.stop = -1;
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

	__atomic_store_n(&run->completed, run->completed + 1, __ATOMIC_RELAXED);
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

/* Up to @nr completions, at most 64, from the aio ring; how many, or -errno. */
static inline int kaio_run_getevents(struct kaio_run *run, long min_nr, long nr,
				     struct timespec *timeout)
{
	struct io_event ev[64];
	int i, n;

	run->getevents_calls++;
	n = sys_io_getevents(run->aio, min_nr, nr, ev, timeout);
	if (n < 0)
		return -errno;
	for (i = 0; i < n; i++)
		kaio_run_complete(run, ev[i].data, ev[i].obj, ev[i].res);
	run->via_getevents += n;
	return n;
}

/*
 * Let in what waits in the kernel, now that a reap made room: 1 if
 * some waited, 0 if none, -1 with @run->failed.
 */
static inline int kaio_run_flush(struct kaio_run *run)
{
	int ret;

	if (!asyncfd_waiting(run->ring))
		return 0;
	run->flushes++;
	ret = asyncfd_flush(run->ring);
	if (ret < 0) {
		run->failed = "asyncfd flush";
		run->error = -ret;
		return -1;
	}
	return 1;
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

static inline void kaio_run_report(void *arg)
{
	struct kaio_run *run = arg;

	printf("# %u of %u complete, %u submitted\n",
	       __atomic_load_n(&run->completed, __ATOMIC_RELAXED), run->total,
	       run->submitted);
	printf("# the ring holds %u, kflags %#x, %lld wait in the kernel\n",
	       asyncfd_ring_ready(run->ring),
	       __atomic_load_n(&run->ring->hdr->kflags, __ATOMIC_ACQUIRE),
	       fdinfo_get(run->ring->fd, "asyncfd-waiting"));
}

/*
 * Watch @run until kaio_run_unwatch(): the process exits with a failure
 * if no completion comes for KAIO_STALL_SECONDS.  0 or -1.
 */
static inline int kaio_run_watch(struct kaio_run *run)
{
	int err = kaio_watch_start(&run->watch, &run->completed,
				   kaio_run_report, run);

	if (err) {
		run->failed = "watchdog";
		run->error = err;
		return -1;
	}
	return 0;
}

static inline void kaio_run_unwatch(struct kaio_run *run)
{
	kaio_watch_stop(&run->watch);
}

/*
 * 0 once all are complete, -1 on a failed call.  The wait has no
 * timeout: the asyncfd polls readable while its ring holds results or
 * results wait in the kernel, and a result that has to wait wakes the
 * wait as a stored one does.
 */
static inline int kaio_run(struct kaio_run *run)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int epfd, ret;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, run->ring->fd, &ev)) {
		run->failed = "epoll";
		run->error = errno;
		if (epfd >= 0)
			close(epfd);
		return -1;
	}
	ret = kaio_run_watch(run);
	while (!ret && run->completed < run->total && !run->bad &&
	       !run->duplicates) {
		unsigned int reaped;
		int flushed;

		ret = kaio_run_submit(run);
		if (ret)
			break;
		reaped = kaio_run_reap_ring(run);
		flushed = kaio_run_flush(run);
		if (flushed < 0) {
			ret = -1;
			break;
		}
		if (reaped || flushed)
			continue;
		run->epoll_calls++;
		if (epoll_wait(epfd, &ev, 1, -1) < 0 && errno != EINTR) {
			run->failed = "epoll_wait";
			run->error = errno;
			ret = -1;
		}
	}
	kaio_run_unwatch(run);
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
