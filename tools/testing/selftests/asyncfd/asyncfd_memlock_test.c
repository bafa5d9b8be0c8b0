// SPDX-License-Identifier: GPL-2.0
/*
 * What a ring pins, and who pays for it: VmPin of the process across
 * create, swap and close, down as close() returns, and RLIMIT_MEMLOCK,
 * charged to the user unless it has CAP_IPC_LOCK, and given back to that
 * user whoever releases the ring, up to the largest ring, which fits a
 * limit of exactly its pages.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <unistd.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "../kselftest_harness.h"
#include "asyncfd_test.h"

#define NOBODY		65534

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
 * Turn this child into user @uid, which has no capabilities and so no
 * CAP_IPC_LOCK, with RLIMIT_MEMLOCK at @pages.
 */
static void become_user(uid_t uid, unsigned int pages)
{
	struct rlimit rl = {
		.rlim_cur = pages * getpagesize(),
		.rlim_max = pages * getpagesize(),
	};

	CHILD_CHECK(setrlimit(RLIMIT_MEMLOCK, &rl) == 0);
	CHILD_CHECK(setresgid(uid, uid, uid) == 0);
	CHILD_CHECK(setresuid(uid, uid, uid) == 0);
	CHILD_CHECK(!have_cap(CAP_IPC_LOCK));
}

/*
 * Run @fn in a child that is user nobody, with RLIMIT_MEMLOCK at
 * @pages.  @fn exits through CHILD_CHECK() when a check fails.  Returns
 * the child's exit status.
 */
static int run_unprivileged(void (*fn)(void), unsigned int pages)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		become_user(NOBODY, pages);
		fn();
		_exit(0);
	}
	return wait_child(pid);
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

/*
 * When close() drops the last reference, nothing else holding the
 * asyncfd, the release runs before close() returns: VmPin is down when
 * read once, right after.  A kernel that left the unpin to a worker
 * could pass a round by luck, not sixteen.
 */
