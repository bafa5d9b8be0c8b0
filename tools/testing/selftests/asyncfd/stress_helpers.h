/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the tests share: time budgets, knobs from the environment, a
 * seeded random generator, numbers from fdinfo, such as the kernel's
 * counts of results that waited, what a descriptor names, descriptors
 * passed with SCM_RIGHTS, and the two views of pinned memory that must
 * come back to where they started: VmPin of the process and the
 * locked_vm of the user, which only shows through RLIMIT_MEMLOCK.
 *
 * Include after defining _GNU_SOURCE, for the CPU affinity calls.
 */
#ifndef __STRESS_HELPERS_H
#define __STRESS_HELPERS_H

#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include "asyncfd_ring.h"

#define NSEC_PER_SEC	1000000000LL

static inline int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * NSEC_PER_SEC + ts.tv_nsec;
}

/*
 * Arm @tfd, a CLOCK_MONOTONIC timerfd, to fire once at @when on the
 * mono_ns() clock; it reads as ready from then until armed again, so a
 * consumer can end its wait there without a timeout.  0 or -errno.
 */
static inline int timerfd_at(int tfd, int64_t when)
{
	struct itimerspec its = {
		.it_value = { when / NSEC_PER_SEC, when % NSEC_PER_SEC },
	};

	return timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) ? -errno : 0;
}

/* Keep the calling thread on CPU @cpu; 0 or -errno. */
static inline int pin_to_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

/* @name from the environment as a number, or @fallback if unset. */
static inline unsigned long long env_knob(const char *name,
					  unsigned long long fallback)
{
	const char *text = getenv(name);
	char *end;
	unsigned long long val;

	if (!text || !*text)
		return fallback;
	errno = 0;
	val = strtoull(text, &end, 0);
	return errno || *end ? fallback : val;
}

/*
 * splitmix64: small, fast and good enough to pick actions, and its whole
 * state is one number, so a seed replays a run.
 */
static inline uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Uniform in [0, @bound), @bound > 0. */
static inline uint64_t rng_below(uint64_t *state, uint64_t bound)
{
	return rng_next(state) % bound;
}

/* True with probability 1 / @n. */
static inline bool rng_one_in(uint64_t *state, uint64_t n)
{
	return rng_below(state, n) == 0;
}

/* The number after "@key:" in the text file @path, or -1. */
static inline long long proc_field(const char *path, const char *key)
{
	size_t len = strlen(key);
	long long val = -1;
	char line[256];
	FILE *f;

	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, key, len) && line[len] == ':') {
			val = strtoll(line + len + 1, NULL, 10);
			break;
		}
	}
	fclose(f);
	return val;
}

/*
 * A number from the fdinfo of @fd, the line "@key:", or -1.  The
 * asyncfd counts there are the only view of what waits in the kernel.
 */
static inline long long fdinfo_get(int fd, const char *key)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	return proc_field(path, key);
}

/* Results that ever had to wait in the kernel for room in @fd's ring. */
static inline long long fdinfo_waited_total(int fd)
{
	return fdinfo_get(fd, "asyncfd-waited-total");
}

/* Results that wait in the kernel now. */
static inline long long fdinfo_waiting(int fd)
{
	return fdinfo_get(fd, "asyncfd-waiting");
}

/* The most results that waited at once. */
static inline long long fdinfo_waiting_peak(int fd)
{
	return fdinfo_get(fd, "asyncfd-waiting-peak");
}

/* VmPin of this process in kB, or -1. */
static inline long long vmpin_now_kb(void)
{
	return proc_field("/proc/self/status", "VmPin");
}

/*
 * VmPin once it equals @kb, or as it stands after 2 s.  A ring is
 * unpinned when the last reference to its file drops: in close() when
 * that is the last, and then VmPin must be read once, right after, with
 * vmpin_now_kb().  This waits only where another holder may drop the
 * last reference a moment later, from a worker: an aio or io_uring poll
 * of the asyncfd holds the file until it completes or is torn down
 * there, and a file put by a worker is released by another, later.
 */
