// SPDX-License-Identifier: GPL-2.0
/*
 * Tests for asyncfd(2): the API and its errors, poll/select/epoll and
 * read(), results that wait in the kernel for room and the flush that
 * moves them in, swapping rings, fork/exec/SCM_RIGHTS, RLIMIT_MEMLOCK
 * accounting, kernel-written header words rewritten under the kernel,
 * and delivery from every context the test producer can post from.
 *
 * Results are counted by cookie: each one posted must show up in the
 * ring exactly once and in order, or be reported as never handed over.
 * Waiters block with no timeout, as an application would; a watchdog
 * bounds the test.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "asyncfd_ring.h"
#include "required.h"
#include "stress_helpers.h"
#include "test_producer.h"

#define RING_SIZE	8	/* small, so that tests fill it */
#define NOBODY		65534
#define EXEC_CHECK_ARG	"--exec-check"

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
static unsigned int ring_pages(unsigned int size)
{
	long page = getpagesize();

	return 1 + (size * sizeof(struct asyncfd_result) + page - 1) / page;
}

static long long pages_kb(unsigned int pages)
{
	return pages * (getpagesize() / 1024LL);
}

/* The descriptor the next open would return: a leaked one moves it. */
static int lowest_free_fd(void)
{
	int fd = open("/", O_PATH | O_CLOEXEC);

	if (fd >= 0)
		close(fd);
	return fd;
}

/* What poll() reports for @fd right now, asked for all it could say. */
static short poll_now(int fd)
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

static void *watchdog_run(void *arg)
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

static void watchdog_start(struct __test_metadata *_metadata,
			   struct watchdog *wd, int seconds, const char *what)
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

static void watchdog_stop(struct watchdog *wd)
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
static void post_report(struct __test_metadata *_metadata, int fd,
			const char *context, __u64 cookie, unsigned int count,
			unsigned int batch, unsigned int stored,
			unsigned int waited, int error)
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
static void post(struct __test_metadata *_metadata, int fd, const char *context,
		 __u64 cookie, unsigned int count, unsigned int batch,
		 unsigned int stored)
{
	post_report(_metadata, fd, context, cookie, count, batch, stored,
		    count - stored, 0);
}

/* A post that finds the copy bound reached: nothing of it is taken. */
static void post_nospc(struct __test_metadata *_metadata, int fd,
		       const char *context, __u64 cookie, unsigned int count,
		       unsigned int batch)
{
	post_report(_metadata, fd, context, cookie, count, batch, 0, 0, -ENOSPC);
}

static __u32 kflags(const struct asyncfd_ring *ring)
{
	return __atomic_load_n(&ring->hdr->kflags, __ATOMIC_ACQUIRE);
}

static unsigned int reap_all(struct asyncfd_ring *ring,
			     struct asyncfd_result *out, unsigned int max)
{
	unsigned int n = 0, got;

	while (n < max && (got = asyncfd_reap(ring, out + n, max - n)))
		n += got;
	return n;
}

static void expect_cookies(struct __test_metadata *_metadata,
			   const struct asyncfd_result *res, unsigned int n,
			   __u64 cookie)
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
static void expect_results(struct __test_metadata *_metadata,
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
static void expect_drained(struct __test_metadata *_metadata,
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

static bool have_cap(int cap)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};

	if (syscall(SYS_capget, &hdr, data))
		return false;
	return data[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap);
}

/*
 * Run @fn in a child that is user nobody, which has no capabilities and
 * so no CAP_IPC_LOCK, with RLIMIT_MEMLOCK at @pages.  @fn exits through
 * CHILD_CHECK() when a check fails.  Returns the child's exit status.
 */
static int run_unprivileged(void (*fn)(void), unsigned int pages)
{
	struct rlimit rl = {
		.rlim_cur = pages * getpagesize(),
		.rlim_max = pages * getpagesize(),
	};
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		CHILD_CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
		CHILD_CHECK(setresgid(NOBODY, NOBODY, NOBODY) == 0);
		CHILD_CHECK(setresuid(NOBODY, NOBODY, NOBODY) == 0);
		CHILD_CHECK(!have_cap(CAP_IPC_LOCK));
		fn();
		_exit(0);
	}
	return wait_child(pid);
}

/* An asyncfd on a RING_SIZE ring, and a spare ring to swap in. */
FIXTURE(asyncfd) {
	struct asyncfd_ring ring;
	struct asyncfd_ring spare;
};

FIXTURE_SETUP(asyncfd)
{
	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, RING_SIZE, 0));
	ASSERT_EQ(0, asyncfd_ring_map(&self->spare, 2 * RING_SIZE));
}

FIXTURE_TEARDOWN(asyncfd)
{
	asyncfd_ring_exit(&self->ring);
	asyncfd_ring_exit(&self->spare);
}

TEST_F(asyncfd, fd_links_to_anon_inode)
{
	char link[64];

	fd_link(self->ring.fd, link, sizeof(link));
	EXPECT_STREQ("anon_inode:[asyncfd]", link);
}

TEST_F(asyncfd, created_without_cloexec)
{
	EXPECT_EQ(0, fcntl(self->ring.fd, F_GETFD));
}

/* read() only waits and counts: it needs room for the 8-byte count. */
TEST_F(asyncfd, short_read_fails_einval)
{
	char buf[32] = {};
	size_t len;

	for (len = 0; len < sizeof(__u64); len++) {
		errno = 0;
		EXPECT_EQ(-1, read(self->ring.fd, buf, len));
		EXPECT_EQ(EINVAL, errno);
	}
}

/*
 * Results never come in through write(), so the file is opened for
 * reading only, and the VFS refuses a write before any length check.
 * Catches a file still created O_RDWR, which would fail with EINVAL.
 */
TEST_F(asyncfd, file_is_read_only)
{
	char buf[32] = {};
	int flags;

	flags = fcntl(self->ring.fd, F_GETFL);
	ASSERT_LE(0, flags);
	EXPECT_EQ(O_RDONLY, flags & O_ACCMODE);
	errno = 0;
	EXPECT_EQ(-1, write(self->ring.fd, buf, sizeof(buf)));
	EXPECT_EQ(EBADF, errno);
	errno = 0;
	EXPECT_EQ(-1, write(self->ring.fd, buf, 0));
	EXPECT_EQ(EBADF, errno);
}

static int set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

TEST_F(asyncfd, nonblocking_read_of_empty_ring_fails_eagain)
{
	__u64 waiting = 7;

	ASSERT_EQ(0, set_nonblocking(self->ring.fd));
	errno = 0;
	EXPECT_EQ(-1, read(self->ring.fd, &waiting, sizeof(waiting)));
	EXPECT_EQ(EAGAIN, errno);
	EXPECT_EQ(7, waiting);
}

TEST_F(asyncfd, fdinfo_describes_new_ring)
{
	int fd = self->ring.fd;

	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-size"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-tail"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-iuser"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting-copied"));
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-copy-limit"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting-peak"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waited-total"));
	EXPECT_EQ(ring_pages(RING_SIZE), fdinfo_get(fd, "asyncfd-pinned-pages"));
	EXPECT_EQ(0, self->ring.hdr->kflags);
}

/*
 * Tools parse fdinfo by position as often as by name, so the order is
 * part of the interface; a field left over from v2, or one renamed,
 * shows up here.
 */
TEST_F(asyncfd, fdinfo_fields_in_order)
{
	static const char * const keys[] = {
		"asyncfd-size", "asyncfd-tail", "asyncfd-iuser",
		"asyncfd-waiting", "asyncfd-waiting-copied",
		"asyncfd-copy-limit", "asyncfd-waiting-peak",
		"asyncfd-waited-total", "asyncfd-pinned-pages",
	};
	unsigned int n = 0;
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", self->ring.fd);
	f = fopen(path, "re");
	ASSERT_NE(NULL, f);
	while (fgets(line, sizeof(line), f)) {
		size_t len;

		if (strncmp(line, "asyncfd-", strlen("asyncfd-")))
			continue;
		ASSERT_GT(ARRAY_SIZE(keys), n) {
			TH_LOG("extra field: %s", line);
		}
		len = strlen(keys[n]);
		EXPECT_TRUE(!strncmp(line, keys[n], len) && line[len] == ':') {
			TH_LOG("field %u: want %s, got %s", n, keys[n], line);
		}
		n++;
	}
	fclose(f);
	EXPECT_EQ(ARRAY_SIZE(keys), n);
}

TEST_F(asyncfd, unknown_flags_rejected)
{
	static const unsigned int flags[] = {
		1U << 1, 1U << 31, ASYNCFD_CLOEXEC | 1U << 1, O_CLOEXEC,
		O_NONBLOCK, ~0U,
	};
	long long vmpin = vmpin_now_kb();
	int free_fd = lowest_free_fd();
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(flags); i++) {
		EXPECT_EQ(-1, sys_asyncfd(-1, self->spare.hdr, flags[i])) {
			TH_LOG("create with flags %#x", flags[i]);
		}
		EXPECT_EQ(EINVAL, errno);
		EXPECT_EQ(-1, sys_asyncfd(self->ring.fd, self->spare.hdr, flags[i])) {
			TH_LOG("swap with flags %#x", flags[i]);
		}
		EXPECT_EQ(EINVAL, errno);
		EXPECT_EQ(-1, sys_asyncfd(self->ring.fd, NULL, flags[i])) {
			TH_LOG("flush with flags %#x", flags[i]);
		}
		EXPECT_EQ(EINVAL, errno);
	}
	EXPECT_EQ(vmpin, vmpin_now_kb());
	EXPECT_EQ(free_fd, lowest_free_fd());
	EXPECT_EQ(RING_SIZE, fdinfo_get(self->ring.fd, "asyncfd-size"));
}

TEST_F(asyncfd, swap_returns_same_fd)
{
	int fd = self->ring.fd;

	ASSERT_EQ(fd, sys_asyncfd(fd, self->spare.hdr, 0));
	self->spare.fd = fd;
	self->ring.fd = -1;
	EXPECT_EQ(2 * RING_SIZE, fdinfo_get(fd, "asyncfd-size"));
}

/*
 * ASYNCFD_CLOEXEC is for creation; a swap refuses it, as it refuses any
 * flag, so that the bit stays free to mean something there later.  The
 * refused swap leaves the ring and the descriptor's flags alone.
 */
TEST_F(asyncfd, swap_rejects_flags)
{
	int fd = self->ring.fd;

	EXPECT_EQ(-1, sys_asyncfd(fd, self->spare.hdr, ASYNCFD_CLOEXEC));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(0, fcntl(fd, F_GETFD));
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-size"));

	ASSERT_EQ(0, fcntl(fd, F_SETFD, FD_CLOEXEC));
	ASSERT_EQ(fd, sys_asyncfd(fd, self->spare.hdr, 0));
	EXPECT_EQ(FD_CLOEXEC, fcntl(fd, F_GETFD));
	EXPECT_EQ(0, poll_now(fd));
}

TEST_F(asyncfd, swap_on_closed_fd_fails_ebadf)
{
	long long vmpin = vmpin_now_kb();

	EXPECT_EQ(-1, sys_asyncfd(lowest_free_fd(), self->spare.hdr, 0));
	EXPECT_EQ(EBADF, errno);
	/* Only -1 creates; other negative numbers are just bad fds. */
	EXPECT_EQ(-1, sys_asyncfd(-2, self->spare.hdr, 0));
	EXPECT_EQ(EBADF, errno);
	EXPECT_EQ(vmpin, vmpin_now_kb());
}

