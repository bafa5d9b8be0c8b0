// SPDX-License-Identifier: GPL-2.0
/*
 * Closes and header rewrites that race producers and pollers: a close
 * under a blocked poller, the header words that the kernel writes,
 * scribbled over while results stream in, and a close or a swap in the
 * middle of posts from every context on every CPU.  Kept apart so that
 * a run under KCSAN can take them whole.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>
#include <sys/sysinfo.h>

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

/*
 * A flood: posts from every context the test producer has, kthreads and
 * work on every CPU, and the process context, a soft interrupt and a
 * hard interrupt on the CPU the test is not on, each job posting until
 * the asyncfd goes away, while the test closes it or swaps its ring.
 * Jobs have more to post than they ever can and retry what finds no
 * room, so that a job ends only when the kernel tells it the asyncfd is
 * gone: that every job ended so, -EBADFD, having just stored results,
 * proves it was posting when the close came.
 *
 * A close or swap that unmapped a ring while producers could still
 * store would fault only on a store to a page that the producer's CPU
 * has no TLB entry for; through a stale entry, the store would land
 * unseen.  So the close and the swap under test come while the stores
 * move through a ring just swapped in, and big enough to take them all
 * until then: every batch lands in pages that no CPU has touched
 * through the kernel's new mapping yet.
 */
#define FLOOD_BATCH	64		/* half a page */
#define FLOOD_FIRST	4096		/* entries of the ring they start in */
#define FLOOD_FRESH	(2U << 20)	/* entries of each fresh ring: 64 MiB */
#define FLOOD_SECONDS	20		/* for every job to store a result */
#define FLOOD_TIMEOUT	120
#define CLOSER_CPU	0
#define OTHER_CPU	1

/*
 * Kthreads and work on every CPU; the rest from a writer on the other
 * CPU, where a process post runs, and where a soft interrupt job and an
 * hrtimer stay once started: queued and armed from there.
 */
static const struct {
	const char *context;
	bool all;
	long res;
} flood_posts[] = {
	{ "kthread", true, TEST_PRODUCER_IN_TASK },
	{ "workqueue", true, TEST_PRODUCER_IN_TASK },
	{ "softirq", false, TEST_PRODUCER_IN_SOFTIRQ },
	{ "hardirq", false, TEST_PRODUCER_IN_HARDIRQ },
	{ "process", false, TEST_PRODUCER_IN_TASK },
};

#define NR_FLOOD_WRITERS	ARRAY_SIZE(flood_posts)

/* A thread that writes one post command, for one job or one per CPU. */
struct flood_writer {
	int tp;
	int fd;
	unsigned int post;	/* in flood_posts[] */
	__u64 cookie;
	unsigned int count;	/* per job */
	unsigned int first_job, nr_jobs;
	struct post_result out;
	int ret;
	bool done;
	pthread_t thread;
};

static void *flood_writer_run(void *arg)
{
	struct flood_writer *w = arg;
	bool all = flood_posts[w->post].all;

	w->ret = all ? 0 : pin_to_cpu(OTHER_CPU);
	if (!w->ret)
		w->ret = test_producer_send_from(w->tp, w->fd,
						 flood_posts[w->post].context,
						 all, true, w->cookie, w->count,
						 FLOOD_BATCH, &w->out);
	__atomic_store_n(&w->done, true, __ATOMIC_RELEASE);
	return NULL;
}

/*
 * Job j posts cookies 1 + j * per_job on, from the context whose bit is
 * job_res[j], on CPU job_cpu[j].  The k-th job of a post on every
 * CPU runs on the k-th online CPU, which is CPU k: all are online.
 * rings[0] is the one the jobs start in; the others are swapped in.
 */
