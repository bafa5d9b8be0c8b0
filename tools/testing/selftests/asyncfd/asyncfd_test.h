/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the core test programs share: posting through the test producer
 * and checking its report, reaping results and checking them by cookie,
 * a watchdog, threads that wait in poll(), select(), epoll or read(),
 * and a ring caged in canaries.
 *
 * Results are counted by cookie: each one posted must show up in the
 * ring exactly once and in order, or be reported as never handed over.
 * Waiters block with no timeout, as an application would; a watchdog
 * bounds the test.
 *
 * Include after kselftest_harness.h.
 */
#ifndef __ASYNCFD_TEST_H
#define __ASYNCFD_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/syscall.h>

#include "asyncfd_ring.h"
#include "required.h"
#include "stress_helpers.h"
#include "test_producer.h"

#define RING_SIZE	8	/* small, so that tests fill it */

/* poll() for results in the ring, and for results waiting in the kernel. */
#define READABLE	(POLLIN | POLLRDNORM)
#define BACKLOGGED	(POLLIN | POLLRDNORM | POLLPRI)

/* Far below the harness timeout, far above any wakeup under emulation. */
#define WATCHDOG_SECONDS	20

/*
 * Children of a test cannot use ASSERT_*(): it would unwind into the
 * harness in the wrong process.  They report a failed check and exit.
 */
#define CHILD_CHECK(cond) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "# child %s:%d: %s failed (errno %d)\n",	\
			__FILE__, __LINE__, #cond, errno);		\
		_exit(1);						\
	}								\
} while (0)

/* Pinned pages of a ring from asyncfd_ring_map(). */
static inline unsigned int ring_pages(unsigned int size)
{
	long page = getpagesize();

	return 1 + (size * sizeof(struct asyncfd_result) + page - 1) / page;
}

static inline long long pages_kb(unsigned int pages)
{
	return pages * (getpagesize() / 1024LL);
}

