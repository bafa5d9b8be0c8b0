// SPDX-License-Identifier: GPL-2.0
/*
 * Closes and header rewrites that race producers and pollers: a close
 * under a blocked poller, the header words that the kernel writes,
 * scribbled over while results stream in, and a close in the middle of
 * a post.  Kept apart so that a run under KCSAN can take them whole.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "asyncfd_test.h"

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
	/*
	 * The poller dropped the last reference as its poll() returned, and
	 * the release ran before it got back to user space: before it could
	 * exit, and we join it.
	 */
	EXPECT_EQ(base, vmpin_now_kb());
	asyncfd_ring_exit(&ring);
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

int main(int argc, char **argv)
{
	require_asyncfd();
	return test_harness_run(argc, argv);
}