TEST(close_unpins_before_it_returns)
{
	long long base = vmpin_now_kb();
	struct asyncfd_ring ring;
	unsigned int i, size;

	ASSERT_LE(0, base);
	for (i = 0; i < 16; i++) {
		/* 2 to 16384 entries: a header page and 1 to 128 entry pages. */
		size = 2U << (i % 14);
		ASSERT_EQ(0, asyncfd_ring_setup(&ring, size, 0));
		ASSERT_EQ(base + pages_kb(ring_pages(size)), vmpin_now_kb());
		ASSERT_EQ(0, close(ring.fd));
		ring.fd = -1;
		EXPECT_EQ(base, vmpin_now_kb()) {
			TH_LOG("round %u, %u entries", i, size);
		}
		asyncfd_ring_exit(&ring);
	}
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

#define OWNER_UID	65532
#define RECEIVER_UID	65533

/* One byte over the socket: a step of the other user done. */
static void signal_peer(int sock, char step)
{
	CHILD_CHECK(write(sock, &step, 1) == 1);
}

static void wait_peer(int sock, char step)
{
	char got = 0;

	CHILD_CHECK(read(sock, &got, 1) == 1 && got == step);
}

/* The user who registers the ring, and is charged for it. */
static void owner_child(int sock)
{
	unsigned int pages = ring_pages(RING_SIZE);
	struct asyncfd_ring ring, again, more;

	become_user(OWNER_UID, pages);
	CHILD_CHECK(asyncfd_ring_setup(&ring, RING_SIZE, 0) == 0);
	CHILD_CHECK(vmpin_now_kb() == pages_kb(pages));
	/* The limit holds exactly one ring. */
	CHILD_CHECK(asyncfd_ring_setup(&again, RING_SIZE, 0) == -ENOMEM);

	CHILD_CHECK(send_fd(sock, ring.fd) == 0);
	CHILD_CHECK(close(ring.fd) == 0);
	ring.fd = -1;
	/* The receiver's descriptor keeps the ring pinned, on our account. */
	CHILD_CHECK(vmpin_now_kb() == pages_kb(pages));
	CHILD_CHECK(asyncfd_ring_setup(&again, RING_SIZE, 0) == -ENOMEM);
	signal_peer(sock, 'c');

	/* The receiver's close released the ring, before it told us. */
	wait_peer(sock, 'r');
	CHILD_CHECK(vmpin_now_kb() == 0);
	CHILD_CHECK(asyncfd_ring_setup(&again, RING_SIZE, 0) == 0);
	CHILD_CHECK(asyncfd_ring_setup(&more, RING_SIZE, 0) == -ENOMEM);
	asyncfd_ring_exit(&again);
	asyncfd_ring_exit(&ring);
}

/* The user who gets the asyncfd, holds it last and releases it. */
static void receiver_child(int sock)
{
	unsigned int pages = ring_pages(RING_SIZE);
	struct asyncfd_ring own, more;
	int fd;

	become_user(RECEIVER_UID, pages);
	fd = recv_fd(sock);
	CHILD_CHECK(fd >= 0);
	CHILD_CHECK(is_asyncfd(fd));
	/* Another user's ring costs us nothing: one of our own still fits. */
	CHILD_CHECK(vmpin_now_kb() == 0);
	CHILD_CHECK(asyncfd_ring_setup(&own, RING_SIZE, 0) == 0);
	CHILD_CHECK(asyncfd_ring_setup(&more, RING_SIZE, 0) == -ENOMEM);
	asyncfd_ring_exit(&own);

	wait_peer(sock, 'c');
	/* Ours is the last reference: the release runs here, as this user. */
	CHILD_CHECK(close(fd) == 0);
	CHILD_CHECK(vmpin_now_kb() == 0);
	/* Our budget is as it was: exactly one ring. */
	CHILD_CHECK(asyncfd_ring_setup(&own, RING_SIZE, 0) == 0);
	CHILD_CHECK(asyncfd_ring_setup(&more, RING_SIZE, 0) == -ENOMEM);
	asyncfd_ring_exit(&own);
	signal_peer(sock, 'r');
}

/* Run @fn(@sock) in a child, which has no use for @other; its pid. */
static pid_t fork_peer(void (*fn)(int sock), int sock, int other)
{
	pid_t pid = fork();

	if (!pid) {
		close(other);
		fn(sock);
		_exit(0);
	}
	return pid;
}

/*
 * A ring is charged to the user who registered it, and the charge goes
 * back to that user whoever releases the ring: here another user, who
 * got the asyncfd through SCM_RIGHTS and closed it last.  Each user's
 * RLIMIT_MEMLOCK allows exactly one ring, so what a user may still
 * register shows its locked_vm, which the kernel shows nowhere else.
 * Catches pages uncharged from the releasing user (the owner stays
 * charged, and the receiver's count drops below zero, which refuses
 * every ring after), charged to whoever holds the asyncfd, or taken off
 * the releasing process's VmPin instead of the owner's.
 */
TEST(memlock_charge_returns_to_owner_across_users)
{
	int sv[2], owner_status, receiver_status;
	pid_t owner, receiver;

	if (geteuid())
		SKIP(return, "needs root to become two other users");
	/* Stream: a child that dies leaves its peer reading EOF. */
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
	owner = fork_peer(owner_child, sv[0], sv[1]);
	ASSERT_LE(0, owner);
	receiver = fork_peer(receiver_child, sv[1], sv[0]);
	ASSERT_LE(0, receiver);
	close(sv[0]);
	close(sv[1]);
	owner_status = wait_child(owner);
	receiver_status = wait_child(receiver);
	EXPECT_EQ(0, owner_status);
	EXPECT_EQ(0, receiver_status);
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

int main(int argc, char **argv)
{
	require_asyncfd();
	return test_harness_run(argc, argv);
}