TEST_F(asyncfd, swap_on_other_file_fails_einval)
{
	long long vmpin = vmpin_now_kb();
	int pipefd[2], efd;

	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_GE(efd, 0);

	EXPECT_EQ(-1, sys_asyncfd(pipefd[0], self->spare.hdr, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, sys_asyncfd(efd, self->spare.hdr, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(vmpin, vmpin_now_kb());
	EXPECT_EQ(RING_SIZE, fdinfo_get(self->ring.fd, "asyncfd-size"));

	close(pipefd[0]);
	close(pipefd[1]);
	close(efd);
}

/*
 * With nothing waiting a flush has nothing to do, and says so at once:
 * unlike read(), it never waits for results.  The watchdog catches a
 * flush that blocks.
 */
TEST_F(asyncfd, flush_with_nothing_waiting_returns_0)
{
	int fd = self->ring.fd;
	struct watchdog wd;

	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "flush of nothing");
	EXPECT_EQ(0, sys_asyncfd(fd, NULL, 0));
	EXPECT_EQ(0, asyncfd_flush(&self->ring));
	watchdog_stop(&wd);
	EXPECT_EQ(0, self->ring.hdr->ikernel);
	EXPECT_EQ(0, kflags(&self->ring));
	EXPECT_EQ(0, poll_now(fd));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-tail"));
}

/*
 * ASYNCFD_CLOEXEC means something at creation only; a flush takes no
 * flags, so that one may mean something later.
 */
TEST_F(asyncfd, flush_with_flags_fails_einval)
{
	static const unsigned int flags[] = {
		ASYNCFD_CLOEXEC, 1U << 1, 1U << 31, ~0U,
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(flags); i++) {
		errno = 0;
		EXPECT_EQ(-1, sys_asyncfd(self->ring.fd, NULL, flags[i])) {
			TH_LOG("flush with flags %#x", flags[i]);
		}
		EXPECT_EQ(EINVAL, errno);
	}
	EXPECT_EQ(0, fcntl(self->ring.fd, F_GETFD));
}

TEST(create_with_cloexec)
{
	struct asyncfd_ring ring;

	ASSERT_EQ(0, asyncfd_ring_setup(&ring, RING_SIZE, ASYNCFD_CLOEXEC));
	EXPECT_EQ(FD_CLOEXEC, fcntl(ring.fd, F_GETFD));
	asyncfd_ring_exit(&ring);
}

/* Runs in the re-executed test binary, see main(). */
static int exec_check(char **argv)
{
	int cloexec_fd = atoi(argv[2]), inherited_fd = atoi(argv[3]);

	if (fcntl(cloexec_fd, F_GETFD) != -1 || errno != EBADF) {
		fprintf(stderr, "# exec: CLOEXEC asyncfd %d survived exec\n",
			cloexec_fd);
		return 1;
	}
	if (!is_asyncfd(inherited_fd)) {
		fprintf(stderr, "# exec: asyncfd %d lost across exec\n",
			inherited_fd);
		return 1;
	}
	return 0;
}

TEST(cloexec_fd_closed_by_exec)
{
	struct asyncfd_ring cloexec, inherited;
	char cloexec_arg[16], inherited_arg[16];
	pid_t pid;

	ASSERT_EQ(0, asyncfd_ring_setup(&cloexec, RING_SIZE, ASYNCFD_CLOEXEC));
	ASSERT_EQ(0, asyncfd_ring_setup(&inherited, RING_SIZE, 0));
	snprintf(cloexec_arg, sizeof(cloexec_arg), "%d", cloexec.fd);
	snprintf(inherited_arg, sizeof(inherited_arg), "%d", inherited.fd);

	pid = fork();
	ASSERT_GE(pid, 0);
	if (pid == 0) {
		execl("/proc/self/exe", "asyncfd_test", EXEC_CHECK_ARG,
		      cloexec_arg, inherited_arg, (char *)NULL);
		CHILD_CHECK(!"execl");
	}
	EXPECT_EQ(0, wait_child(pid));

	asyncfd_ring_exit(&cloexec);
	asyncfd_ring_exit(&inherited);
}

TEST(create_fails_emfile_without_leak)
{
	struct asyncfd_ring ring;
	struct rlimit old, rl;
	long long vmpin;
	int ret, err;

	ASSERT_EQ(0, asyncfd_ring_map(&ring, RING_SIZE));
	vmpin = vmpin_now_kb();
	ASSERT_EQ(0, getrlimit(RLIMIT_NOFILE, &old));
	rl = old;
	rl.rlim_cur = lowest_free_fd();
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &rl));
	ret = sys_asyncfd(-1, ring.hdr, 0);
	err = errno;
	ASSERT_EQ(0, setrlimit(RLIMIT_NOFILE, &old));

	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EMFILE, err);
	EXPECT_EQ(vmpin, vmpin_now_kb());
	asyncfd_ring_unmap(&ring);
}

/* The kernel checks in a documented order; these pin it down. */
TEST(flags_checked_first)
{
	EXPECT_EQ(-1, sys_asyncfd(lowest_free_fd(), NULL, 1U << 1));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, sys_asyncfd(-1, NULL, 1U << 1));
	EXPECT_EQ(EINVAL, errno);
}

/* A NULL ring asks for a flush, which needs an asyncfd. */
TEST(flush_of_bad_fd_fails_ebadf)
{
	EXPECT_EQ(-1, sys_asyncfd(lowest_free_fd(), NULL, 0));
	EXPECT_EQ(EBADF, errno);
	EXPECT_EQ(-1, sys_asyncfd(-2, NULL, 0));
	EXPECT_EQ(EBADF, errno);
}

TEST(flush_of_other_file_fails_einval)
{
	int pipefd[2], efd;

	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	efd = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, efd);
	EXPECT_EQ(-1, sys_asyncfd(pipefd[0], NULL, 0));
	EXPECT_EQ(EINVAL, errno);
	EXPECT_EQ(-1, sys_asyncfd(efd, NULL, 0));
	EXPECT_EQ(EINVAL, errno);
	close(efd);
	close(pipefd[0]);
	close(pipefd[1]);
}

TEST(alignment_checked_before_reading)
{
	EXPECT_EQ(-1, sys_asyncfd(-1, (struct asyncfd_uring *)4, 0));
	EXPECT_EQ(EINVAL, errno);
}

TEST(fields_checked_before_pinning)
{
	struct asyncfd_ring ring;

	ASSERT_EQ(0, asyncfd_ring_map(&ring, RING_SIZE));
	/* Both size 0 and the NULL entries are wrong: EINVAL comes first. */
	ring.hdr->ptr = 0;
	ring.hdr->size = 0;
	EXPECT_EQ(-1, sys_asyncfd(-1, ring.hdr, 0));
	EXPECT_EQ(EINVAL, errno);
	ring.hdr->size = ASYNCFD_MAX_ENTRIES + 1;
	EXPECT_EQ(-1, sys_asyncfd(-1, ring.hdr, 0));
	EXPECT_EQ(EINVAL, errno);
	ring.hdr->size = RING_SIZE;
	ring.hdr->ptr = 4;
	EXPECT_EQ(-1, sys_asyncfd(-1, ring.hdr, 0));
	EXPECT_EQ(EINVAL, errno);
	asyncfd_ring_unmap(&ring);
}

/*
 * A ring described wrongly, for create and for swap.  The header
 * normally sits at the start of page 0 of @area and the entries at the
 * start of page 1; page 2 is an unmapped hole.
 */
enum where {
	GOOD,
	AT_NULL,
	IN_HOLE,
	MISALIGNED,	/* 4 bytes off the required 8-byte alignment */
	READ_ONLY,
	ACROSS_HOLE,	/* starts mapped and runs into the hole */
};

FIXTURE(bad_ring) {
	char *area;
	struct asyncfd_uring *urng;
	struct asyncfd_ring good;	/* registered: the swaps target it */
	long long vmpin;
	int free_fd;
};

FIXTURE_VARIANT(bad_ring) {
	enum where header;
	enum where entries;
	__u32 size;
	__u32 ikernel;
	__u32 iuser;
	__u32 kflags;
	int error;
};

FIXTURE_VARIANT_ADD(bad_ring, null_header) {
	.header = AT_NULL, .size = RING_SIZE, .error = EFAULT,
};

FIXTURE_VARIANT_ADD(bad_ring, unmapped_header) {
	.header = IN_HOLE, .size = RING_SIZE, .error = EFAULT,
};

FIXTURE_VARIANT_ADD(bad_ring, misaligned_header) {
	.header = MISALIGNED, .size = RING_SIZE, .error = EINVAL,
};

FIXTURE_VARIANT_ADD(bad_ring, read_only_header) {
	.header = READ_ONLY, .size = RING_SIZE, .error = EFAULT,
};

FIXTURE_VARIANT_ADD(bad_ring, header_across_hole) {
	.header = ACROSS_HOLE, .size = RING_SIZE, .error = EFAULT,
};

FIXTURE_VARIANT_ADD(bad_ring, null_entries) {
	.entries = AT_NULL, .size = RING_SIZE, .error = EFAULT,
};

FIXTURE_VARIANT_ADD(bad_ring, unmapped_entries) {
	.entries = IN_HOLE, .size = RING_SIZE, .error = EFAULT,
};

FIXTURE_VARIANT_ADD(bad_ring, misaligned_entries) {
	.entries = MISALIGNED, .size = RING_SIZE, .error = EINVAL,
};

FIXTURE_VARIANT_ADD(bad_ring, read_only_entries) {
	.entries = READ_ONLY, .size = RING_SIZE, .error = EFAULT,
};

FIXTURE_VARIANT_ADD(bad_ring, entries_across_hole) {
	.entries = ACROSS_HOLE, .size = RING_SIZE, .error = EFAULT,
};

FIXTURE_VARIANT_ADD(bad_ring, zero_size) {
	.size = 0, .error = EINVAL,
};

/* One slot always stays empty, so a ring of one could hold nothing. */
FIXTURE_VARIANT_ADD(bad_ring, size_one) {
	.size = 1, .error = EINVAL,
};

FIXTURE_VARIANT_ADD(bad_ring, size_above_max) {
	.size = ASYNCFD_MAX_ENTRIES + 1, .error = EINVAL,
};

/* 0x08000000 entries of 32 bytes are 2^32 bytes: 0 in 32 bits. */
FIXTURE_VARIANT_ADD(bad_ring, size_bytes_wrap_32bit) {
	.size = 0x08000000, .error = EINVAL,
};

FIXTURE_VARIANT_ADD(bad_ring, size_top_bit) {
	.size = 0x80000000, .error = EINVAL,
};

FIXTURE_VARIANT_ADD(bad_ring, ikernel_at_size) {
	.size = RING_SIZE, .ikernel = RING_SIZE, .iuser = RING_SIZE,
	.error = EINVAL,
};

FIXTURE_VARIANT_ADD(bad_ring, iuser_not_ikernel) {
	.size = RING_SIZE, .ikernel = 2, .iuser = 3, .error = EINVAL,
};

/* The kernel never reads kflags back, so it must start out true. */
FIXTURE_VARIANT_ADD(bad_ring, kflags_waiting) {
	.size = RING_SIZE, .kflags = ASYNCFD_KF_WAITING, .error = EINVAL,
};

FIXTURE_VARIANT_ADD(bad_ring, kflags_unknown_bit) {
	.size = RING_SIZE, .kflags = 1U << 31, .error = EINVAL,
};

/*
 * Where a part of the ring goes: @home is its page in @area, and
 * @mapped how much of it stays mapped when it runs into the hole.
 */