struct flood {
	struct asyncfd_ring rings[3];
	struct flood_writer writers[NR_FLOOD_WRITERS];
	unsigned int nr_started;
	unsigned int nr_jobs;
	unsigned int per_job;		/* results: more than a job can post */
	long long vmpin_base;
	unsigned int *got;		/* per job, results checked so far */
	unsigned int *before;		/* per job, got[] before the last ring */
	long *job_res;
	int *job_cpu;
	bool *seen;
};

FIXTURE(flood) {
	struct flood f;
};

FIXTURE_SETUP(flood)
{
	struct flood *f = &self->f;
	int nr_cpus = get_nprocs();
	unsigned int w, k, j = 0;

	for (k = 0; k < ARRAY_SIZE(f->rings); k++)
		f->rings[k].fd = -1;
	if (!test_producer_available())
		MISSING(return, NO_PRODUCER);
	if (nr_cpus < 2 || nr_cpus != get_nprocs_conf())
		SKIP(return, "needs 2 CPUs or more, all online");
	if (geteuid())
		SKIP(return, "needs root to run ahead of the producers");
	ASSERT_EQ(0, pin_to_cpu(CLOSER_CPU));

	f->nr_jobs = 2 * nr_cpus + NR_FLOOD_WRITERS - 2;
	/* A post takes at most 4 Gi results, over all its CPUs. */
	f->per_job = UINT32_MAX / nr_cpus < (1U << 30) ?
		     UINT32_MAX / nr_cpus : (1U << 30);
	f->got = calloc(f->nr_jobs, sizeof(*f->got));
	f->before = calloc(f->nr_jobs, sizeof(*f->before));
	f->job_res = calloc(f->nr_jobs, sizeof(*f->job_res));
	f->job_cpu = calloc(f->nr_jobs, sizeof(*f->job_cpu));
	f->seen = calloc(f->nr_jobs, sizeof(*f->seen));
	ASSERT_NE(NULL, f->got);
	ASSERT_NE(NULL, f->before);
	ASSERT_NE(NULL, f->job_res);
	ASSERT_NE(NULL, f->job_cpu);
	ASSERT_NE(NULL, f->seen);
	for (w = 0; w < NR_FLOOD_WRITERS; w++) {
		struct flood_writer *fw = &f->writers[w];
		bool all = flood_posts[w].all;

		*fw = (struct flood_writer){
			.tp = -1,
			.post = w,
			.cookie = 1 + (__u64)j * f->per_job,
			.count = f->per_job,
			.first_job = j,
			.nr_jobs = all ? nr_cpus : 1,
		};
		for (k = 0; k < fw->nr_jobs; k++, j++) {
			f->job_res[j] = flood_posts[w].res;
			f->job_cpu[j] = all ? k : OTHER_CPU;
		}
	}
	ASSERT_EQ(f->nr_jobs, j);
	f->vmpin_base = vmpin_now_kb();
	ASSERT_LE(0, f->vmpin_base);
	ASSERT_EQ(0, asyncfd_ring_setup(&f->rings[0], FLOOD_FIRST, 0));
}

FIXTURE_TEARDOWN(flood)
{
	struct flood *f = &self->f;
	unsigned int i;

	/* A failed test may leave jobs posting: the close ends them. */
	for (i = 0; i < ARRAY_SIZE(f->rings); i++)
		asyncfd_ring_exit(&f->rings[i]);
	for (i = 0; i < f->nr_started; i++)
		pthread_join(f->writers[i].thread, NULL);
	for (i = 0; i < NR_FLOOD_WRITERS; i++)
		if (f->writers[i].tp >= 0)
			close(f->writers[i].tp);
	free(f->got);
	free(f->before);
	free(f->job_res);
	free(f->job_cpu);
	free(f->seen);
}

/* Map fresh ring @i, its pages faulted in so that a swap only pins them. */
static void flood_map(struct __test_metadata *_metadata, struct flood *f,
		      unsigned int i)
{
	struct asyncfd_ring *ring = &f->rings[i];

	ASSERT_EQ(0, asyncfd_ring_map(ring, FLOOD_FRESH));
	memset(ring->entries, 0, FLOOD_FRESH * sizeof(*ring->entries));
}