/* The descriptor the next open would return: a leaked one moves it. */
static inline int lowest_free_fd(void)
{
	int fd = open("/", O_PATH | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	return fd;
}

/* What poll() reports for @fd right now, asked for all it could say. */
static inline short poll_now(int fd)
{
	struct pollfd pfd = {
		.fd = fd,
		.events = POLLIN | POLLRDNORM | POLLRDBAND | POLLPRI |
			  POLLOUT | POLLWRNORM,
	};

	return poll(&pfd, 1, 0) < 0 ? -1 : pfd.revents;
}

/*
 * A wait that never ends is the failure the blocking tests look for,
 * so they wait with no timeout and run under a watchdog, which fails
 * the test if it is still running at the deadline.
 */
struct watchdog {
	struct __test_metadata *metadata;
	const char *what;
	int seconds;
	struct timespec deadline;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stop;
	pthread_t thread;
};

static inline void *watchdog_run(void *arg)
{
	struct watchdog *wd = arg;
	int err = 0;

	pthread_mutex_lock(&wd->lock);
	while (!wd->stop && err != ETIMEDOUT)
		err = pthread_cond_timedwait(&wd->cond, &wd->lock, &wd->deadline);
	if (!wd->stop) {
		fprintf(stderr, "# watchdog: %s: still waiting after %d s\n",
			wd->what, wd->seconds);
		wd->metadata->exit_code = KSFT_FAIL;
		_exit(KSFT_FAIL);
	}
	pthread_mutex_unlock(&wd->lock);
	return NULL;
}

static inline void watchdog_start(struct __test_metadata *_metadata,
				  struct watchdog *wd, int seconds,
				  const char *what)
{
	pthread_condattr_t attr;

	*wd = (struct watchdog){
		.metadata = _metadata, .what = what, .seconds = seconds,
	};
	clock_gettime(CLOCK_MONOTONIC, &wd->deadline);
	wd->deadline.tv_sec += seconds;
	ASSERT_EQ(0, pthread_condattr_init(&attr));
	ASSERT_EQ(0, pthread_condattr_setclock(&attr, CLOCK_MONOTONIC));
	ASSERT_EQ(0, pthread_cond_init(&wd->cond, &attr));
	pthread_condattr_destroy(&attr);
	ASSERT_EQ(0, pthread_mutex_init(&wd->lock, NULL));
	ASSERT_EQ(0, pthread_create(&wd->thread, NULL, watchdog_run, wd));
}

static inline void watchdog_stop(struct watchdog *wd)
{
	pthread_mutex_lock(&wd->lock);
	wd->stop = true;
	pthread_cond_signal(&wd->cond);
	pthread_mutex_unlock(&wd->lock);
	pthread_join(wd->thread, NULL);
	pthread_cond_destroy(&wd->cond);
	pthread_mutex_destroy(&wd->lock);
}

/*
 * Post through the test producer, without retrying, and check its
 * report: @stored results went straight into the ring, @waited wait in
 * the kernel, and the rest were never handed over, with @error.
 */
static inline void post_report(struct __test_metadata *_metadata, int fd,
			       const char *context, __u64 cookie,
			       unsigned int count, unsigned int batch,
			       unsigned int stored, unsigned int waited,
			       int error)
{
	struct post_result pr;

	ASSERT_EQ(0, test_producer_post(fd, context, cookie, count, batch, &pr));
	EXPECT_EQ(error, pr.error);
	EXPECT_EQ(stored, pr.stored);
	EXPECT_EQ(waited, pr.waited);
	EXPECT_EQ(count - stored - waited, pr.unposted);
	EXPECT_EQ(0, pr.retries);
}

/* A post that the kernel takes whole: @stored of @count fit, the rest wait. */
static inline void post(struct __test_metadata *_metadata, int fd,
			const char *context, __u64 cookie, unsigned int count,
			unsigned int batch, unsigned int stored)
{
	post_report(_metadata, fd, context, cookie, count, batch, stored,
		    count - stored, 0);
}

/* A post that finds the copy bound reached: nothing of it is taken. */
static inline void post_nospc(struct __test_metadata *_metadata, int fd,
			      const char *context, __u64 cookie,
			      unsigned int count, unsigned int batch)
{
	post_report(_metadata, fd, context, cookie, count, batch, 0, 0, -ENOSPC);
}

static inline __u32 kflags(const struct asyncfd_ring *ring)
{
	return __atomic_load_n(&ring->hdr->kflags, __ATOMIC_ACQUIRE);
}

static inline unsigned int reap_all(struct asyncfd_ring *ring,
				    struct asyncfd_result *out,
				    unsigned int max)
{
	unsigned int n = 0, got;

	while (n < max && (got = asyncfd_reap(ring, out + n, max - n)))
		n += got;
	return n;
}

static inline void expect_cookies(struct __test_metadata *_metadata,
				  const struct asyncfd_result *res,
				  unsigned int n, __u64 cookie)
{
	unsigned int i;

	for (i = 0; i < n; i++)
		ASSERT_EQ(cookie + i, res[i].cookie) {
			TH_LOG("result %u of %u", i, n);
		}
}

/*
 * Reap the ring, which must hold exactly @count results with the
 * cookies @cookie, @cookie + 1, ... in that order: each one once.
 * Results that wait in the kernel are not asked for.
 */
static inline void expect_results(struct __test_metadata *_metadata,
				  struct asyncfd_ring *ring, __u64 cookie,
				  unsigned int count)
{
	struct asyncfd_result *res = calloc(count + 1, sizeof(*res));
	unsigned int n;

	ASSERT_NE(NULL, res);
	n = reap_all(ring, res, count + 1);
	ASSERT_EQ(count, n);
	expect_cookies(_metadata, res, n, cookie);
	free(res);
}

/*
 * The consumer loop of the ABI: reap, flush what waits into the room
 * just made, reap again, until the ring is empty and nothing waits.
 * Exactly @count results must come out, with cookies from @cookie on.
 */
static inline void expect_drained(struct __test_metadata *_metadata,
				  struct asyncfd_ring *ring, __u64 cookie,
				  unsigned int count)
{
	struct asyncfd_result *res = calloc(count + 1, sizeof(*res));
	unsigned int n = 0;
	int left;

	ASSERT_NE(NULL, res);
	for (;;) {
		n += reap_all(ring, res + n, count + 1 - n);
		left = asyncfd_flush(ring);
		ASSERT_LE(0, left);
		if (!asyncfd_ring_ready(ring) || n > count)
			break;
	}
	EXPECT_EQ(0, left);
	EXPECT_FALSE(asyncfd_waiting(ring));
	ASSERT_EQ(count, n);
	expect_cookies(_metadata, res, n, cookie);
	free(res);
}

static inline int set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

enum wait_how {
	WAIT_POLL,
	WAIT_SELECT,	/* POLLIN in readfds, POLLPRI in exceptfds */
	WAIT_EPOLL,	/* @fd is an epoll set */
	WAIT_READ,	/* a blocking read(): POLLIN once it returns */
};

/* A thread that waits once, with no timeout. */
struct waiter {
	enum wait_how how;
	int fd;
	unsigned int events;
	pid_t tid;
	bool done;
	int ret;	/* as from poll(): 1 once ready */
	int err;
	unsigned int revents;	/* from select: POLLIN and POLLPRI */
	__u64 waiting;		/* what read() counted */
	pthread_t thread;
};

static inline void *waiter_run(void *arg)
{
	struct waiter *w = arg;
	struct pollfd pfd = { .fd = w->fd };
	struct epoll_event ev = {};
	fd_set rfds, efds;

	FD_ZERO(&rfds);
	FD_ZERO(&efds);
	if (w->how == WAIT_SELECT && (w->events & POLLIN))
		FD_SET(w->fd, &rfds);
	if (w->how == WAIT_SELECT && (w->events & POLLPRI))
		FD_SET(w->fd, &efds);

	__atomic_store_n(&w->tid, syscall(SYS_gettid), __ATOMIC_RELEASE);
	switch (w->how) {
	case WAIT_POLL:
		pfd.events = w->events;
		w->ret = poll(&pfd, 1, -1);
		w->revents = pfd.revents;
		break;
	case WAIT_SELECT:
		w->ret = select(w->fd + 1, &rfds, NULL, &efds, NULL);
		w->revents = (FD_ISSET(w->fd, &rfds) ? POLLIN : 0) |
			     (FD_ISSET(w->fd, &efds) ? POLLPRI : 0);
		break;
	case WAIT_EPOLL:
		w->ret = epoll_wait(w->fd, &ev, 1, -1);
		w->revents = ev.events;
		break;
	case WAIT_READ:
		w->waiting = ~0ULL;
		w->ret = read(w->fd, &w->waiting, sizeof(w->waiting));
		if (w->ret == sizeof(w->waiting)) {
			w->ret = 1;
			w->revents = POLLIN;
		}
		break;
	}
	w->err = errno;
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/* Whether thread @tid is asleep, anywhere. */
static inline bool thread_sleeping(pid_t tid)
{
	char path[64], buf[256], *state;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	state = strrchr(buf, ')');
	return state && state[1] == ' ' && state[2] == 'S';
}

/*
 * Where a waiter of each kind sleeps once it is queued on the asyncfd,
 * or on the epoll set that is: the function that calls the scheduler,
 * as /proc names the wait channel, or the one it is inlined into on
 * other builds.  Nothing else in these system calls sleeps there.
 */
static const char * const wait_channels[][2] = {
	[WAIT_POLL]	= { "poll_schedule_timeout", "do_sys_poll" },
	[WAIT_SELECT]	= { "poll_schedule_timeout", "do_select" },
	[WAIT_EPOLL]	= { "ep_poll", "do_epoll_wait" },
	[WAIT_READ]	= { "do_wait_intr_irq", "asyncfd_read" },
};

/*
 * The wait channel of thread @tid, less a compiler clone's suffix such
 * as ".constprop.0"; "0" while it runs, and for every thread of a
 * kernel without symbol names.
 */
static inline void wait_channel(pid_t tid, char *buf, size_t size)
{
	char path[64];
	ssize_t n = -1;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/wchan", tid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = read(fd, buf, size - 1);
		close(fd);
	}
	buf[n < 0 ? 0 : n] = '\0';
	buf[strcspn(buf, ".")] = '\0';
}

static inline bool waiter_in_wait(const struct waiter *w, const char *wchan)
{
	return !strcmp(wchan, wait_channels[w->how][0]) ||
	       !strcmp(wchan, wait_channels[w->how][1]);
}

/*
 * Start @w and return once it sleeps in its wait, so that only what
 * follows can wake it.  A thread's state alone would not do: it sleeps
 * on its way into the wait too, and reads the same once it returned.
 * Fails if the waiter returns, or sleeps anywhere else.
 */
static inline void waiter_start(struct __test_metadata *_metadata,
				struct waiter *w)
{
	int64_t deadline = mono_ns() + 5 * NSEC_PER_SEC;
	char wchan[64] = "";
	pid_t tid = 0;

	ASSERT_EQ(0, pthread_create(&w->thread, NULL, waiter_run, w));
	for (;;) {
		ASSERT_FALSE(__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
			TH_LOG("the waiter returned %d, errno %d, unwoken",
			       w->ret, w->err);
		}
		if (!tid)
			tid = __atomic_load_n(&w->tid, __ATOMIC_ACQUIRE);
		if (tid) {
			wait_channel(tid, wchan, sizeof(wchan));
			if (waiter_in_wait(w, wchan))
				return;
		}
		if (mono_ns() >= deadline)
			break;
		usleep(1000);
	}
	if (tid && !strcmp(wchan, "0") && thread_sleeping(tid))
		MISSING(return, "no names for wait channels: needs CONFIG_KALLSYMS");
	ASSERT_STREQ(wait_channels[w->how][0], wchan) {
		TH_LOG("the waiter sleeps elsewhere than in its wait");
	}
}

/*
 * A waiter of kind @how sleeps until a hard interrupt stores.  It was
 * asleep in its wait before the post, so only the post's wakeup can
 * have ended its wait.
 */
static inline void store_wakes(struct __test_metadata *_metadata,
			       struct asyncfd_ring *ring, enum wait_how how)
{
	struct waiter w = { .how = how, .fd = ring->fd, .events = POLLIN };
	struct watchdog wd;

	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "a waiter for a store");
	waiter_start(_metadata, &w);
	post(_metadata, ring->fd, "hardirq", 1, 1, 1, 1);
	ASSERT_EQ(0, pthread_join(w.thread, NULL));
	watchdog_stop(&wd);
	EXPECT_EQ(1, w.ret);
	EXPECT_EQ(POLLIN, w.revents);
	if (how == WAIT_READ)
		EXPECT_EQ(1, w.waiting);
	expect_results(_metadata, ring, 1, 1);
}