static char *place(char *area, enum where where, int home, size_t mapped)
{
	long page = getpagesize();

	switch (where) {
	case AT_NULL:
		return NULL;
	case IN_HOLE:
		return area + 2 * page;
	case MISALIGNED:
		return area + home * page + 4;
	case ACROSS_HOLE:
		return area + 2 * page - mapped;
	case GOOD:
	case READ_ONLY:
		break;
	}
	return area + home * page;
}

FIXTURE_SETUP(bad_ring)
{
	long page = getpagesize();
	struct asyncfd_uring hdr = {
		.size = variant->size,
		.ikernel = variant->ikernel,
		.iuser = variant->iuser,
		.kflags = variant->kflags,
	};
	char *at;

	self->area = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->area);
	ASSERT_EQ(0, munmap(self->area + 2 * page, page));

	hdr.ptr = (uintptr_t)place(self->area, variant->entries, 1,
				   4 * sizeof(struct asyncfd_result));
	at = place(self->area, variant->header, 0, sizeof(hdr.ptr));
	if (variant->header == ACROSS_HOLE)
		memcpy(at, &hdr, sizeof(hdr.ptr));
	else if (variant->header != AT_NULL && variant->header != IN_HOLE)
		memcpy(at, &hdr, sizeof(hdr));
	if (variant->header == READ_ONLY)
		ASSERT_EQ(0, mprotect(self->area, page, PROT_READ));
	if (variant->entries == READ_ONLY)
		ASSERT_EQ(0, mprotect(self->area + page, page, PROT_READ));
	self->urng = (struct asyncfd_uring *)at;

	ASSERT_EQ(0, asyncfd_ring_setup(&self->good, RING_SIZE, 0));
	self->vmpin = vmpin_now_kb();
	self->free_fd = lowest_free_fd();
}

FIXTURE_TEARDOWN(bad_ring)
{
	asyncfd_ring_exit(&self->good);
	munmap(self->area, 3 * getpagesize());
}

TEST_F(bad_ring, create_fails)
{
	EXPECT_EQ(-1, sys_asyncfd(-1, self->urng, 0));
	EXPECT_EQ(variant->error, errno);
	EXPECT_EQ(self->vmpin, vmpin_now_kb());
	EXPECT_EQ(self->free_fd, lowest_free_fd());
}

TEST_F(bad_ring, swap_fails_and_keeps_ring)
{
	int fd = self->good.fd;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	if (self->urng) {
		EXPECT_EQ(-1, sys_asyncfd(fd, self->urng, 0));
		EXPECT_EQ(variant->error, errno);
	} else {
		/* No ring to swap to: a NULL ring is a flush of nothing. */
		EXPECT_EQ(0, sys_asyncfd(fd, NULL, 0));
	}
	EXPECT_EQ(self->vmpin, vmpin_now_kb());
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-size"));
	EXPECT_EQ(ring_pages(RING_SIZE), fdinfo_get(fd, "asyncfd-pinned-pages"));

	post(_metadata, fd, "process", 1, 3, 3, 3);
	expect_results(_metadata, &self->good, 1, 3);
}

TEST(vmpin_counts_pinned_pages)
{
	struct asyncfd_ring small, big;
	long long base = vmpin_now_kb();

	ASSERT_LE(0, base);
	ASSERT_EQ(0, asyncfd_ring_setup(&small, RING_SIZE, 0));
	EXPECT_EQ(ring_pages(RING_SIZE), fdinfo_get(small.fd, "asyncfd-pinned-pages"));
	EXPECT_EQ(base + pages_kb(ring_pages(RING_SIZE)), vmpin_now_kb());

	ASSERT_EQ(0, asyncfd_ring_setup(&big, 1024, 0));
	EXPECT_EQ(ring_pages(1024), fdinfo_get(big.fd, "asyncfd-pinned-pages"));
	EXPECT_EQ(base + pages_kb(ring_pages(RING_SIZE) + ring_pages(1024)),
		  vmpin_now_kb());

	asyncfd_ring_exit(&small);
	EXPECT_EQ(base + pages_kb(ring_pages(1024)), vmpin_now_kb());
	asyncfd_ring_exit(&big);
	EXPECT_EQ(base, vmpin_now_kb());
}

TEST(vmpin_counts_header_across_pages)
{
	long page = getpagesize();
	long long base = vmpin_now_kb();
	struct asyncfd_uring *hdr;
	char *area;
	int fd;

	area = mmap(NULL, 3 * page, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, area);
	/* ptr in page 0, the rest in page 1; the entries in page 2. */
	hdr = (struct asyncfd_uring *)(area + page - sizeof(hdr->ptr));
	hdr->ptr = (uintptr_t)(area + 2 * page);
	hdr->size = RING_SIZE;

	fd = sys_asyncfd(-1, hdr, 0);
	ASSERT_GE(fd, 0);
	EXPECT_EQ(3, fdinfo_get(fd, "asyncfd-pinned-pages"));
	EXPECT_EQ(base + pages_kb(3), vmpin_now_kb());
	close(fd);
	EXPECT_EQ(base, vmpin_now_kb());
	munmap(area, 3 * page);
}

TEST(vmpin_follows_swap)
{
	struct asyncfd_ring first, big, last;
	long long base = vmpin_now_kb();

	ASSERT_EQ(0, asyncfd_ring_setup(&first, RING_SIZE, 0));
	ASSERT_EQ(0, asyncfd_ring_map(&big, 1024));
	ASSERT_EQ(0, asyncfd_ring_map(&last, RING_SIZE));

	ASSERT_EQ(0, asyncfd_ring_swap(&first, &big));
	EXPECT_EQ(base + pages_kb(ring_pages(1024)), vmpin_now_kb());
	EXPECT_EQ(ring_pages(1024), fdinfo_get(big.fd, "asyncfd-pinned-pages"));
	ASSERT_EQ(0, asyncfd_ring_swap(&big, &last));
	EXPECT_EQ(base + pages_kb(ring_pages(RING_SIZE)), vmpin_now_kb());
	asyncfd_ring_exit(&last);
	EXPECT_EQ(base, vmpin_now_kb());

	asyncfd_ring_exit(&first);
	asyncfd_ring_exit(&big);
}

TEST(cap_ipc_lock_ignores_memlock_limit)
{
	struct rlimit rl = { .rlim_cur = 0, .rlim_max = 0 };
	struct asyncfd_ring ring;
	long long base = vmpin_now_kb();

	if (!have_cap(CAP_IPC_LOCK))
		SKIP(return, "needs CAP_IPC_LOCK");
	ASSERT_EQ(0, setrlimit(RLIMIT_MEMLOCK, &rl));
	ASSERT_EQ(0, asyncfd_ring_setup(&ring, RING_SIZE, 0));
	/* Not charged to the user, but still pinned by this process. */
	EXPECT_EQ(base + pages_kb(ring_pages(RING_SIZE)), vmpin_now_kb());
	asyncfd_ring_exit(&ring);
}

/* RLIMIT_MEMLOCK of 3 pages: one ring of 2 pages fits, two do not. */
static void memlock_refuses_child(void)
{
	struct asyncfd_ring first, second, next;
	long long vmpin;
	int free_fd;

	CHILD_CHECK(asyncfd_ring_setup(&first, RING_SIZE, 0) == 0);
	vmpin = vmpin_now_kb();
	free_fd = lowest_free_fd();

	CHILD_CHECK(asyncfd_ring_setup(&second, RING_SIZE, 0) == -ENOMEM);
	CHILD_CHECK(vmpin_now_kb() == vmpin);
	CHILD_CHECK(lowest_free_fd() == free_fd);

	/*
	 * A swap charges the new ring before it gives the old one back.
	 * @next has as many pages as @first; fdinfo tells them apart.
	 */
	CHILD_CHECK(asyncfd_ring_map(&next, 2 * RING_SIZE) == 0);
	CHILD_CHECK(asyncfd_ring_swap(&first, &next) == -ENOMEM);
	CHILD_CHECK(vmpin_now_kb() == vmpin);
	CHILD_CHECK(fdinfo_get(first.fd, "asyncfd-size") == RING_SIZE);
}

TEST(memlock_limit_refuses_ring)
{
	if (geteuid())
		SKIP(return, "needs root to become an unprivileged user");
	EXPECT_EQ(0, run_unprivileged(memlock_refuses_child,
				      ring_pages(RING_SIZE) + 1));
}

/* RLIMIT_MEMLOCK of 4 pages: room for exactly two rings of 2 pages. */
static void memlock_released_child(void)
{
	struct asyncfd_ring a, b, c, next;
	int i;

	CHILD_CHECK(asyncfd_ring_setup(&a, RING_SIZE, 0) == 0);
	CHILD_CHECK(asyncfd_ring_setup(&b, RING_SIZE, 0) == 0);
	CHILD_CHECK(asyncfd_ring_setup(&c, RING_SIZE, 0) == -ENOMEM);

	asyncfd_ring_exit(&b);
	CHILD_CHECK(asyncfd_ring_setup(&c, RING_SIZE, 0) == 0);
	asyncfd_ring_exit(&c);

	/* Each swap needs the pages the one before gave back. */
	for (i = 0; i < 3; i++) {
		CHILD_CHECK(asyncfd_ring_map(&next, RING_SIZE) == 0);
		CHILD_CHECK(asyncfd_ring_swap(&a, &next) == 0);
		asyncfd_ring_unmap(&a);
		a = next;
	}

	CHILD_CHECK(asyncfd_ring_setup(&b, RING_SIZE, 0) == 0);
	CHILD_CHECK(asyncfd_ring_setup(&c, RING_SIZE, 0) == -ENOMEM);
}