static void flood_start(struct __test_metadata *_metadata, struct flood *f)
{
	struct sched_param param = { .sched_priority = 1 };
	unsigned int w;

	/* Every handle first: none may take the number of a closed asyncfd. */
	for (w = 0; w < NR_FLOOD_WRITERS; w++) {
		f->writers[w].tp = test_producer_open();
		ASSERT_LE(0, f->writers[w].tp);
		f->writers[w].fd = f->rings[0].fd;
	}
	for (w = 0; w < NR_FLOOD_WRITERS; w++) {
		ASSERT_EQ(0, pthread_create(&f->writers[w].thread, NULL,
					    flood_writer_run, &f->writers[w]));
		f->nr_started++;
	}
	/*
	 * Ahead of the jobs on this CPU, the writers left behind: a scan
	 * that fell behind the stores would see the last job only once
	 * the ring was nearly full.
	 */
	ASSERT_EQ(0, sched_setscheduler(0, SCHED_FIFO, &param));
}

static void flood_join(struct __test_metadata *_metadata, struct flood *f)
{
	while (f->nr_started)
		ASSERT_EQ(0, pthread_join(f->writers[--f->nr_started].thread,
					  NULL));
}

/* The job that posted @res, or -1 if none did. */
static int flood_job(struct flood *f, const struct asyncfd_result *res)
{
	__u64 job = (res->cookie - 1) / f->per_job;

	return res->cookie && job < f->nr_jobs ? (int)job : -1;
}

/*
 * A result: of a job, the one after the last of that job, whichever
 * ring that was in, from the job's context and its CPU.
 */
static void flood_take(struct __test_metadata *_metadata, struct flood *f,
		       const struct asyncfd_result *res)
{
	int job = flood_job(f, res);

	ASSERT_LE(0, job) {
		TH_LOG("cookie %llu, posted by no job",
		       (unsigned long long)res->cookie);
	}
	ASSERT_EQ(f->got[job], (res->cookie - 1) % f->per_job) {
		TH_LOG("job %d: a result lost, twice or out of order", job);
	}
	ASSERT_EQ(f->got[job], res->obj);
	ASSERT_EQ(f->job_res[job], res->res);
	ASSERT_EQ(f->job_cpu[job], res->res2) {
		TH_LOG("job %d posted from the wrong CPU", job);
	}
	f->got[job]++;
}

/*
 * Reap all that @ring holds, and with @flush what waits in the kernel
 * too, as a consumer does; returns how many.
 */
static unsigned int flood_reap(struct __test_metadata *_metadata,
			       struct flood *f, struct asyncfd_ring *ring,
			       bool flush)
{
	struct asyncfd_result res[256];
	unsigned int n, i, total = 0;

	for (;;) {
		while ((n = asyncfd_reap(ring, res, ARRAY_SIZE(res)))) {
			for (i = 0; i < n; i++)
				flood_take(_metadata, f, &res[i]);
			total += n;
		}
		if (!flush || !asyncfd_waiting(ring))
			return total;
		ASSERT_LE(0, asyncfd_flush(ring));
	}
}

/* Fail if a writer is done: a job ended before the close. */
static void flood_check_posting(struct __test_metadata *_metadata,
				struct flood *f)
{
	unsigned int w;

	for (w = 0; w < NR_FLOOD_WRITERS; w++) {
		const struct flood_writer *fw = &f->writers[w];

		ASSERT_FALSE(__atomic_load_n(&fw->done, __ATOMIC_ACQUIRE)) {
			TH_LOG("%s: done before the close, %d, error %d",
			       flood_posts[w].context, fw->ret, fw->out.error);
		}
	}
}

