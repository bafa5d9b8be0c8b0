// SPDX-License-Identifier: GPL-2.0
/*
 * The ring protocol as the kernel keeps it: one slot always stays empty,
 * results that find no room wait in the kernel and enter in order, the
 * copies that wait are bounded, and the header words that userspace may
 * rewrite, or that the kernel writes, never steer where it stores.
 */

#define _GNU_SOURCE
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "asyncfd_test.h"

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

int main(int argc, char **argv)
{
	require_asyncfd();
	return test_harness_run(argc, argv);
}