/* A handler that does nothing: the signal only ends a blocking call. */
static inline void ignore_signal(int sig)
{
}

/*
 * Take the edge an edge-triggered set has collected, whatever it is.
 * Bounded, so that a level that stays up cannot keep us here.
 */
static inline void epoll_drain(int ep)
{
	struct epoll_event ev;
	int i;

	for (i = 0; i < 4 && epoll_wait(ep, &ev, 1, 0) > 0; i++)
		;
}

struct retry_poster {
	int tp;		/* opened before the asyncfd may close */
	int fd;
	const char *context;
	__u64 cookie;
	unsigned int count;
	unsigned int batch;
	struct post_result result;
	int ret;
};

/* A post that retries the calls that find no room, until all are in. */
static inline void *retry_poster_run(void *arg)
{
	struct retry_poster *p = arg;

	p->ret = test_producer_send_from(p->tp, p->fd, p->context, false, true,
					 p->cookie, p->count, p->batch,
					 &p->result);
	return NULL;
}

#define CAGE_SIZE	64	/* entries: 2 KiB, inside one page */
#define CAGE_OFFSET	512	/* of the entries in their page */
#define CANARY		0xa5

/*
 * A ring with canary bytes all around, in four pages: a guard page, the
 * header's page, the entries' page and another guard page.  The kernel
 * pins the header's and the entries' pages whole, so a store that
 * strayed from the header or from the registered entries would land
 * on a canary.
 */
