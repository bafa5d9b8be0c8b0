// SPDX-License-Identifier: GPL-2.0
/*
 * asyncfd(2) as a system call: what creation, swap and flush accept and
 * refuse, in the documented order and without leaking a descriptor or a
 * pinned page; the file it returns, which is read-only, close-on-exec on
 * request and described in fdinfo; and the interface of the test
 * producer, which the other programs post through.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>

#include "../kselftest_harness.h"
#include "asyncfd_test.h"

#define EXEC_CHECK_ARG	"--exec-check"

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
		execl("/proc/self/exe", "asyncfd_api_test", EXEC_CHECK_ARG,
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

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], EXEC_CHECK_ARG))
		return exec_check(argv);
	require_asyncfd();
	return test_harness_run(argc, argv);
}