TEST(memlock_released_on_close_and_swap)
{
	if (geteuid())
		SKIP(return, "needs root to become an unprivileged user");
	EXPECT_EQ(0, run_unprivileged(memlock_released_child,
				      2 * ring_pages(RING_SIZE)));
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

static void *waiter_run(void *arg)
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

/* Whether thread @tid is asleep, which a waiter only does in its wait. */
static bool thread_sleeping(pid_t tid)
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
 * Start @w and return once it sleeps, so that what follows must wake
 * it; or once it returned, which the caller's checks then catch.
 */
static void waiter_start(struct __test_metadata *_metadata, struct waiter *w)
{
	int64_t deadline = mono_ns() + 5 * NSEC_PER_SEC;
	pid_t tid;

	ASSERT_EQ(0, pthread_create(&w->thread, NULL, waiter_run, w));
	while (!(tid = __atomic_load_n(&w->tid, __ATOMIC_ACQUIRE)) ||
	       !thread_sleeping(tid)) {
		if (__atomic_load_n(&w->done, __ATOMIC_ACQUIRE))
			break;
		ASSERT_LT(mono_ns(), deadline);
		usleep(1000);
	}
}

/* A waiter of kind @how sleeps until a hard interrupt stores. */
static void store_wakes(struct __test_metadata *_metadata,
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

TEST_F(producer, poll_wakes_blocked_waiter)
{
	store_wakes(_metadata, &self->ring, WAIT_POLL);
}

/* ... and a reader, which also counts what was stored. */
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

static void ignore_signal(int sig)
{
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
 * One slot always stays empty, so a full ring holds RING_SIZE - 1; the
 * result that finds no room waits in the kernel and comes in when asked
 * for.  Catches a kernel that fills the last slot (the full ring would
 * look empty) or drops what does not fit.
 */
TEST_F(producer, full_ring_keeps_one_slot_free)
{
	struct asyncfd_ring *ring = &self->ring;
	int fd = ring->fd;

	post(_metadata, fd, "process", 1, RING_SIZE, RING_SIZE, RING_SIZE - 1);
	EXPECT_EQ(RING_SIZE - 1, ring->hdr->ikernel);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(RING_SIZE - 1, asyncfd_ring_ready(ring));
	expect_results(_metadata, ring, 1, RING_SIZE - 1);

	/* The kernel cannot see the room we made until we call. */
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(0, kflags(ring));
	expect_results(_metadata, ring, RING_SIZE, 1);

	/* Consumed slots are free again. */
	post(_metadata, fd, "process", 100, RING_SIZE - 1, 3, RING_SIZE - 1);
	EXPECT_EQ(0, kflags(ring));
	expect_results(_metadata, ring, 100, RING_SIZE - 1);
}

/*
 * More than the ring holds, in one call: what fits is stored, the rest
 * waits in the kernel and arrives exactly once, in order, after the
 * consumer made room and flushed.  kflags and POLLPRI say exactly while
 * results wait, and fdinfo counts them.  Catches a waiting result that
 * is dropped, duplicated or reordered, kflags or POLLPRI that lag, and
 * totals that forget (a peak that is only the latest count).
 */
TEST_F(producer, results_that_wait_arrive_once_in_order)
{
	struct asyncfd_ring *ring = &self->ring;
	int fd = ring->fd;

	/* 7 fit and 6 wait, within the bound of RING_SIZE copies. */
	post(_metadata, fd, "process", 1, 13, 13, RING_SIZE - 1);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	EXPECT_EQ(RING_SIZE - 1, fdinfo_get(fd, "asyncfd-tail"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-iuser"));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-waiting-copied"));
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-copy-limit"));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-waiting-peak"));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-waited-total"));

	expect_results(_metadata, ring, 1, RING_SIZE - 1);
	/* An empty ring is still work while results wait. */
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-waiting"));

	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(0, kflags(ring));
	EXPECT_EQ(READABLE, poll_now(fd));
	EXPECT_EQ(13 % RING_SIZE, fdinfo_get(fd, "asyncfd-tail"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting-copied"));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-waiting-peak"));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-waited-total"));
	expect_results(_metadata, ring, RING_SIZE, 6);
	EXPECT_EQ(0, poll_now(fd));

	/* Fewer wait this time: the peak stays, the total adds up. */
	post(_metadata, fd, "softirq", 100, 10, 10, RING_SIZE - 1);
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	EXPECT_EQ(3, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(6, fdinfo_get(fd, "asyncfd-waiting-peak"));
	EXPECT_EQ(9, fdinfo_get(fd, "asyncfd-waited-total"));
	expect_drained(_metadata, ring, 100, 10);
	EXPECT_EQ(0, kflags(ring));
	EXPECT_EQ(0, poll_now(fd));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(9, fdinfo_get(fd, "asyncfd-waited-total"));
}

/*
 * A flush moves what fits, in order, and returns how many still wait;
 * into a full ring it moves nothing.  Catches a flush that returns the
 * number it moved, or overfills the ring.
 */
TEST_F(producer, flush_returns_number_still_waiting)
{
	struct asyncfd_ring *ring = &self->ring;
	struct asyncfd_result res[3];
	int fd = ring->fd;

	/* Full, and RING_SIZE wait: as many as copies may hold. */
	post(_metadata, fd, "process", 1, 2 * RING_SIZE - 1, 2 * RING_SIZE - 1,
	     RING_SIZE - 1);
	EXPECT_EQ(RING_SIZE, asyncfd_flush(ring));
	EXPECT_EQ(RING_SIZE - 1, ring->hdr->ikernel);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));

	/* Room for 3: 8, 9 and 10 move in, 11 to 15 still wait. */
	ASSERT_EQ(3, asyncfd_reap(ring, res, 3));
	expect_cookies(_metadata, res, 3, 1);
	EXPECT_EQ(RING_SIZE - 3, asyncfd_flush(ring));
	EXPECT_EQ(2, ring->hdr->ikernel);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	EXPECT_EQ(RING_SIZE - 3, fdinfo_get(fd, "asyncfd-waiting"));
	expect_results(_metadata, ring, 4, RING_SIZE - 1);

	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(0, kflags(ring));
	expect_results(_metadata, ring, 11, RING_SIZE - 3);
	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(0, poll_now(fd));
}

/*
 * The kernel keeps at most RING_SIZE copied results waiting.  A post
 * that would go past that fails whole with -ENOSPC, and nothing of it
 * ever arrives; one that fits waits like any other.  Catches a bound
 * off by one, a post taken in part, and a refused result that turns up
 * later anyway.
 */
TEST_F(producer, copy_bound_refuses_whole_post)
{
	struct asyncfd_ring *ring = &self->ring;
	int fd = ring->fd;

	/*
	 * Calls of 5: 5 stored; 2 stored and 3 wait; 5 wait, which makes
	 * RING_SIZE; the fourth finds the bound, and the post ends there.
	 */
	post_report(_metadata, fd, "process", 1, 20, 5, RING_SIZE - 1,
		    RING_SIZE, -ENOSPC);
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-waiting-copied"));
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-copy-limit"));
	post_nospc(_metadata, fd, "hardirq", 100, 1, 1);
	post_nospc(_metadata, fd, "process", 200, 4, 1);
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-waited-total"));

	/* 7 move and 1 still waits: 1 + 8 copies are too many, 1 + 7 not. */
	expect_results(_metadata, ring, 1, RING_SIZE - 1);
	EXPECT_EQ(1, asyncfd_flush(ring));
	post_nospc(_metadata, fd, "softirq", 300, RING_SIZE, RING_SIZE);
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-waiting-copied"));
	post(_metadata, fd, "softirq", 16, RING_SIZE - 1, RING_SIZE - 1, 0);
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-waiting-copied"));

	/* 8 to 22 and nothing else: not 16 to 20, 100, 200 or 300 on. */
	expect_drained(_metadata, ring, RING_SIZE, 15);
	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(0, poll_now(fd));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting-copied"));
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-waiting-peak"));
	EXPECT_EQ(RING_SIZE + RING_SIZE - 1,
		  fdinfo_get(fd, "asyncfd-waited-total"));
	post(_metadata, fd, "process", 23, 1, 1, 1);
	expect_results(_metadata, ring, 23, 1);
}

/*
 * Waiting results go into the ring ahead of anything newer at the next
 * post, with no flush, and whatever of the post does not fit queues
 * behind them.  Catches a kernel that gives room to a new result that a
 * waiting one should have had, or that moves waiting results only when
 * asked.
 */
TEST_F(producer, waiting_results_enter_before_newer_at_next_post)
{
	struct asyncfd_ring *ring = &self->ring;
	struct asyncfd_result res[3];
	int fd = ring->fd;

	post(_metadata, fd, "process", 1, 10, 10, RING_SIZE - 1);
	expect_results(_metadata, ring, 1, RING_SIZE - 1);
	/* 8 to 10 wait; the post puts them in first, then 11 and 12. */
	post(_metadata, fd, "hardirq", 11, 2, 2, 2);
	EXPECT_EQ(0, kflags(ring));
	EXPECT_EQ(READABLE, poll_now(fd));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(5, asyncfd_ring_ready(ring));

	/* Room for 2 of 4: 13 and 14 are stored, 15 and 16 wait. */
	post(_metadata, fd, "softirq", 13, 4, 4, 2);
	ASSERT_EQ(3, asyncfd_reap(ring, res, 3));
	expect_cookies(_metadata, res, 3, 8);
	/* Room for 3: 15 and 16 go first, then 17; 18 waits behind them. */
	post(_metadata, fd, "kthread", 17, 2, 2, 1);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-waiting"));
	expect_results(_metadata, ring, 11, RING_SIZE - 1);
	EXPECT_EQ(0, asyncfd_flush(ring));
	expect_results(_metadata, ring, 18, 1);
	EXPECT_EQ(3 + 2 + 1, fdinfo_get(fd, "asyncfd-waited-total"));
}

/*
 * Cookie 0 is a result like any other, stored or waiting.  Catches a
 * kernel that still takes a zero cookie for a free slot or refuses it,
 * and a list of waiting results that ends at one.
 */
TEST_F(producer, zero_cookie_is_a_result)
{
	struct asyncfd_ring *ring = &self->ring;
	int fd = ring->fd;

	post(_metadata, fd, "process", 0, 1, 1, 1);
	EXPECT_EQ(1, ring->hdr->ikernel);
	EXPECT_EQ(0, ring->entries[0].cookie);
	EXPECT_EQ(0, ring->entries[0].obj);
	EXPECT_EQ(TEST_PRODUCER_IN_TASK, ring->entries[0].res);
	expect_results(_metadata, ring, 0, 1);

	/* Behind a full ring, the zero cookie is the first to wait. */
	post(_metadata, fd, "hardirq", 100, RING_SIZE - 1, RING_SIZE - 1,
	     RING_SIZE - 1);
	post(_metadata, fd, "hardirq", 0, 2, 2, 0);
	expect_results(_metadata, ring, 100, RING_SIZE - 1);
	EXPECT_EQ(0, asyncfd_flush(ring));
	expect_results(_metadata, ring, 0, 2);
}

/*
 * The kernel never reads a slot: whatever the consumer left there, a
 * result is stored over it.  Catches a kernel that still takes a
 * nonzero cookie for a slot in use.
 */
TEST_F(producer, stale_slot_contents_are_overwritten)
{
	struct asyncfd_ring *ring = &self->ring;

	memset(ring->entries, 0xa5, RING_SIZE * sizeof(*ring->entries));
	post(_metadata, ring->fd, "process", 1, RING_SIZE - 1, RING_SIZE - 1,
	     RING_SIZE - 1);
	EXPECT_EQ(0, kflags(ring));
	expect_results(_metadata, ring, 1, RING_SIZE - 1);
	/* The slot that stays empty is never written. */
	EXPECT_EQ(0xa5a5a5a5a5a5a5a5ULL, ring->entries[RING_SIZE - 1].cookie);
}

/*
 * A consumer index at or past the end leaves the kernel no room: every
 * result waits and no slot is written; once iuser is sane again the
 * results come in, in order.  Catches room or a slot computed from a
 * hostile iuser.
 */
TEST_F(producer, hostile_iuser_makes_results_wait)
{
	static const __u32 hostile[] = {
		RING_SIZE, RING_SIZE + 1, 0x80000000, UINT32_MAX,
	};
	struct asyncfd_ring *ring = &self->ring;
	int fd = ring->fd;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(hostile); i++) {
		__atomic_store_n(&ring->hdr->iuser, hostile[i], __ATOMIC_RELEASE);
		post(_metadata, fd, contexts[i + 1], 1 + 2 * i, 2, 2, 0);
		EXPECT_EQ(2 * (i + 1), asyncfd_flush(ring));
		EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
		EXPECT_EQ(BACKLOGGED, poll_now(fd));
	}
	EXPECT_EQ(0, ring->hdr->ikernel);
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-tail"));
	for (i = 0; i < RING_SIZE; i++)
		EXPECT_EQ(0, ring->entries[i].cookie);

	__atomic_store_n(&ring->hdr->iuser, 0, __ATOMIC_RELEASE);
	EXPECT_EQ(2 * ARRAY_SIZE(hostile) - (RING_SIZE - 1), asyncfd_flush(ring));
	expect_drained(_metadata, ring, 1, 2 * ARRAY_SIZE(hostile));
}