/* Consume the first ring until every job has stored a result. */
static void flood_wait_started(struct __test_metadata *_metadata,
			       struct flood *f)
{
	int64_t deadline = mono_ns() + FLOOD_SECONDS * NSEC_PER_SEC;
	unsigned int j = 0;

	while (j < f->nr_jobs) {
		if (flood_reap(_metadata, f, &f->rings[0], true))
			continue;
		for (j = 0; j < f->nr_jobs && f->got[j]; j++)
			;
		flood_check_posting(_metadata, f);
		ASSERT_LT(mono_ns(), deadline) {
			TH_LOG("job %u never stored a result", j);
		}
		usleep(1000);
	}
}

/*
 * The process job posts from its writer's write(), when the scheduler
 * lets the writer run beside the kthread, work and interrupt jobs of its
 * CPU, and can go a long while without a store.  Its -EBADFD shows that
 * it was posting when the close came; the kernel-context jobs, which
 * must store into every fresh ring, show that posts landed in the window.
 */
static bool flood_must_store(const struct flood *f, unsigned int job)
{
	unsigned int w;

	for (w = 0; w < NR_FLOOD_WRITERS; w++) {
		const struct flood_writer *fw = &f->writers[w];

		if (job >= fw->first_job && job < fw->first_job + fw->nr_jobs)
			return strcmp(flood_posts[w].context, "process");
	}
	return true;
}

/*
 * Wait until every job that must has stored a result in @ring, which is
 * not consumed: it has room for all, and the stores move through it.
 */
static void flood_wait_storing(struct __test_metadata *_metadata,
			       struct flood *f, const struct asyncfd_ring *ring)
{
	int64_t deadline = mono_ns() + FLOOD_SECONDS * NSEC_PER_SEC;
	unsigned int missing = 0, scanned = 0;
	bool late;
	int job;

	memset(f->seen, 0, f->nr_jobs * sizeof(*f->seen));
	for (job = 0; job < (int)f->nr_jobs; job++)
		missing += flood_must_store(f, job);
	for (;;) {
		unsigned int tail = __atomic_load_n(&ring->hdr->ikernel,
						    __ATOMIC_ACQUIRE);

		for (; scanned < tail; scanned++) {
			job = flood_job(f, &ring->entries[scanned]);
			if (job >= 0 && !f->seen[job]) {
				f->seen[job] = true;
				missing -= flood_must_store(f, job);
			}
		}
		if (!missing)
			return;
		flood_check_posting(_metadata, f);
		/* Leave room for the stores that come before the close. */
		late = mono_ns() >= deadline || tail >= FLOOD_FRESH / 2;
		for (job = 0; late && job < (int)f->nr_jobs; job++) {
			ASSERT_TRUE(f->seen[job] || !flood_must_store(f, job)) {
				TH_LOG("job %d stored nothing in the new ring, the others %u",
				       job, tail);
			}
		}
		usleep(1000);
	}
}

/*
 * Swap ring @i for fresh ring @i + 1, which the kernel must have given
 * back before the swap returns.  What ring @i holds is taken later.
 */
static void flood_swap(struct __test_metadata *_metadata, struct flood *f,
		       unsigned int i)
{
	ASSERT_EQ(0, asyncfd_ring_swap(&f->rings[i], &f->rings[i + 1]));
	EXPECT_EQ(f->vmpin_base + pages_kb(ring_pages(FLOOD_FRESH)),
		  vmpin_now_kb());
}

/*
 * Take what @ring holds, once the jobs are over: each job's results go
 * on from where the rings before left off.  A ring swapped in fresh
 * never ran out of room, or the stores would have reached pages touched
 * before, and nothing waited in the kernel while it was in use; every
 * job stored into it.
 */