struct cage {
	unsigned char *area;
	size_t len;
	struct asyncfd_ring ring;
};

static inline void cage_map(struct __test_metadata *_metadata,
			    struct cage *cage)
{
	size_t bytes = CAGE_SIZE * sizeof(struct asyncfd_result);
	long page = getpagesize();
	unsigned char *area;

	ASSERT_GE(page, CAGE_OFFSET + bytes + 8);
	area = mmap(NULL, 4 * page, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, area);
	memset(area, CANARY, 4 * page);
	cage->area = area;
	cage->len = 4 * page;
	cage->ring = (struct asyncfd_ring){
		.hdr = (struct asyncfd_uring *)(area + page + page / 2),
		.entries = (struct asyncfd_result *)(area + 2 * page + CAGE_OFFSET),
		.size = CAGE_SIZE,
		.fd = -1,
		.mem = area,
		.mem_len = 4 * page,
	};
	memset(cage->ring.hdr, 0, sizeof(*cage->ring.hdr));
	memset(cage->ring.entries, 0, bytes);
	cage->ring.hdr->ptr = (uintptr_t)cage->ring.entries;
	cage->ring.hdr->size = CAGE_SIZE;
}

/* The offset in the cage of the first canary byte that changed, or -1. */
static inline long cage_damage(const struct cage *cage)
{
	const unsigned char *hdr = (const unsigned char *)cage->ring.hdr;
	const unsigned char *entries = (const unsigned char *)cage->ring.entries;
	size_t i;

	for (i = 0; i < cage->len; i++) {
		const unsigned char *p = cage->area + i;

		if (p >= hdr && p < hdr + sizeof(struct asyncfd_uring))
			continue;
		if (p >= entries &&
		    p < entries + CAGE_SIZE * sizeof(struct asyncfd_result))
			continue;
		if (*p != CANARY)
			return i;
	}
	return -1;
}