/*
 * ikernel and kflags are the kernel's to write, and it never reads them
 * back: what userspace writes there changes neither readiness nor where
 * or whether the kernel stores, and its next publish overwrites it.
 * Catches a kernel that trusts either word (poll, read() or a flush
 * that believes them, a store at a slot they chose) or that sets and
 * clears the waiting bit in whatever the word holds.
 */
TEST_F(producer, kernel_words_are_not_read_back)
{
	struct asyncfd_ring *ring = &self->ring;
	int fd = ring->fd;
	unsigned int i;
	__u64 count;

	__atomic_store_n(&ring->hdr->ikernel, 5, __ATOMIC_RELAXED);
	__atomic_store_n(&ring->hdr->kflags, ASYNCFD_KF_WAITING, __ATOMIC_RELAXED);
	EXPECT_EQ(0, poll_now(fd));
	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-tail"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting"));
	ASSERT_EQ(0, set_nonblocking(fd));
	errno = 0;
	EXPECT_EQ(-1, read(fd, &count, sizeof(count)));
	EXPECT_EQ(EAGAIN, errno);

	/* Stored from slot 0 on, and published over the 5. */
	post(_metadata, fd, "hardirq", 1, 3, 3, 3);
	EXPECT_EQ(3, ring->hdr->ikernel);
	EXPECT_EQ(1, ring->entries[0].cookie);
	EXPECT_EQ(3, ring->entries[2].cookie);
	EXPECT_EQ(0, ring->entries[5].cookie);
	EXPECT_EQ(READABLE, poll_now(fd));

	/* Results start to wait: the whole word is written, not one bit. */
	__atomic_store_n(&ring->hdr->kflags, ~ASYNCFD_KF_WAITING, __ATOMIC_RELAXED);
	post(_metadata, fd, "softirq", 4, RING_SIZE - 2, RING_SIZE - 2,
	     RING_SIZE - 4);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	EXPECT_EQ(RING_SIZE - 1, ring->hdr->ikernel);

	/* Wiped behind the kernel's back, and results still wait. */
	__atomic_store_n(&ring->hdr->kflags, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&ring->hdr->ikernel, 0, __ATOMIC_RELAXED);
	EXPECT_EQ(BACKLOGGED, poll_now(fd));
	ASSERT_EQ(sizeof(count), read(fd, &count, sizeof(count)));
	EXPECT_EQ(RING_SIZE - 1, count);
	EXPECT_EQ(2, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(RING_SIZE - 1, fdinfo_get(fd, "asyncfd-tail"));

	/* ikernel is garbage: consume by what read() counted. */
	for (i = 0; i < RING_SIZE - 1; i++)
		EXPECT_EQ(1 + i, ring->entries[i].cookie);
	asyncfd_advance(ring, RING_SIZE - 1);
	__atomic_store_n(&ring->hdr->kflags, ~0U, __ATOMIC_RELAXED);
	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(1, ring->hdr->ikernel);
	EXPECT_EQ(0, kflags(ring));
	expect_results(_metadata, ring, RING_SIZE, 2);
	EXPECT_EQ(0, poll_now(fd));
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
 * Take the edge an edge-triggered set has collected, whatever it is.
 * Bounded, so that a level that stays up cannot keep us here.
 */
static void epoll_drain(int ep)
{
	struct epoll_event ev;
	int i;

	for (i = 0; i < 4 && epoll_wait(ep, &ev, 1, 0) > 0; i++)
		;
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

TEST_F(producer, results_wrap_around_in_order)
{
	unsigned int round;

	for (round = 0; round < 5; round++) {
		post(_metadata, self->ring.fd, "process", 1 + 10 * round, 5, 2, 5);
		EXPECT_EQ(5 * (round + 1) % RING_SIZE, self->ring.hdr->ikernel);
		expect_results(_metadata, &self->ring, 1 + 10 * round, 5);
	}
}

TEST_F(producer, fdinfo_tracks_ring_state)
{
	struct asyncfd_result res;
	int fd = self->ring.fd;

	post(_metadata, fd, "process", 1, 3, 3, 3);
	ASSERT_EQ(1, asyncfd_reap(&self->ring, &res, 1));
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-size"));
	EXPECT_EQ(3, fdinfo_get(fd, "asyncfd-tail"));
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-iuser"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-waited-total"));
	EXPECT_EQ(ring_pages(RING_SIZE), fdinfo_get(fd, "asyncfd-pinned-pages"));

	/* Slots 3..7 are free, and slot 0 must stay empty: 5 fit. */
	post(_metadata, fd, "process", 10, 6, 6, 5);
	EXPECT_EQ(0, fdinfo_get(fd, "asyncfd-tail"));
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-iuser"));
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-waiting-copied"));
	EXPECT_EQ(RING_SIZE, fdinfo_get(fd, "asyncfd-copy-limit"));
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-waiting-peak"));
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-waited-total"));
	EXPECT_EQ(ring_pages(RING_SIZE), fdinfo_get(fd, "asyncfd-pinned-pages"));
}

TEST(ring_starts_at_registered_index)
{
	struct asyncfd_ring ring;
	int i;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_map(&ring, RING_SIZE));
	ring.hdr->ikernel = 5;
	ring.hdr->iuser = 5;
	ring.fd = sys_asyncfd(-1, ring.hdr, 0);
	ASSERT_GE(ring.fd, 0);
	EXPECT_EQ(5, fdinfo_get(ring.fd, "asyncfd-tail"));

	post(_metadata, ring.fd, "process", 1, 4, 4, 4);
	EXPECT_EQ(1, ring.hdr->ikernel);
	EXPECT_EQ(1, ring.entries[5].cookie);
	EXPECT_EQ(4, ring.entries[0].cookie);
	for (i = 1; i < 5; i++)
		EXPECT_EQ(0, ring.entries[i].cookie);
	expect_results(_metadata, &ring, 1, 4);
	asyncfd_ring_exit(&ring);
}

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

TEST_F(producer, post_to_closed_fd_fails_ebadf)
{
	int tp = test_producer_open(), fd = self->ring.fd;
	struct post_result pr;

	/* Opened first, so that the handle does not take the closed number. */
	ASSERT_LE(0, tp);
	asyncfd_ring_exit(&self->ring);
	EXPECT_EQ(-EBADF, test_producer_send(tp, fd, "process", 1, 1, 1, &pr));
	close(tp);
}

TEST_F(producer, post_to_other_file_fails_einval)
{
	struct post_result pr;
	int pipefd[2];

	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	EXPECT_EQ(-EINVAL, test_producer_post(pipefd[0], "process", 1, 1, 1, &pr));
	close(pipefd[0]);
	close(pipefd[1]);
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
 * A full ring, with nothing waiting yet, and a waiter of a kind that
 * sleeps on it: whatever wakes the waiter is a result that has to wait.
 * poll() and select() for POLLIN, and read(), cannot sleep on a full
 * ring; an edge-triggered set can, once its last edge was taken.
 */
FIXTURE(wait_wake) {
	struct asyncfd_ring ring;
	int ep;
	__u64 next;	/* cookie of the next post */
	__u64 reaped;	/* cookie of the next result to reap */
};

FIXTURE_VARIANT(wait_wake) {
	enum wait_how how;
	unsigned int events;	/* what the waiter asks for */
	unsigned int revents;	/* what it must get */
};

FIXTURE_VARIANT_ADD(wait_wake, poll_pri) {
	.how = WAIT_POLL, .events = POLLPRI, .revents = POLLPRI,
};

FIXTURE_VARIANT_ADD(wait_wake, select_except) {
	.how = WAIT_SELECT, .events = POLLPRI, .revents = POLLPRI,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_lt_pri) {
	.how = WAIT_EPOLL, .events = EPOLLPRI, .revents = EPOLLPRI,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_et) {
	.how = WAIT_EPOLL, .events = EPOLLIN | EPOLLET, .revents = EPOLLIN,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_et_rdnorm) {
	.how = WAIT_EPOLL, .events = EPOLLRDNORM | EPOLLET,
	.revents = EPOLLRDNORM,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_et_pri) {
	.how = WAIT_EPOLL, .events = EPOLLIN | EPOLLPRI | EPOLLET,
	.revents = EPOLLIN | EPOLLPRI,
};

FIXTURE_VARIANT_ADD(wait_wake, epoll_exclusive) {
	.how = WAIT_EPOLL, .events = EPOLLIN | EPOLLET | EPOLLEXCLUSIVE,
	.revents = EPOLLIN,
};

/*
 * Fill @ring with nothing waiting, from cookie *@next on, and take the
 * edges that made in @ep, if any.
 */
static void wait_wake_fill(struct __test_metadata *_metadata,
			   struct asyncfd_ring *ring, int ep, __u64 *next,
			   unsigned int count)
{
	post(_metadata, ring->fd, "process", *next, count, count, count);
	*next += count;
	EXPECT_EQ(RING_SIZE - 1, asyncfd_ring_ready(ring));
	EXPECT_FALSE(asyncfd_waiting(ring));
	if (ep >= 0)
		epoll_drain(ep);
}

FIXTURE_SETUP(wait_wake)
{
	struct epoll_event ev = { .events = variant->events };

	self->ep = -1;
	self->next = 1;
	self->reaped = 1;
	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, RING_SIZE, 0));
	if (variant->how == WAIT_EPOLL) {
		self->ep = epoll_create1(EPOLL_CLOEXEC);
		ASSERT_LE(0, self->ep);
		ASSERT_EQ(0, epoll_ctl(self->ep, EPOLL_CTL_ADD, self->ring.fd, &ev));
	}
	wait_wake_fill(_metadata, &self->ring, self->ep, &self->next,
		       RING_SIZE - 1);
}

FIXTURE_TEARDOWN(wait_wake)
{
	if (self->ep >= 0)
		close(self->ep);
	asyncfd_ring_exit(&self->ring);
}

/*
 * Each round: a waiter sleeps on the full ring, one result has to wait,
 * the waiter wakes; then the ring is emptied, the result flushed in and
 * the ring filled again.  Catches a kernel that does not wake for a
 * result that waits, or wakes without the events poll would report.
 */
TEST_F(wait_wake, result_that_waits_wakes_blocked_waiter)
{
	struct watchdog wd;
	unsigned int round;

	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "waiter for a waiting result");
	for (round = 0; round < 3; round++) {
		struct waiter w = {
			.how = variant->how,
			.fd = self->ep >= 0 ? self->ep : self->ring.fd,
			.events = variant->events,
		};

		waiter_start(_metadata, &w);
		post(_metadata, self->ring.fd, contexts[round + 2], self->next,
		     1, 1, 0);
		self->next++;
		ASSERT_EQ(0, pthread_join(w.thread, NULL));
		EXPECT_EQ(1, w.ret);
		EXPECT_EQ(variant->revents, w.revents);

		expect_results(_metadata, &self->ring, self->reaped, RING_SIZE - 1);
		self->reaped += RING_SIZE - 1;
		EXPECT_EQ(0, asyncfd_flush(&self->ring));
		wait_wake_fill(_metadata, &self->ring, self->ep, &self->next,
			       RING_SIZE - 2);
	}
	watchdog_stop(&wd);
	EXPECT_EQ(3, fdinfo_get(self->ring.fd, "asyncfd-waited-total"));
	expect_drained(_metadata, &self->ring, self->reaped, RING_SIZE - 1);
	EXPECT_EQ(0, poll_now(self->ring.fd));
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
static void *retry_poster_run(void *arg)
{
	struct retry_poster *p = arg;

	p->ret = test_producer_send_from(p->tp, p->fd, p->context, false, true,
					 p->cookie, p->count, p->batch,
					 &p->result);
	return NULL;
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
		EXPECT_EQ(base, vmpin_settled(base));
		asyncfd_ring_exit(&ring);
	}
	watchdog_stop(&wd);
}