static inline long long vmpin_settled(long long kb)
{
	int64_t deadline = mono_ns() + 2 * NSEC_PER_SEC;

	while (vmpin_now_kb() != kb && mono_ns() < deadline)
		usleep(10000);
	return vmpin_now_kb();
}

/* What /proc/self/fd/@fd links to, in @buf of @size; "" if nothing. */
static inline void fd_link(int fd, char *buf, size_t size)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, size - 1);
	buf[n < 0 ? 0 : n] = '\0';
}

static inline bool is_asyncfd(int fd)
{
	char link[64];

	fd_link(fd, link, sizeof(link));
	return !strcmp(link, "anon_inode:[asyncfd]");
}

/* Exit status of child @pid, or 128 + the signal that killed it. */
static inline int wait_child(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* Pass @fd over the unix socket @sock with SCM_RIGHTS; 0 or -1. */
static inline int send_fd(int sock, int fd)
{
	char data = 'f';
	struct iovec iov = { .iov_base = &data, .iov_len = 1 };
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

/* The descriptor that send_fd() passed over @sock, close-on-exec, or -1. */
static inline int recv_fd(int sock)
{
	char data;
	struct iovec iov = { .iov_base = &data, .iov_len = 1 };
	union {
		struct cmsghdr hdr;
		char buf[CMSG_SPACE(sizeof(int))];
	} control;
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *cmsg;
	int fd;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (!cmsg || cmsg->cmsg_level != SOL_SOCKET ||
	    cmsg->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	return fd;
}

/*
 * Set or clear CAP_IPC_LOCK in the effective set of the calling thread,
 * and so of the threads it creates later.  Without it, asyncfd charges
 * rings to the user's locked_vm; 0 or -errno.
 */
static inline int set_ipc_lock(bool on)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
	unsigned int i = CAP_TO_INDEX(CAP_IPC_LOCK);

	if (syscall(SYS_capget, &hdr, caps))
		return -errno;
	if (on)
		caps[i].effective |= CAP_TO_MASK(CAP_IPC_LOCK);
	else
		caps[i].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	return syscall(SYS_capset, &hdr, caps) ? -errno : 0;
}

static inline int set_memlock_pages(unsigned long pages)
{
	struct rlimit rl;

	rl.rlim_cur = pages * getpagesize();
	rl.rlim_max = rl.rlim_cur;
	return setrlimit(RLIMIT_MEMLOCK, &rl) ? -errno : 0;
}

/* Whether a ring that pins exactly @pages pages registers now. */
static inline bool ring_of_pages_fits(unsigned long pages)
{
	unsigned int per_page = getpagesize() / sizeof(struct asyncfd_result);
	struct asyncfd_ring ring;
	bool fits;

	/* asyncfd_ring_map() gives the header a page of its own. */
	if (asyncfd_ring_map(&ring, (pages - 1) * per_page))
		return false;
	ring.fd = sys_asyncfd(-1, ring.hdr, 0);
	fits = ring.fd >= 0;
	asyncfd_ring_exit(&ring);
	return fits;
}

/*
 * How many pages the user may still pin under a RLIMIT_MEMLOCK of
 * @limit pages: @limit less the user's locked_vm, which the kernel does
 * not show otherwise.  Needs CAP_IPC_LOCK off; leaves the limit at
 * @limit.  Returns -errno if the limit cannot be set.
 */
static inline long memlock_headroom(unsigned long limit)
{
	unsigned long lo = 1, hi = limit;	/* fits(lo), !fits(hi + 1) */
	int err = set_memlock_pages(limit);

	if (err)
		return err;
	if (!ring_of_pages_fits(2))
		return 0;
	lo = 2;
	while (lo < hi) {
		unsigned long mid = lo + (hi - lo + 1) / 2;

		if (ring_of_pages_fits(mid))
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

#endif /* __STRESS_HELPERS_H */