static void flood_take_ring(struct __test_metadata *_metadata,
			    struct flood *f, struct asyncfd_ring *ring,
			    bool fresh)
{
	unsigned int tail = ring->hdr->ikernel, j;

	memcpy(f->before, f->got, f->nr_jobs * sizeof(*f->got));
	flood_reap(_metadata, f, ring, false);
	if (!fresh)
		return;
	ASSERT_GT(FLOOD_FRESH - 1, tail) {
		TH_LOG("the ring filled before the jobs were cut off it");
	}
	EXPECT_EQ(0, kflags(ring));
	for (; tail < FLOOD_FRESH; tail++) {
		ASSERT_EQ(0, ring->entries[tail].cookie) {
			TH_LOG("slot %u: a result past the kernel's index", tail);
		}
	}
	for (j = 0; j < f->nr_jobs; j++) {
		if (!flood_must_store(f, j))
			continue;
		EXPECT_LT(f->before[j], f->got[j]) {
			TH_LOG("job %u stored nothing in a fresh ring", j);
		}
	}
}

/*
 * Every job was cut short by the close, -EBADFD, and handed over
 * exactly what the rings hold: nothing waited in the kernel at the end.
 */
static void flood_check_writers(struct __test_metadata *_metadata,
				struct flood *f)
{
	unsigned int w, j;

	for (w = 0; w < NR_FLOOD_WRITERS; w++) {
		const struct flood_writer *fw = &f->writers[w];
		unsigned int handed = 0;

		ASSERT_EQ(0, fw->ret);
		for (j = fw->first_job; j < fw->first_job + fw->nr_jobs; j++) {
			TH_LOG("%s on CPU %d: %u results, %u in the last ring",
			       flood_posts[w].context, f->job_cpu[j],
			       f->got[j], f->got[j] - f->before[j]);
			handed += f->got[j];
		}
		EXPECT_EQ(-EBADFD, fw->out.error);
		EXPECT_EQ(handed, fw->out.stored + fw->out.waited);
		EXPECT_EQ(fw->nr_jobs * f->per_job - handed, fw->out.unposted);
	}
}

/*
 * Flood ring 0 until every job has stored a result, then swap in fresh
 * rings 1 to @last in turn, each once every kernel-context job stores
 * into the one before, and close the asyncfd once every one stores into
 * the last.
 * Then take every ring in turn.  The jobs hold the context, not the
 * file, so the release ran in close(), and unpinned the ring before it
 * returned.
 */
static void flood_run(struct __test_metadata *_metadata, struct flood *f,
		      unsigned int last)
{
	unsigned int i;

	for (i = 1; i <= last; i++)
		flood_map(_metadata, f, i);
	flood_start(_metadata, f);
	flood_wait_started(_metadata, f);
	for (i = 1; i <= last; i++) {
		flood_swap(_metadata, f, i - 1);
		flood_wait_storing(_metadata, f, &f->rings[i]);
	}
	ASSERT_EQ(0, close(f->rings[last].fd));
	f->rings[last].fd = -1;
	EXPECT_EQ(f->vmpin_base, vmpin_now_kb());
	flood_join(_metadata, f);
	for (i = 0; i <= last; i++)
		flood_take_ring(_metadata, f, &f->rings[i], i > 0);
	flood_check_writers(_metadata, f);
}

/*
 * Close in the middle of the flood.  What was stored stays in the ring,
 * which is ours again: exactly what the jobs report handed over, and
 * not a result more.
 */
TEST_F_TIMEOUT(flood, close_during_post_loses_nothing, FLOOD_TIMEOUT)
{
	flood_run(_metadata, &self->f, 1);
}

/*
 * Swap in the middle of the flood, from one fresh ring to the next,
 * then close.  Each job's results up to the swap are in the old ring,
 * the rest in the new one, none lost or twice, and every kernel-context
 * job stored into both: the swap fell inside their posts.
 */
TEST_F_TIMEOUT(flood, swap_during_post_loses_nothing, FLOOD_TIMEOUT)
{
	flood_run(_metadata, &self->f, 2);
}

int main(int argc, char **argv)
{
	require_asyncfd();
	return test_harness_run(argc, argv);
}