/*
 * Release wakes the wait queue with EPOLLHUP, but no poller in userspace
 * can see it: poll(), select() and the aio and io_uring polls hold the
 * file while they wait, and an epoll set drops its entry before release
 * runs.  What a poller does see: closing the descriptor under it ends
 * neither its wait nor the ring's registration, and once its wait ends,
 * release runs and unpins the ring.
 */
TEST(blocked_poller_keeps_ring_until_it_returns)
{
	struct sigaction sa = { .sa_handler = ignore_signal };
	struct waiter w = { .how = WAIT_POLL, .events = POLLIN | POLLPRI };
	long long base = vmpin_now_kb();
	struct asyncfd_ring ring;
	struct watchdog wd;

	ASSERT_EQ(0, sigaction(SIGUSR1, &sa, NULL));
	ASSERT_EQ(0, asyncfd_ring_setup(&ring, RING_SIZE, 0));
	w.fd = ring.fd;
	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "poll() on a closed fd");
	waiter_start(_metadata, &w);

	ASSERT_EQ(0, close(ring.fd));
	ring.fd = -1;
	EXPECT_EQ(base + pages_kb(ring_pages(RING_SIZE)), vmpin_now_kb());
	EXPECT_FALSE(__atomic_load_n(&w.done, __ATOMIC_ACQUIRE));

	/*
	 * Nothing can post any more: only a signal wakes the poller, which
	 * looks at its descriptors once more and finds this one closed.
	 */
	ASSERT_EQ(0, pthread_kill(w.thread, SIGUSR1));
	ASSERT_EQ(0, pthread_join(w.thread, NULL));
	watchdog_stop(&wd);
	EXPECT_EQ(1, w.ret);
	EXPECT_EQ(POLLNVAL, w.revents);
	EXPECT_EQ(base, vmpin_settled(base));
	asyncfd_ring_exit(&ring);
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

static void cage_map(struct __test_metadata *_metadata, struct cage *cage)
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
static long cage_damage(const struct cage *cage)
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
static void cage_restore(struct cage *cage)
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
static unsigned int cage_tampers(const struct cage *cage, struct tamper *t)
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
static void tamper_apply(struct asyncfd_uring *hdr, const struct tamper *t)
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
static void cage_setup(struct __test_metadata *_metadata, struct cage *cage)
{
	cage_map(_metadata, cage);
	cage->ring.fd = sys_asyncfd(-1, cage->ring.hdr, 0);
	ASSERT_LE(0, cage->ring.fd);
}

/*
 * After registration the header is only a mailbox: whatever userspace
 * writes to size, ptr, ikernel or kflags, the kernel stores into the
 * registered entries at its own tail, and its next publish of ikernel
 * or kflags overwrites what we wrote there.  Each rewrite comes before
 * a post that fills the ring and makes results wait, and again before
 * the flush that lets them in, so that both words are published over
 * it.  Catches a kernel that reads back any of the four words: a store
 * out of place (the canaries), a tail or waiting bit taken from the
 * header, a bit set or cleared in what userspace left.
 */
TEST(header_tampering_changes_nothing)
{
	struct tamper tampers[32];
	unsigned int i, n, tail = 0;
	struct asyncfd_uring *hdr;
	__u64 cookie = 1;
	struct cage cage;
	int fd;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	cage_setup(_metadata, &cage);
	hdr = cage.ring.hdr;
	fd = cage.ring.fd;
	n = cage_tampers(&cage, tampers);
	ASSERT_GE(ARRAY_SIZE(tampers), n);

	for (i = 0; i < n; i++) {
		struct post_result pr;
		__u64 ptr;
		__u32 size;

		cage_restore(&cage);
		tamper_apply(hdr, &tampers[i]);
		ptr = hdr->ptr;
		size = hdr->size;

		/* From an empty ring: fill it all, and 3 wait. */
		ASSERT_EQ(0, test_producer_post(fd, contexts[i % ARRAY_SIZE(contexts)],
						cookie, CAGE_SIZE + 2, 8, &pr));
		EXPECT_EQ(0, pr.error);
		EXPECT_EQ(CAGE_SIZE - 1, pr.stored);
		EXPECT_EQ(3, pr.waited);
		tail = (tail + CAGE_SIZE - 1) % CAGE_SIZE;

		EXPECT_EQ(-1, cage_damage(&cage)) {
			TH_LOG("rewrite %u: canary at offset %ld", i, cage_damage(&cage));
		}
		EXPECT_EQ(CAGE_SIZE, fdinfo_get(fd, "asyncfd-size")) {
			TH_LOG("rewrite %u", i);
		}
		EXPECT_EQ(tail, fdinfo_get(fd, "asyncfd-tail")) {
			TH_LOG("rewrite %u", i);
		}
		EXPECT_EQ(3, fdinfo_get(fd, "asyncfd-waiting"));
		EXPECT_EQ(3 * (i + 1), fdinfo_get(fd, "asyncfd-waited-total"));
		EXPECT_EQ(tail, hdr->ikernel) {
			TH_LOG("rewrite %u", i);
		}
		EXPECT_EQ(ASYNCFD_KF_WAITING, hdr->kflags) {
			TH_LOG("rewrite %u", i);
		}
		EXPECT_EQ(ptr, hdr->ptr);
		EXPECT_EQ(size, hdr->size);

		cage_restore(&cage);
		expect_results(_metadata, &cage.ring, cookie, CAGE_SIZE - 1);
		tamper_apply(hdr, &tampers[i]);
		EXPECT_EQ(0, asyncfd_flush(&cage.ring));
		tail = (tail + 3) % CAGE_SIZE;
		EXPECT_EQ(tail, hdr->ikernel) {
			TH_LOG("rewrite %u", i);
		}
		EXPECT_EQ(0, hdr->kflags) {
			TH_LOG("rewrite %u", i);
		}
		EXPECT_EQ(-1, cage_damage(&cage));
		cage_restore(&cage);
		expect_results(_metadata, &cage.ring, cookie + CAGE_SIZE - 1, 3);
		cookie += CAGE_SIZE + 2;
	}
	EXPECT_EQ(0, poll_now(fd));
	asyncfd_ring_exit(&cage.ring);
}

#define SCRIBBLE_COOKIE	0x100000000ULL
#define SCRIBBLE_COUNT	2048
#define SCRIBBLE_BATCH	16

struct scribbler {
	struct asyncfd_uring *hdr;
	const struct tamper *tampers;
	unsigned int n;
	unsigned long long rewrites;
	bool stop;
};

static void *scribbler_run(void *arg)
{
	struct scribbler *s = arg;

	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		tamper_apply(s->hdr, &s->tampers[s->rewrites++ % s->n]);
		/* Leave the producer and the consumer a CPU on a small VM. */
		sched_yield();
	}
	return NULL;
}

/*
 * One writer per header word, under fire: a thread keeps rewriting
 * every word the consumer does not own, while the test producer posts
 * many times what the ring holds, retrying what the bound refuses, and
 * we consume.  With ikernel garbage we cannot find the kernel's tail in
 * the header; read() tells how many results the ring holds, and we
 * keep our own index.
 */
FIXTURE(scribble) {
	struct cage cage;
	struct tamper tampers[32];
	unsigned int n;
};

FIXTURE_VARIANT(scribble) {
	const char *context;
};

FIXTURE_VARIANT_ADD(scribble, kthread) {
	.context = "kthread",
};

FIXTURE_VARIANT_ADD(scribble, hardirq) {
	.context = "hardirq",
};

FIXTURE_SETUP(scribble)
{
	self->cage.ring.fd = -1;
	self->cage.area = NULL;
	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	cage_setup(_metadata, &self->cage);
	self->n = cage_tampers(&self->cage, self->tampers);
	ASSERT_GE(ARRAY_SIZE(self->tampers), self->n);
}

FIXTURE_TEARDOWN(scribble)
{
	if (self->cage.area)
		asyncfd_ring_exit(&self->cage.ring);
}

/*
 * Every result arrives once, in order, in the slot after the one before
 * it, while the kernel words hold garbage.  Catches a kernel that takes
 * its tail from ikernel (results out of place, or outside the ring: the
 * canaries), that decides from kflags whether results wait (results
 * never moved in: the consumer blocks in read() until the watchdog), or
 * whose read() count strays from its own tail.
 */
TEST_F_TIMEOUT(scribble, kernel_words_scribbled_while_posting, 120)
{
	struct asyncfd_ring *ring = &self->cage.ring;
	struct retry_poster poster = {
		.fd = ring->fd, .context = variant->context,
		.cookie = SCRIBBLE_COOKIE, .count = SCRIBBLE_COUNT,
		.batch = SCRIBBLE_BATCH,
	};
	struct scribbler scribbler = {
		.hdr = ring->hdr, .tampers = self->tampers, .n = self->n,
	};
	unsigned int head = 0, got = 0, reads = 0, i;
	pthread_t poster_thread, scribbler_thread;
	struct watchdog wd;
	long long ktail;

	poster.tp = test_producer_open();
	ASSERT_LE(0, poster.tp);
	watchdog_start(_metadata, &wd, 100, "consumer of a scribbled ring");
	ASSERT_EQ(0, pthread_create(&scribbler_thread, NULL, scribbler_run,
				    &scribbler));
	ASSERT_EQ(0, pthread_create(&poster_thread, NULL, retry_poster_run,
				    &poster));

	while (got < SCRIBBLE_COUNT) {
		__u64 count;

		ASSERT_EQ(sizeof(count), read(ring->fd, &count, sizeof(count)));
		ASSERT_LE(1, count);
		ASSERT_GT(CAGE_SIZE, count);
		ASSERT_GE(SCRIBBLE_COUNT - got, count);
		for (i = 0; i < count; i++) {
			const struct asyncfd_result *res = &ring->entries[head];

			ASSERT_EQ(SCRIBBLE_COOKIE + got, res->cookie) {
				TH_LOG("slot %u, result %u", head, got);
			}
			ASSERT_EQ(got, res->obj);
			if (++head == CAGE_SIZE)
				head = 0;
			got++;
		}
		/* Our reads of the slots come before the kernel reuses them. */
		__atomic_store_n(&ring->hdr->iuser, head, __ATOMIC_RELEASE);
		ktail = fdinfo_get(ring->fd, "asyncfd-tail");
		ASSERT_LE(0, ktail);
		ASSERT_GT(CAGE_SIZE, ktail);
		reads++;
	}
	ASSERT_EQ(0, pthread_join(poster_thread, NULL));
	__atomic_store_n(&scribbler.stop, true, __ATOMIC_RELEASE);
	ASSERT_EQ(0, pthread_join(scribbler_thread, NULL));
	watchdog_stop(&wd);
	close(poster.tp);
	TH_LOG("%s: %u reads, %u stored, %u waited, %u retries, %llu rewrites",
	       variant->context, reads, poster.result.stored,
	       poster.result.waited, poster.result.retries, scribbler.rewrites);

	ASSERT_EQ(0, poster.ret);
	EXPECT_EQ(0, poster.result.error);
	EXPECT_EQ(0, poster.result.unposted);
	EXPECT_EQ(SCRIBBLE_COUNT, poster.result.stored + poster.result.waited);
	EXPECT_EQ(-1, cage_damage(&self->cage)) {
		TH_LOG("canary at offset %ld", cage_damage(&self->cage));
	}
	EXPECT_EQ(head, fdinfo_get(ring->fd, "asyncfd-tail"));
	EXPECT_EQ(head, fdinfo_get(ring->fd, "asyncfd-iuser"));
	EXPECT_EQ(0, fdinfo_get(ring->fd, "asyncfd-waiting"));
	EXPECT_EQ(poster.result.waited,
		  fdinfo_get(ring->fd, "asyncfd-waited-total"));

	/* The kernel's next publish puts its own values over the garbage. */
	cage_restore(&self->cage);
	post(_metadata, ring->fd, "process", 1, 3, 3, 3);
	EXPECT_EQ((head + 3) % CAGE_SIZE, ring->hdr->ikernel);
	EXPECT_EQ(1, ring->entries[head].cookie);
	post(_metadata, ring->fd, "hardirq", 4, CAGE_SIZE, CAGE_SIZE,
	     CAGE_SIZE - 4);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	expect_drained(_metadata, ring, 1, CAGE_SIZE + 3);
	EXPECT_EQ(0, kflags(ring));
	EXPECT_EQ(-1, cage_damage(&self->cage));
}