/* Put the registered geometry back where a consumer would read it. */
static inline void cage_restore(struct cage *cage)
{
	cage->ring.hdr->ptr = (uintptr_t)cage->ring.entries;
	cage->ring.hdr->size = CAGE_SIZE;
}

enum hdr_field { HDR_PTR, HDR_SIZE, HDR_IKERNEL, HDR_KFLAGS };

struct tamper {
	enum hdr_field field;
	__u64 value;
};

/* Rewrites of the header that the kernel must not act on; returns how many. */
static inline unsigned int cage_tampers(const struct cage *cage,
					struct tamper *t)
{
	uintptr_t entries = (uintptr_t)cage->ring.entries;
	uintptr_t end = entries + CAGE_SIZE * sizeof(struct asyncfd_result);
	const struct tamper list[] = {
		{ HDR_SIZE, UINT32_MAX },
		{ HDR_SIZE, 0 },
		{ HDR_SIZE, 1 },
		{ HDR_SIZE, CAGE_SIZE - 1 },
		{ HDR_SIZE, CAGE_SIZE + 1 },
		{ HDR_SIZE, 2 * CAGE_SIZE },
		{ HDR_SIZE, ASYNCFD_MAX_ENTRIES },
		{ HDR_PTR, 0 },
		{ HDR_PTR, UINT64_MAX },
		{ HDR_PTR, end },
		{ HDR_PTR, entries - CAGE_OFFSET / 2 },
		{ HDR_PTR, entries + 8 },
		{ HDR_PTR, entries + 4 },
		{ HDR_PTR, (uintptr_t)cage->ring.hdr },
		{ HDR_PTR, (uintptr_t)cage->area },
		{ HDR_PTR, 0xffff888000000000ULL },
		{ HDR_IKERNEL, UINT32_MAX },
		{ HDR_IKERNEL, CAGE_SIZE },
		{ HDR_IKERNEL, CAGE_SIZE - 1 },
		{ HDR_IKERNEL, 0 },
		{ HDR_IKERNEL, 1 },
		{ HDR_KFLAGS, ASYNCFD_KF_WAITING },
		{ HDR_KFLAGS, 0 },
		{ HDR_KFLAGS, UINT32_MAX },
		{ HDR_KFLAGS, (__u32)~ASYNCFD_KF_WAITING },
		{ HDR_KFLAGS, 0x80000000 },
	};

	memcpy(t, list, sizeof(list));
	return ARRAY_SIZE(list);
}

/* ikernel and kflags are the kernel's to write: ours race with it. */
static inline void tamper_apply(struct asyncfd_uring *hdr,
				const struct tamper *t)
{
	switch (t->field) {
	case HDR_PTR:
		hdr->ptr = t->value;
		break;
	case HDR_SIZE:
		hdr->size = t->value;
		break;
	case HDR_IKERNEL:
		__atomic_store_n(&hdr->ikernel, t->value, __ATOMIC_RELAXED);
		break;
	case HDR_KFLAGS:
		__atomic_store_n(&hdr->kflags, t->value, __ATOMIC_RELAXED);
		break;
	}
}

/* Map a cage and register its ring; the kernel's tail starts at 0. */
static inline void cage_setup(struct __test_metadata *_metadata,
			      struct cage *cage)
{
	cage_map(_metadata, cage);
	cage->ring.fd = sys_asyncfd(-1, cage->ring.hdr, 0);
	ASSERT_LE(0, cage->ring.fd);
}

/* An asyncfd on a RING_SIZE ring, and the test producer to post into it. */
FIXTURE(producer) {
	struct asyncfd_ring ring;
};

FIXTURE_SETUP(producer)
{
	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, RING_SIZE, 0));
}

FIXTURE_TEARDOWN(producer)
{
	asyncfd_ring_exit(&self->ring);
}

/*
 * For main(): kernels with asyncfd() fault on the NULL ring, others lack
 * the call, and there every test of the program would fail the same way.
 */
static inline void require_asyncfd(void)
{
	if (sys_asyncfd(-1, NULL, 0) < 0 && errno == ENOSYS) {
		ksft_print_header();
		MISSING_EXIT("asyncfd() not supported\n");
	}
}

#endif /* __ASYNCFD_TEST_H */