/*
 * The largest ring: 128 MiB of entries, pinned whole.  It starts at its
 * last slot, so that the post wraps the kernel's tail.
 */
TEST(max_entries_ring_accepted)
{
	struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
	unsigned int last = ASYNCFD_MAX_ENTRIES - 1;
	long long base = vmpin_now_kb();
	struct asyncfd_ring ring;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	if (geteuid())
		SKIP(return, "needs root to lift RLIMIT_MEMLOCK");
	ASSERT_EQ(0, setrlimit(RLIMIT_MEMLOCK, &unlimited));
	ASSERT_EQ(0, asyncfd_ring_map(&ring, ASYNCFD_MAX_ENTRIES));
	ring.hdr->ikernel = last;
	ring.hdr->iuser = last;
	ring.fd = sys_asyncfd(-1, ring.hdr, 0);
	ASSERT_LE(0, ring.fd) {
		TH_LOG("asyncfd(): %s", strerror(errno));
	}
	EXPECT_EQ(ASYNCFD_MAX_ENTRIES, fdinfo_get(ring.fd, "asyncfd-size"));
	EXPECT_EQ(ring_pages(ASYNCFD_MAX_ENTRIES),
		  fdinfo_get(ring.fd, "asyncfd-pinned-pages"));
	EXPECT_EQ(base + pages_kb(ring_pages(ASYNCFD_MAX_ENTRIES)), vmpin_now_kb());

	post(_metadata, ring.fd, "hardirq", 1, 2, 2, 2);
	EXPECT_EQ(1, ring.entries[last].cookie);
	EXPECT_EQ(2, ring.entries[0].cookie);
	EXPECT_EQ(1, fdinfo_get(ring.fd, "asyncfd-tail"));
	expect_results(_metadata, &ring, 1, 2);
	asyncfd_ring_exit(&ring);
	EXPECT_EQ(base, vmpin_now_kb());
}

/* A limit of exactly the largest ring's pages admits it; one less does not. */
static void max_entries_child(void)
{
	unsigned int pages = ring_pages(ASYNCFD_MAX_ENTRIES);
	struct rlimit rl = {
		.rlim_cur = (pages - 1) * (rlim_t)getpagesize(),
		.rlim_max = pages * (rlim_t)getpagesize(),
	};
	struct asyncfd_ring ring;

	CHILD_CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	CHILD_CHECK(asyncfd_ring_setup(&ring, ASYNCFD_MAX_ENTRIES, 0) == -ENOMEM);
	rl.rlim_cur = rl.rlim_max;
	CHILD_CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	CHILD_CHECK(asyncfd_ring_setup(&ring, ASYNCFD_MAX_ENTRIES, 0) == 0);
	CHILD_CHECK(fdinfo_get(ring.fd, "asyncfd-pinned-pages") == pages);
	asyncfd_ring_exit(&ring);
}

TEST(max_entries_ring_fits_exact_memlock_limit)
{
	if (geteuid())
		SKIP(return, "needs root to become an unprivileged user");
	EXPECT_EQ(0, run_unprivileged(max_entries_child,
				      ring_pages(ASYNCFD_MAX_ENTRIES)));
}

/*
 * Two entries, the fewest: one result fits, as one slot stays empty,
 * and two copies may wait.
 */
TEST(smallest_ring_holds_one_result)
{
	struct asyncfd_ring ring;
	int fd;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_setup(&ring, 2, 0));
	fd = ring.fd;
	post(_metadata, fd, "process", 1, 2, 2, 1);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(&ring));
	expect_results(_metadata, &ring, 1, 1);
	EXPECT_EQ(0, asyncfd_flush(&ring));
	expect_results(_metadata, &ring, 2, 1);

	post(_metadata, fd, "softirq", 10, 3, 1, 1);
	EXPECT_EQ(2, fdinfo_get(fd, "asyncfd-waiting-copied"));
	EXPECT_EQ(2, fdinfo_get(fd, "asyncfd-copy-limit"));
	post_nospc(_metadata, fd, "hardirq", 20, 1, 1);
	expect_results(_metadata, &ring, 10, 1);
	EXPECT_EQ(1, asyncfd_flush(&ring));
	expect_results(_metadata, &ring, 11, 1);
	EXPECT_EQ(0, asyncfd_flush(&ring));
	expect_results(_metadata, &ring, 12, 1);
	EXPECT_EQ(1, fdinfo_get(fd, "asyncfd-tail"));
	EXPECT_EQ(3, fdinfo_get(fd, "asyncfd-waited-total"));
	EXPECT_EQ(2, fdinfo_get(fd, "asyncfd-waiting-peak"));
	EXPECT_EQ(0, poll_now(fd));
	asyncfd_ring_exit(&ring);
}

#define RACE_COUNT	1000
#define RACE_ROUNDS	(3 * ARRAY_SIZE(contexts))
#define RACE_SECONDS	10

struct poster {
	int tp;		/* opened before the race, see test_producer_post() */
	int fd;
	const char *context;
	struct post_result result;
	int ret;
	bool done;
};

static void *poster_run(void *arg)
{
	struct poster *p = arg;

	p->ret = test_producer_send(p->tp, p->fd, p->context, 1, RACE_COUNT, 1,
				    &p->result);
	__atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * A post that the close cut short stored some results, then got -EBADFD
 * and reported the rest as never handed over.  Only such a post tests anything, so
 * the rounds go on until one happened, within a time bound.
 */
TEST(close_during_post_loses_nothing)
{
	unsigned int raced[ARRAY_SIZE(contexts)] = {};
	int64_t end = mono_ns() + RACE_SECONDS * NSEC_PER_SEC;
	unsigned int i, c, total_raced = 0;
	long long base = vmpin_now_kb();
	struct watchdog wd;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	watchdog_start(_metadata, &wd, WATCHDOG_SECONDS, "close during a post");
	for (i = 0; i < RACE_ROUNDS || !total_raced; i++) {
		struct poster p = { .context = contexts[i % ARRAY_SIZE(contexts)] };
		int64_t deadline = mono_ns() + 5 * NSEC_PER_SEC;
		struct asyncfd_ring ring;
		pthread_t thread;

		if (mono_ns() >= end) {
			ASSERT_NE(0, total_raced) {
				TH_LOG("no close cut a post short in %u rounds", i);
			}
			break;
		}
		/* Room for every result: only the close can stop any. */
		ASSERT_EQ(0, asyncfd_ring_setup(&ring, RACE_COUNT + 1, 0));
		p.fd = ring.fd;
		p.tp = test_producer_open();
		ASSERT_LE(0, p.tp);
		ASSERT_EQ(0, pthread_create(&thread, NULL, poster_run, &p));

		/* Close once the post is under way. */
		while (!__atomic_load_n(&ring.hdr->ikernel, __ATOMIC_ACQUIRE) &&
		       !__atomic_load_n(&p.done, __ATOMIC_ACQUIRE)) {
			ASSERT_LT(mono_ns(), deadline);
			sched_yield();
		}
		ASSERT_EQ(0, close(ring.fd));
		ring.fd = -1;
		ASSERT_EQ(0, pthread_join(thread, NULL));
		close(p.tp);

		ASSERT_EQ(0, p.ret);
		EXPECT_EQ(0, p.result.waited);
		EXPECT_EQ(RACE_COUNT, p.result.stored + p.result.unposted);
		if (p.result.error) {
			EXPECT_EQ(-EBADFD, p.result.error);
			EXPECT_NE(0, p.result.unposted);
			if (p.result.stored) {
				raced[i % ARRAY_SIZE(contexts)]++;
				total_raced++;
			}
		} else {
			EXPECT_EQ(0, p.result.unposted);
		}
		/* The ring is ours again, with exactly what was stored. */
		expect_results(_metadata, &ring, 1, p.result.stored);
		EXPECT_EQ(base, vmpin_settled(base));
		asyncfd_ring_exit(&ring);
	}
	watchdog_stop(&wd);
	for (c = 0; c < ARRAY_SIZE(contexts); c++)
		TH_LOG("%s: %u posts cut short by the close", contexts[c], raced[c]);
	TH_LOG("%u of %u posts cut short", total_raced, i);
}

#define SHARED_COUNT	2000
#define SHARED_SECONDS	2

struct shared_handle {
	int tp;
	int fd;
	int ret;
	unsigned int posts;	/* finished, the reader may count on them */
	bool stop;
};

static void *shared_poster_run(void *arg)
{
	struct shared_handle *sh = arg;
	int64_t end = mono_ns() + SHARED_SECONDS * NSEC_PER_SEC;
	struct post_result r;

	while (!sh->ret && mono_ns() < end) {
		sh->ret = test_producer_send_from(sh->tp, sh->fd, "workqueue",
						  true, false, 1, SHARED_COUNT, 1,
						  &r);
		__atomic_add_fetch(&sh->posts, 1, __ATOMIC_RELEASE);
	}
	__atomic_store_n(&sh->stop, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Two threads share one handle of the test producer: one posts from
 * every CPU at once, the other reads the report all the while, and
 * keeps the ring moving.  Every report it reads after a post finished
 * must be a whole post's totals, never those of a post still adding
 * its CPUs up.  A CPU that finds the copy bound reached ends its part
 * with -ENOSPC, which the totals count as never handed over.
 */
TEST(shared_producer_handle_reports_whole_posts)
{
	unsigned int total = SHARED_COUNT * get_nprocs(), reads = 0;
	struct shared_handle sh = {};
	struct asyncfd_ring ring;
	pthread_t thread;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_setup(&ring, 64, 0));
	sh.fd = ring.fd;
	sh.tp = test_producer_open();
	ASSERT_LE(0, sh.tp);
	ASSERT_EQ(0, pthread_create(&thread, NULL, shared_poster_run, &sh));
	while (!__atomic_load_n(&sh.stop, __ATOMIC_ACQUIRE)) {
		bool after_post = __atomic_load_n(&sh.posts, __ATOMIC_ACQUIRE);
		unsigned int stored, waited, unposted, retries;
		struct asyncfd_result res[64];
		int error, fields;
		char buf[128];
		ssize_t n;

		while (asyncfd_reap(&ring, res, ARRAY_SIZE(res)))
			;
		ASSERT_LE(0, asyncfd_flush(&ring));
		n = pread(sh.tp, buf, sizeof(buf) - 1, 0);
		ASSERT_LT(0, n);
		buf[n] = '\0';
		fields = sscanf(buf, "stored %u waited %u unposted %u retries %u error %d",
				&stored, &waited, &unposted, &retries, &error);
		ASSERT_EQ(5, fields);
		if (!after_post)
			continue;
		reads++;
		ASSERT_TRUE(!error || error == -ENOSPC) {
			TH_LOG("read %u: \"%s\"", reads, buf);
		}
		ASSERT_EQ(0, retries);
		ASSERT_EQ(total, stored + waited + unposted) {
			TH_LOG("read %u: \"%s\"", reads, buf);
		}
	}
	ASSERT_EQ(0, pthread_join(thread, NULL));
	ASSERT_EQ(0, sh.ret);
	TH_LOG("%u posts of %u, %u reports read", sh.posts, total, reads);
	close(sh.tp);
	asyncfd_ring_exit(&ring);
}

/* A ring big enough for every round, so that nothing has to wait. */
FIXTURE(context) {
	struct asyncfd_ring ring;
};

FIXTURE_VARIANT(context) {
	const char *name;
	long res;		/* context bits the producer must report */
};

FIXTURE_VARIANT_ADD(context, process) {
	.name = "process", .res = TEST_PRODUCER_IN_TASK,
};

FIXTURE_VARIANT_ADD(context, kthread) {
	.name = "kthread", .res = TEST_PRODUCER_IN_TASK,
};

FIXTURE_VARIANT_ADD(context, workqueue) {
	.name = "workqueue", .res = TEST_PRODUCER_IN_TASK,
};

FIXTURE_VARIANT_ADD(context, softirq) {
	.name = "softirq", .res = TEST_PRODUCER_IN_SOFTIRQ,
};

FIXTURE_VARIANT_ADD(context, hardirq) {
	.name = "hardirq", .res = TEST_PRODUCER_IN_HARDIRQ,
};

#define CONTEXT_RING	256
#define CONTEXT_COUNT	200

FIXTURE_SETUP(context)
{
	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, CONTEXT_RING, 0));
}

FIXTURE_TEARDOWN(context)
{
	asyncfd_ring_exit(&self->ring);
}

TEST_F(context, results_arrive_in_order_once)
{
	struct asyncfd_result res[CONTEXT_COUNT + 1];
	int ncpus = get_nprocs_conf();
	unsigned int round, i;

	/* Three rounds through a ring of 256: the indices wrap twice. */
	for (round = 0; round < 3; round++) {
		__u64 cookie = 1 + round * CONTEXT_COUNT;

		post(_metadata, self->ring.fd, variant->name, cookie,
		     CONTEXT_COUNT, 7, CONTEXT_COUNT);
		ASSERT_EQ(CONTEXT_COUNT, reap_all(&self->ring, res, CONTEXT_COUNT + 1));
		for (i = 0; i < CONTEXT_COUNT; i++) {
			ASSERT_EQ(cookie + i, res[i].cookie);
			ASSERT_EQ(i, res[i].obj);
			ASSERT_EQ(variant->res, res[i].res);
			ASSERT_LE(0, res[i].res2);
			ASSERT_GT(ncpus, res[i].res2);
		}
	}
	EXPECT_EQ(0, kflags(&self->ring));
	EXPECT_EQ(0, fdinfo_get(self->ring.fd, "asyncfd-waited-total"));
}

/*
 * The copy of a result that waits keeps every field, whatever context
 * posted it.  Catches a copy that loses obj, res or res2, or one made
 * where the context forbids the allocation (lockdep, might_sleep).
 */
TEST_F(context, full_ring_results_wait_then_arrive_in_order)
{
	struct asyncfd_result res[CONTEXT_RING];
	struct asyncfd_ring *ring = &self->ring;
	int ncpus = get_nprocs_conf();
	unsigned int n = 0, i;
	int fd = ring->fd;

	post(_metadata, fd, variant->name, 1, CONTEXT_RING + 44, 16,
	     CONTEXT_RING - 1);
	EXPECT_EQ(ASYNCFD_KF_WAITING, kflags(ring));
	EXPECT_EQ(45, fdinfo_get(fd, "asyncfd-waiting"));
	EXPECT_EQ(45, fdinfo_get(fd, "asyncfd-waiting-copied"));
	expect_results(_metadata, ring, 1, CONTEXT_RING - 1);
	EXPECT_EQ(0, asyncfd_flush(ring));
	EXPECT_EQ(0, kflags(ring));
	n = reap_all(ring, res, ARRAY_SIZE(res));
	ASSERT_EQ(45, n);
	for (i = 0; i < n; i++) {
		ASSERT_EQ(CONTEXT_RING + i, res[i].cookie);
		ASSERT_EQ(CONTEXT_RING - 1 + i, res[i].obj);
		ASSERT_EQ(variant->res, res[i].res);
		ASSERT_LE(0, res[i].res2);
		ASSERT_GT(ncpus, res[i].res2);
	}
	EXPECT_EQ(45, fdinfo_get(fd, "asyncfd-waited-total"));
}

#define STRESS_POSTS	40
#define STRESS_COUNT	25
#define STRESS_BATCH	4

struct stress_producer {
	const char *context;
	int fd;
	int done_fd;		/* an eventfd, to wake the consumer when done */
	__u64 cookie;	/* post i starts at cookie + i * STRESS_COUNT */
	unsigned int stored;
	unsigned int waited;
	unsigned int retries;
	int ret;
	bool done;
};

static void *stress_run(void *arg)
{
	struct stress_producer *p = arg;
	struct post_result pr;
	int tp, i;

	tp = test_producer_open();
	p->ret = tp < 0 ? tp : 0;
	for (i = 0; i < STRESS_POSTS && !p->ret; i++) {
		p->ret = test_producer_send_from(tp, p->fd, p->context, false,
						 true, p->cookie + i * STRESS_COUNT,
						 STRESS_COUNT, STRESS_BATCH, &pr);
		if (!p->ret) {
			p->stored += pr.stored;
			p->waited += pr.waited;
			p->retries += pr.retries;
			p->ret = pr.error;
			if (!p->ret && pr.unposted)
				p->ret = -EIO;
		}
		/* Let the consumer drain, so that the ring is not always full. */
		usleep(1000);
	}
	if (tp >= 0)
		close(tp);
	__atomic_store_n(&p->done, true, __ATOMIC_RELEASE);
	eventfd_write(p->done_fd, 1);
	return NULL;
}

/* One producer per context, all at once, while we consume. */
FIXTURE(stress) {
	struct asyncfd_ring ring;
	int done_fd;
	struct stress_producer producers[ARRAY_SIZE(contexts)];
	pthread_t threads[ARRAY_SIZE(contexts)];
};

FIXTURE_VARIANT(stress) {
	unsigned int size;
};

/*
 * Mostly full: results wait, producers find the bound and retry, and
 * a waiting result may be moved in by a post, a flush or a read.
 */
FIXTURE_VARIANT_ADD(stress, tiny_ring) {
	.size = RING_SIZE,
};

/* Never full: nothing waits. */
FIXTURE_VARIANT_ADD(stress, roomy_ring) {
	.size = ARRAY_SIZE(contexts) * STRESS_POSTS * STRESS_COUNT + 1,
};

FIXTURE_SETUP(stress)
{
	unsigned int i;

	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, variant->size, 0));
	self->done_fd = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, self->done_fd);
	for (i = 0; i < ARRAY_SIZE(contexts); i++) {
		self->producers[i].context = contexts[i];
		self->producers[i].fd = self->ring.fd;
		self->producers[i].done_fd = self->done_fd;
		self->producers[i].cookie = (__u64)(i + 1) << 32;
	}
}

FIXTURE_TEARDOWN(stress)
{
	asyncfd_ring_exit(&self->ring);
	close(self->done_fd);
}

static bool all_done(const struct stress_producer *producers)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(contexts); i++)
		if (!__atomic_load_n(&producers[i].done, __ATOMIC_ACQUIRE))
			return false;
	return true;
}

/*
 * The consumer loop of the ABI against five producers: wait with no
 * timeout, reap, flush when results wait, reap again.  Every result
 * must arrive exactly once and, per producer, in order.  Catches a
 * waiting result lost, duplicated or overtaken when posts from several
 * contexts, flushes and the bound race.
 */
TEST_F_TIMEOUT(stress, every_result_arrives_once_in_order, 120)
{
	unsigned int seen[ARRAY_SIZE(contexts)] = {};
	__u64 next[ARRAY_SIZE(contexts)] = {};
	struct pollfd pfd[] = {
		{ .fd = self->ring.fd, .events = POLLIN },
		{ .fd = self->done_fd, .events = POLLIN },
	};
	unsigned int i, n, waited = 0, flushes = 0;
	struct asyncfd_result res[64];
	struct watchdog wd;
	eventfd_t ended;
	bool done = false;
	int left = 0;

	watchdog_start(_metadata, &wd, 100, "stress consumer");
	for (i = 0; i < ARRAY_SIZE(contexts); i++)
		ASSERT_EQ(0, pthread_create(&self->threads[i], NULL, stress_run,
					    &self->producers[i]));

	while (!done || left || asyncfd_ring_ready(&self->ring)) {
		/* Read before reaping: once all are done, all is posted. */
		done = all_done(self->producers);
		if (!done) {
			ASSERT_LE(1, poll(pfd, ARRAY_SIZE(pfd), -1));
			if (pfd[1].revents & POLLIN)
				ASSERT_EQ(0, eventfd_read(self->done_fd, &ended));
		}
		while ((n = asyncfd_reap(&self->ring, res, ARRAY_SIZE(res)))) {
			for (i = 0; i < n; i++) {
				__u64 p = (res[i].cookie >> 32) - 1;
				__u64 off = res[i].cookie & 0xffffffff;

				ASSERT_GT(ARRAY_SIZE(contexts), p);
				/* Nothing is lost: the very next one. */
				ASSERT_EQ(next[p], off);
				ASSERT_EQ(off % STRESS_COUNT, res[i].obj);
				next[p] = off + 1;
				seen[p]++;
			}
		}
		left = 0;
		if (asyncfd_waiting(&self->ring) || done) {
			left = asyncfd_flush(&self->ring);
			ASSERT_LE(0, left);
			flushes++;
		}
	}
	watchdog_stop(&wd);

	for (i = 0; i < ARRAY_SIZE(contexts); i++) {
		struct stress_producer *p = &self->producers[i];

		ASSERT_EQ(0, pthread_join(self->threads[i], NULL));
		TH_LOG("%s: stored %u waited %u retries %u", p->context,
		       p->stored, p->waited, p->retries);
		EXPECT_EQ(0, p->ret);
		EXPECT_EQ(STRESS_POSTS * STRESS_COUNT, p->stored + p->waited);
		EXPECT_EQ(STRESS_POSTS * STRESS_COUNT, seen[i]);
		waited += p->waited;
	}
	TH_LOG("%u flushes", flushes);
	EXPECT_FALSE(asyncfd_waiting(&self->ring));
	EXPECT_EQ(0, fdinfo_get(self->ring.fd, "asyncfd-waiting"));
	EXPECT_EQ(waited, fdinfo_get(self->ring.fd, "asyncfd-waited-total"));
	if (variant->size > ARRAY_SIZE(contexts) * STRESS_POSTS * STRESS_COUNT)
		EXPECT_EQ(0, waited);
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], EXEC_CHECK_ARG))
		return exec_check(argv);

	/* Supported kernels fault on the NULL ring; others lack the call. */
	if (sys_asyncfd(-1, NULL, 0) < 0 && errno == ENOSYS) {
		ksft_print_header();
		MISSING_EXIT("asyncfd() not supported\n");
	}
	return test_harness_run(argc, argv);
}
