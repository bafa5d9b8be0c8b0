// SPDX-License-Identifier: GPL-2.0
/*
 * KAIO completions delivered through asyncfd (IOCB_FLAG_ASYNCFD).
 *
 * Reads go to a regular file, which completes them inside io_submit(),
 * and to null_blk devices whose irqmode makes them complete in the
 * submitter's context, in softirq or in hard interrupt context.  Every
 * test counts results by cookie: each request must show up exactly
 * once, in the asyncfd ring or, when the ring refused it and counted
 * it in overflow, through io_getevents() once claimed from there.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "asyncfd_ring.h"
#include "kaio.h"
#include "required.h"

/*
 * Requests per queue depth in the exactly-once test: 4 depths and 4
 * targets make 100000 in all.  ASYNCFD_KAIO_REQUESTS overrides it.
 */
#define DEFAULT_REQUESTS 6250

static unsigned int requests_per_depth(void)
{
	const char *env = getenv("ASYNCFD_KAIO_REQUESTS");

	return env ? strtoul(env, NULL, 0) : DEFAULT_REQUESTS;
}

/*
 * Sum of the per-CPU counts that start at @p and end at the first word
 * that is not a number, as on a line of /proc/interrupts or softirqs.
 */
static unsigned long long sum_counts(const char *p)
{
	unsigned long long sum = 0;
	char *end;

	for (;;) {
		unsigned long long n = strtoull(p, &end, 10);

		if (end == p)
			return sum;
		sum += n;
		p = end;
	}
}

/*
 * The counts of the line of /proc/interrupts or /proc/softirqs that
 * starts with "@key:" or, for an interrupt known by number, ends with
 * " @key".  "BLOCK" of /proc/softirqs counts block completion softirqs;
 * the local timer interrupts that run hrtimers are "LOC" on x86 and the
 * per-CPU "arch_timer" interrupt on arm64.
 */
static unsigned long long irq_count(const char *file, const char *key)
{
	unsigned long long sum = 0;
	size_t len = strlen(key);
	char line[4096], *p, *colon;
	FILE *f = fopen(file, "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		size_t n = strcspn(line, "\n");

		line[n] = '\0';
		p = line + strspn(line, " ");
		colon = strchr(p, ':');
		if (!colon)
			continue;
		if ((colon == p + len && !strncmp(p, key, len)) ||
		    (n > len && line[n - len - 1] == ' ' &&
		     !strcmp(line + n - len, key))) {
			sum = sum_counts(colon + 1);
			break;
		}
	}
	fclose(f);
	return sum;
}

#if defined(__aarch64__)
#define TIMER_IRQ	"arch_timer"
#else
#define TIMER_IRQ	"LOC"
#endif

/*
 * Counts over a stretch of a test: irq_window_start() takes the
 * counters, irq_window_stop() turns them into what happened since.
 */
struct irq_window {
	unsigned long long block;	/* BLOCK softirqs */
	unsigned long long timer;	/* local timer interrupts */
	double seconds;
};

static void irq_window_start(struct irq_window *w)
{
	w->block = irq_count("/proc/softirqs", "BLOCK");
	w->timer = irq_count("/proc/interrupts", TIMER_IRQ);
	w->seconds = nullb_now();
}

static void irq_window_stop(struct irq_window *w)
{
	w->seconds = nullb_now() - w->seconds;
	w->block = irq_count("/proc/softirqs", "BLOCK") - w->block;
	w->timer = irq_count("/proc/interrupts", TIMER_IRQ) - w->timer;
}

/*
 * At queue depth 1 each read completes before the next is submitted, so
 * no two completions share an interrupt.  With irqmode 1 each raises a
 * BLOCK softirq: null_blk's one hardware queue serves both CPUs, and
 * blk-mq completes its requests in that softirq.  Ticks raise none, so
 * the count is the reads' own.
 *
 * With irqmode 2 each read waits for an hrtimer of its own, which fires
 * in a local timer interrupt.  Scheduler ticks are local timer
 * interrupts too: once a read takes half a tick, 2 ms at 250 Hz, as it
 * can under TCG and KASAN, they alone reach reads / 2.  So the ticks
 * expected in the run come off first, at the rate that a depth 1 loop
 * with no timer of its own met (@tick_rate, from busy_tick_rate()):
 * what is left are the reads' own interrupts.
 *
 * Runs showed exactly one per read; half the reads leaves room for a
 * timer that an interrupt for something else expired on the way, and
 * for a tick rate a little under the control's.  Other work only adds
 * to the counts.  Deeper queues share interrupts: some BLOCK softirqs
 * must show there.  For irqmode 2 nothing is checked there, as ticks
 * alone would meet any floor the sharing leaves.
 */
static void expect_completion_context(struct __test_metadata *_metadata,
				      unsigned int irqmode, unsigned int depth,
				      unsigned int reads,
				      const struct irq_window *irqs,
				      double tick_rate)
{
	double ticks = tick_rate * irqs->seconds;
	long long excess = irqs->timer - (long long)(ticks + 0.5);

	if (irqmode == 1) {
		EXPECT_LE(depth == 1 ? reads / 2 : 1, irqs->block) {
			TH_LOG("depth %u: %llu BLOCK softirqs for %u reads",
			       depth, irqs->block, reads);
		}
	}
	if (irqmode != 2 || depth != 1)
		return;
	ksft_print_msg("depth 1: %.0f ticks expected at %.1f/s\n", ticks,
		       tick_rate);
	ksft_print_msg("depth 1: %lld timer interrupts beyond them\n", excess);
	EXPECT_LE(reads / 2, excess) {
		TH_LOG("depth 1: %lld timer interrupts beyond ticks for %u reads",
		       excess, reads);
	}
}

static int make_file(const char *name)
{
	char block[KAIO_BLOCK];
	int fd, i;

	fd = open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	unlink(name);
	memset(block, 0xa5, sizeof(block));
	for (i = 0; i < KAIO_SPAN_BLOCKS; i++) {
		if (write(fd, block, sizeof(block)) != sizeof(block)) {
			close(fd);
			return -1;
		}
	}
	return fd;
}

FIXTURE(kaio) {
	aio_context_t aio;
	struct asyncfd_ring ring;
	struct nullb nb;
	struct nullb control;	/* busy_tick_rate()'s, for teardown */
	int fd;
};

/* Where the reads go, and so where their completions run. */
FIXTURE_VARIANT(kaio) {
	bool file;		/* a regular file: inside io_submit() */
	unsigned int irqmode;	/* else null_blk: 0 inline, 1 softirq, 2 hardirq */
	unsigned long completion_nsec;
};

FIXTURE_VARIANT_ADD(kaio, file) {
	.file = true,
};

FIXTURE_VARIANT_ADD(kaio, nullb_inline) {
	.irqmode = 0,
};

FIXTURE_VARIANT_ADD(kaio, nullb_softirq) {
	.irqmode = 1,
};

FIXTURE_VARIANT_ADD(kaio, nullb_hardirq) {
	.irqmode = 2,
	.completion_nsec = 10000,
};

FIXTURE_SETUP(kaio)
{
	int ret;

	self->fd = -1;
	memset(&self->nb, 0, sizeof(self->nb));
	memset(&self->control, 0, sizeof(self->control));
	ret = asyncfd_ring_setup(&self->ring, 1024, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	ret = sys_io_setup(KAIO_MAX_DEPTH * 2, &self->aio);
	if (ret && errno == ENOSYS)
		MISSING(return, "kernel AIO not supported");
	ASSERT_EQ(0, ret);

	if (variant->file) {
		self->fd = make_file("/tmp/asyncfd_kaio_test");
		ASSERT_LE(0, self->fd);
		return;
	}
	self->fd = nullb_open(&self->nb, "asyncfd_kaio", variant->irqmode,
			      variant->completion_nsec);
	if (self->fd == -ENOENT)
		MISSING(return, "null_blk configfs not available");
	ASSERT_LE(0, self->fd);
}

FIXTURE_TEARDOWN(kaio)
{
	if (self->aio)
		sys_io_destroy(self->aio);
	if (self->fd >= 0)
		close(self->fd);
	nullb_destroy(&self->nb);
	nullb_destroy(&self->control);
	asyncfd_ring_exit(&self->ring);
}

/*
 * Local timer interrupts per second, over a second or so, of a depth 1
 * loop that makes no timer interrupt of its own: reads of a null_blk
 * device that completes them inside io_submit().  What it measures is
 * the tick of the CPU that the loop keeps busy, and whatever else the
 * machine does meanwhile.
 */
#define TICK_CONTROL_SECONDS	1.0
#define TICK_CONTROL_READS	100	/* per kaio_run(), until time is up */

static double busy_tick_rate(struct __test_metadata *_metadata,
			     aio_context_t aio, struct asyncfd_ring *ring,
			     struct nullb *nb)
{
	struct kaio_run *run = malloc(sizeof(*run));
	struct irq_window irqs;
	unsigned int reads = 0;
	double deadline, rate;
	int fd;

	ASSERT_NE(NULL, run);
	fd = nullb_open(nb, "asyncfd_kaio_ticks", 0, 0);
	ASSERT_LE(0, fd);
	deadline = nullb_now() + TICK_CONTROL_SECONDS;
	irq_window_start(&irqs);
	do {
		ASSERT_EQ(0, kaio_run_init(run, aio, fd, ring, 1,
					   TICK_CONTROL_READS));
		ASSERT_EQ(0, kaio_run(run)) {
			TH_LOG("tick control: %s failed: %s after %u of %u",
			       run->failed, strerror(run->error),
			       run->completed, run->total);
		}
		ASSERT_EQ(0, kaio_run_missing(run));
		reads += run->total;
		kaio_run_exit(run);
	} while (nullb_now() < deadline);
	irq_window_stop(&irqs);
	close(fd);
	nullb_destroy(nb);
	free(run);
	rate = irqs.timer / irqs.seconds;
	ksft_print_msg("tick control: %u inline reads at depth 1 in %.2f s\n",
		       reads, irqs.seconds);
	ksft_print_msg("tick control: %llu timer interrupts, %.1f/s\n",
		       irqs.timer, rate);
	return rate;
}

/* Each request completes once, through the ring, at every depth. */
TEST_F_TIMEOUT(kaio, exactly_once_at_each_depth, 600)
{
	static const unsigned int depths[] = { 1, 8, 32, 128 };
	unsigned int per_depth = requests_per_depth();
	struct kaio_run *run = malloc(sizeof(*run));
	unsigned int i;

	ASSERT_NE(NULL, run);
	for (i = 0; i < ARRAY_SIZE(depths); i++) {
		struct irq_window irqs;
		double tick_rate = 0;

		/* Right before the run that it is the control for. */
		if (variant->irqmode == 2 && depths[i] == 1)
			tick_rate = busy_tick_rate(_metadata, self->aio,
						   &self->ring, &self->control);
		irq_window_start(&irqs);
		ASSERT_EQ(0, kaio_run_init(run, self->aio, self->fd, &self->ring,
					   depths[i], per_depth));
		EXPECT_EQ(0, kaio_run(run)) {
			TH_LOG("depth %u: %s failed: %s after %u of %u",
			       depths[i], run->failed, strerror(run->error),
			       run->completed, run->total);
		}
		irq_window_stop(&irqs);
		EXPECT_EQ(0, run->bad);
		EXPECT_EQ(0, run->duplicates);
		EXPECT_EQ(0, kaio_run_missing(run));
		EXPECT_EQ(run->total, run->via_ring);
		EXPECT_EQ(0, run->claimed);
		ksft_print_msg("depth %u: %u reads in %.1f s, %u via ring\n",
			       depths[i], run->total, irqs.seconds,
			       run->via_ring);
		ksft_print_msg("depth %u: %u io_submit, %u epoll_wait\n",
			       depths[i], run->submit_calls, run->epoll_calls);
		ksft_print_msg("depth %u: %llu block softirqs, %llu timer interrupts\n",
			       depths[i], irqs.block, irqs.timer);
		if (!variant->file)
			expect_completion_context(_metadata, variant->irqmode,
						  depths[i], run->total, &irqs,
						  tick_rate);
		kaio_run_exit(run);
	}
	/* The ring had room for all: nothing went to the aio ring. */
	EXPECT_EQ(0, self->ring.hdr->overflow);
	EXPECT_EQ(0, sys_io_getevents(self->aio, 0, 1, NULL, NULL));
	free(run);
}

/*
 * A ring of 8 holds 7 results.  With 64 reads in flight and nobody
 * reaping, 57 are refused: one claim must take all 57, and they must
 * then be in the aio ring, no more and no fewer.
 */
TEST_F(kaio, small_ring_overflows_to_aio_ring)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	struct asyncfd_ring small;
	struct kaio_run *run = malloc(sizeof(*run));
	struct pollfd pfd;
	struct timespec zero = { 0, 0 };
	int epfd;

	ASSERT_NE(NULL, run);
	ASSERT_EQ(0, asyncfd_ring_setup(&small, 8, ASYNCFD_CLOEXEC));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_LE(0, epfd);
	ASSERT_EQ(0, epoll_ctl(epfd, EPOLL_CTL_ADD, small.fd, &ev));
	ASSERT_EQ(0, kaio_run_init(run, self->aio, self->fd, &small, 64, 64));
	ASSERT_EQ(0, kaio_run_watch(run));
	ASSERT_EQ(0, kaio_run_submit(run));
	ASSERT_EQ(64, run->submitted);

	/*
	 * Nothing is reaped or claimed, so the ring stays readable: only
	 * an edge per store or refusal since the last report ends a wait.
	 */
	while (asyncfd_ring_ready(&small) + small.hdr->overflow < 64)
		ASSERT_LE(0, epoll_wait(epfd, &ev, 1, -1));
	EXPECT_EQ(7, asyncfd_ring_ready(&small));
	EXPECT_EQ(57, small.hdr->overflow);
	pfd = (struct pollfd){ .fd = small.fd,
			       .events = POLLIN | POLLRDNORM | POLLPRI };
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN | POLLRDNORM | POLLPRI, pfd.revents);

	EXPECT_EQ(57, kaio_run_claim(run));
	EXPECT_EQ(0, small.hdr->overflow);
	EXPECT_EQ(57, run->via_getevents);
	/* Claimed: readable still for the 7 in the ring, but not urgent. */
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN | POLLRDNORM, pfd.revents);
	EXPECT_EQ(7, kaio_run_reap_ring(run));
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	EXPECT_EQ(0, kaio_run_getevents(run, 0, 1, &zero));
	EXPECT_EQ(0, kaio_run_claim(run));
	kaio_run_unwatch(run);
	EXPECT_EQ(0, run->bad);
	EXPECT_EQ(0, run->duplicates);
	EXPECT_EQ(0, kaio_run_missing(run));
	close(epfd);
	kaio_run_exit(run);
	free(run);
	asyncfd_ring_exit(&small);
}

/*
 * Mixed delivery under way: a ring smaller than the queue depth, reaped
 * while requests run, with refused completions taken by io_getevents.
 */
TEST_F(kaio, ring_smaller_than_depth)
{
	struct asyncfd_ring small;
	struct kaio_run *run = malloc(sizeof(*run));
	unsigned int total = requests_per_depth() / 5;

	ASSERT_NE(NULL, run);
	ASSERT_EQ(0, asyncfd_ring_setup(&small, 16, ASYNCFD_CLOEXEC));
	ASSERT_EQ(0, kaio_run_init(run, self->aio, self->fd, &small, 64,
				   total));
	EXPECT_EQ(0, kaio_run(run)) {
		TH_LOG("%s failed: %s after %u of %u", run->failed,
		       strerror(run->error), run->completed, run->total);
	}
	EXPECT_EQ(0, run->bad);
	EXPECT_EQ(0, run->duplicates);
	EXPECT_EQ(0, kaio_run_missing(run));
	EXPECT_EQ(total, run->via_ring + run->via_getevents);
	/* What io_getevents() took is exactly what was claimed. */
	EXPECT_EQ(run->claimed, run->via_getevents);
	EXPECT_EQ(0, small.hdr->overflow);
	ksft_print_msg("%u reads at depth 64, ring of 16: %u via the ring, %u via io_getevents\n",
		       total, run->via_ring, run->via_getevents);
	ksft_print_msg("%u claims took %u refused from overflow\n", run->claims,
		       run->claimed);
	kaio_run_exit(run);
	free(run);
	asyncfd_ring_exit(&small);
}

/*
 * Completions stored in the asyncfd ring give their aio ring
 * reservation back: io_setup(32) sustains 32 reads in flight for far
 * more requests than its aio ring holds, without io_getevents().
 */
TEST_F(kaio, depth_sustained_without_getevents)
{
	struct kaio_run *run = malloc(sizeof(*run));
	aio_context_t aio;

	ASSERT_NE(NULL, run);
	ASSERT_EQ(0, sys_io_setup(32, &aio));
	ASSERT_EQ(0, kaio_run_init(run, aio, self->fd, &self->ring, 32,
				   10000));
	EXPECT_EQ(0, kaio_run(run)) {
		TH_LOG("%s failed: %s after %u of %u", run->failed,
		       strerror(run->error), run->completed, run->total);
	}
	EXPECT_EQ(run->total, run->via_ring);
	EXPECT_EQ(0, run->via_getevents);
	EXPECT_EQ(0, run->claimed);
	EXPECT_EQ(0, kaio_run_missing(run));
	EXPECT_EQ(0, self->ring.hdr->overflow);
	kaio_run_exit(run);
	free(run);
	EXPECT_EQ(0, sys_io_destroy(aio));
}

/*
 * The contrast: with an eventfd (IOCB_FLAG_RESFD) every completion
 * keeps its aio ring slot until io_getevents() takes it, so the same
 * loop runs out.  This is what the test above would see if asyncfd
 * delivery kept the reservation.
 */
TEST(resfd_without_getevents_runs_out)
{
	struct iocb iocb, *iocbp = &iocb;
	aio_context_t aio;
	unsigned int i;
	uint64_t count;
	char *buf;
	int fd, efd, ret = 0;

	fd = make_file("/tmp/asyncfd_kaio_resfd");
	ASSERT_LE(0, fd);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ASSERT_LE(0, efd);
	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	ASSERT_EQ(0, sys_io_setup(32, &aio));
	for (i = 0; i < 10000; i++) {
		kaio_prep_read(&iocb, fd, buf, KAIO_BLOCK, 0, efd, i + 1);
		iocb.aio_flags = IOCB_FLAG_RESFD;
		ret = sys_io_submit(aio, 1, &iocbp);
		if (ret != 1)
			break;
		ASSERT_EQ(sizeof(count), read(efd, &count, sizeof(count)));
	}
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EAGAIN, errno);
	ksft_print_msg("io_submit failed with EAGAIN after %u requests\n", i);
	EXPECT_EQ(0, sys_io_destroy(aio));
	free(buf);
	close(efd);
	close(fd);
}

/* Bad iocbs: each gets its errno and leaves no trace, not even a slot. */
TEST(bad_iocbs_rejected_without_consuming)
{
	struct asyncfd_ring ring;
	struct iocb iocb, *iocbp = &iocb;
	struct timespec zero = { 0, 0 };
	struct io_event ev;
	aio_context_t aio;
	eventfd_t count;
	int fd, efd, ret, i, j;
	char *buf;
	struct {
		const char *what;
		unsigned int flags;
		uint64_t cookie;
		int resfd;	/* -1: the asyncfd */
		int err;
	} cases[] = {
		{ "RESFD with ASYNCFD", IOCB_FLAG_ASYNCFD | IOCB_FLAG_RESFD,
		  1, -1, EINVAL },
		{ "cookie 0", IOCB_FLAG_ASYNCFD, 0, -1, EINVAL },
		{ "eventfd as asyncfd", IOCB_FLAG_ASYNCFD, 1, 0, EINVAL },
		{ "file as asyncfd", IOCB_FLAG_ASYNCFD, 1, 0, EINVAL },
		{ "closed fd", IOCB_FLAG_ASYNCFD, 1, 0, EBADF },
	};

	ret = asyncfd_ring_setup(&ring, 16, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	fd = make_file("/tmp/asyncfd_kaio_bad");
	ASSERT_LE(0, fd);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ASSERT_LE(0, efd);
	cases[2].resfd = efd;
	cases[3].resfd = fd;
	cases[4].resfd = dup(fd);
	ASSERT_LE(0, cases[4].resfd);
	close(cases[4].resfd);
	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	/* The smallest aio ring: a leaked reservation per call would show. */
	ASSERT_EQ(0, sys_io_setup(1, &aio));

	for (i = 0; i < (int)ARRAY_SIZE(cases); i++) {
		for (j = 0; j < 300; j++) {
			int resfd = cases[i].resfd;

			if (resfd < 0)
				resfd = ring.fd;
			kaio_prep_read(&iocb, fd, buf, KAIO_BLOCK, 0, resfd,
				       cases[i].cookie);
			iocb.aio_flags = cases[i].flags;
			ret = sys_io_submit(aio, 1, &iocbp);
			if (ret != -1 || errno != cases[i].err)
				break;
		}
		EXPECT_EQ(-1, ret) TH_LOG("%s: submitted", cases[i].what);
		EXPECT_EQ(cases[i].err, errno) {
			TH_LOG("%s: %s after %d calls", cases[i].what,
			       strerror(errno), j);
		}
	}
	EXPECT_EQ(0, asyncfd_ring_ready(&ring));
	EXPECT_EQ(0, ring.hdr->overflow);
	EXPECT_EQ(0, sys_io_getevents(aio, 0, 1, &ev, &zero));
	/* Nothing signalled the eventfd either. */
	EXPECT_EQ(-1, eventfd_read(efd, &count));
	EXPECT_EQ(EAGAIN, errno);

	/* Still fully usable. */
	kaio_prep_read(&iocb, fd, buf, KAIO_BLOCK, 0, ring.fd, 42);
	EXPECT_EQ(1, sys_io_submit(aio, 1, &iocbp));
	EXPECT_EQ(1, asyncfd_ring_ready(&ring));
	EXPECT_EQ(42, ring.entries[0].cookie);
	EXPECT_EQ((uintptr_t)&iocb, ring.entries[0].obj);
	EXPECT_EQ(KAIO_BLOCK, ring.entries[0].res);

	EXPECT_EQ(0, sys_io_destroy(aio));
	free(buf);
	close(efd);
	close(fd);
	asyncfd_ring_exit(&ring);
}

/* Reap @ring, which must hold exactly the @n cookies @want, in order. */
static void expect_cookies(struct __test_metadata *_metadata,
			   struct asyncfd_ring *ring, const uint64_t *want,
			   unsigned int n)
{
	struct asyncfd_result res[8];
	unsigned int got, i;

	got = asyncfd_reap(ring, res, ARRAY_SIZE(res));
	ASSERT_EQ(n, got);
	for (i = 0; i < n; i++) {
		EXPECT_EQ(want[i], res[i].cookie);
		EXPECT_EQ(KAIO_BLOCK, res[i].res);
	}
}

/*
 * io_submit() looks an asyncfd up once for a run of iocbs that name the
 * same one: every result must still reach the ring its iocb named, and
 * a bad descriptor in the middle must stop the call right there.
 */
TEST(one_submit_names_several_asyncfds)
{
	static const uint64_t in_a[] = { 1, 2, 4 }, in_b[] = { 3 };
	static const uint64_t then_b[] = { 7, 8 };
	struct asyncfd_ring a, b;
	struct iocb iocbs[6], *iocbp[6];
	aio_context_t aio;
	int fd, closed, ret, i;
	char *buf;
	struct {
		int resfd;
		uint64_t cookie;
	} batch[] = {
		{ 0, 1 }, { 0, 2 }, { 1, 3 }, { 0, 4 }, { -1, 5 }, { 0, 6 },
	};

	ret = asyncfd_ring_setup(&a, 16, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, asyncfd_ring_setup(&b, 16, ASYNCFD_CLOEXEC));
	fd = make_file("/tmp/asyncfd_kaio_several");
	ASSERT_LE(0, fd);
	closed = dup(fd);
	ASSERT_LE(0, closed);
	close(closed);
	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK,
				    ARRAY_SIZE(iocbs) * KAIO_BLOCK));
	ASSERT_EQ(0, sys_io_setup(16, &aio));

	/* a, a, b, a, then the regular file named as the asyncfd. */
	for (i = 0; i < (int)ARRAY_SIZE(batch); i++) {
		int resfd = batch[i].resfd == 0 ? a.fd :
			    batch[i].resfd == 1 ? b.fd : fd;

		kaio_prep_read(&iocbs[i], fd, buf + i * KAIO_BLOCK, KAIO_BLOCK,
			       0, resfd, batch[i].cookie);
		iocbp[i] = &iocbs[i];
	}
	EXPECT_EQ(4, sys_io_submit(aio, ARRAY_SIZE(iocbs), iocbp));
	expect_cookies(_metadata, &a, in_a, ARRAY_SIZE(in_a));
	expect_cookies(_metadata, &b, in_b, ARRAY_SIZE(in_b));

	/* A closed descriptor first: nothing submitted. */
	kaio_prep_read(&iocbs[0], fd, buf, KAIO_BLOCK, 0, closed, 6);
	EXPECT_EQ(-1, sys_io_submit(aio, 1, iocbp));
	EXPECT_EQ(EBADF, errno);

	/* The same run again, after the lookups above went wrong. */
	kaio_prep_read(&iocbs[0], fd, buf, KAIO_BLOCK, 0, b.fd, 7);
	kaio_prep_read(&iocbs[1], fd, buf + KAIO_BLOCK, KAIO_BLOCK, 0, b.fd, 8);
	EXPECT_EQ(2, sys_io_submit(aio, 2, iocbp));
	expect_cookies(_metadata, &b, then_b, ARRAY_SIZE(then_b));
	EXPECT_EQ(0, asyncfd_ring_ready(&a));
	EXPECT_EQ(0, a.hdr->overflow);
	EXPECT_EQ(0, b.hdr->overflow);

	EXPECT_EQ(0, sys_io_destroy(aio));
	free(buf);
	close(fd);
	asyncfd_ring_exit(&b);
	asyncfd_ring_exit(&a);
}

/* Requests that take 50 ms, so that they are surely in flight. */
FIXTURE(slow) {
	aio_context_t aio;
	struct asyncfd_ring ring;
	struct nullb nb;
	struct kaio_run *run;
	int fd;
};

FIXTURE_SETUP(slow)
{
	int ret;

	self->fd = -1;
	memset(&self->nb, 0, sizeof(self->nb));
	ret = asyncfd_ring_setup(&self->ring, 256, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, sys_io_setup(64, &self->aio));
	self->fd = nullb_open(&self->nb, "asyncfd_slow", 2, 50 * 1000 * 1000);
	if (self->fd == -ENOENT)
		MISSING(return, "null_blk configfs not available");
	ASSERT_LE(0, self->fd);
	self->run = malloc(sizeof(*self->run));
	ASSERT_NE(NULL, self->run);
	ASSERT_EQ(0, kaio_run_init(self->run, self->aio, self->fd,
				   &self->ring, 32, 32));
	ASSERT_EQ(0, kaio_run_submit(self->run));
	ASSERT_EQ(32, self->run->submitted);
}

FIXTURE_TEARDOWN(slow)
{
	if (self->run) {
		kaio_run_exit(self->run);
		free(self->run);
	}
	if (self->aio)
		sys_io_destroy(self->aio);
	if (self->fd >= 0)
		close(self->fd);
	nullb_destroy(&self->nb);
	asyncfd_ring_exit(&self->ring);
}

/*
 * Closing the asyncfd sends what is still in flight to the aio ring:
 * the requests hold the asyncfd context, not the file, and see it dead.
 * Those were refused by no ring, so no overflow counts them.
 */
TEST_F(slow, close_with_requests_in_flight)
{
	unsigned int in_ring;

	EXPECT_EQ(0, close(self->ring.fd));
	self->ring.fd = -1;
	/* The ring memory is still ours; what it got before the close counts. */
	in_ring = asyncfd_ring_ready(&self->ring);
	ASSERT_EQ(0, kaio_run_watch(self->run));
	EXPECT_EQ(32 - in_ring, kaio_run_getevents(self->run, 32 - in_ring,
						   32 - in_ring, NULL));
	kaio_run_unwatch(self->run);
	kaio_run_reap_ring(self->run);
	EXPECT_EQ(0, asyncfd_claim_overflow(&self->ring));
	EXPECT_EQ(32, self->run->via_ring + self->run->via_getevents);
	EXPECT_EQ(0, self->run->bad);
	EXPECT_EQ(0, self->run->duplicates);
	EXPECT_EQ(0, kaio_run_missing(self->run));
	ksft_print_msg("%u through the ring before the close, %u through io_getevents\n",
		       self->run->via_ring, self->run->via_getevents);
}

/* io_destroy() waits for the requests, which still reach the ring. */
TEST_F(slow, destroy_with_requests_in_flight)
{
	EXPECT_EQ(0, sys_io_destroy(self->aio));
	self->aio = 0;
	EXPECT_EQ(32, kaio_run_reap_ring(self->run));
	EXPECT_EQ(0, self->run->bad);
	EXPECT_EQ(0, self->run->duplicates);
	EXPECT_EQ(0, kaio_run_missing(self->run));
}

/*
 * A swap with requests in flight: they complete into the new ring.  The
 * old one keeps what it got before, and what it refused unclaimed, for
 * a last reap and claim.
 */
TEST_F(slow, swap_with_requests_in_flight)
{
	struct asyncfd_ring bigger;

	ASSERT_EQ(0, asyncfd_ring_map(&bigger, 4096));
	ASSERT_EQ(0, asyncfd_ring_swap(&self->ring, &bigger));
	kaio_run_reap_ring(self->run);
	EXPECT_LE(0, kaio_run_claim(self->run));
	self->run->ring = &bigger;
	EXPECT_EQ(0, kaio_run(self->run)) {
		TH_LOG("%s failed: %s after %u of 32", self->run->failed,
		       strerror(self->run->error), self->run->completed);
	}
	EXPECT_EQ(32, self->run->via_ring);
	EXPECT_EQ(0, self->run->claimed);
	EXPECT_EQ(0, self->run->bad);
	EXPECT_EQ(0, self->run->duplicates);
	EXPECT_EQ(0, kaio_run_missing(self->run));
	EXPECT_EQ(0, bigger.hdr->overflow);
	self->run->ring = &self->ring;
	asyncfd_ring_exit(&bigger);
}

/*
 * An IOCB_CMD_POLL iocb waits on the readiness of @poll_fd and delivers
 * into the asyncfd itself.  It completes from a wakeup that runs under
 * the asyncfd's own waitqueue lock, which delivering into the same
 * asyncfd takes again.
 */
static void poll_into_own_ring(struct __test_metadata *_metadata, bool via_epoll)
{
	struct iocb poll_iocb, read_iocb, *iocbp;
	struct epoll_event ev = { .events = EPOLLIN };
	struct asyncfd_result res[4];
	struct asyncfd_ring ring;
	struct pollfd pfd;
	aio_context_t aio;
	int fd, epfd = -1, ret;
	unsigned int n = 0, i;
	char *buf;

	ret = asyncfd_ring_setup(&ring, 16, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	fd = make_file("/tmp/asyncfd_kaio_poll");
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	ASSERT_EQ(0, sys_io_setup(8, &aio));
	if (via_epoll) {
		epfd = epoll_create1(EPOLL_CLOEXEC);
		ASSERT_LE(0, epfd);
		ASSERT_EQ(0, epoll_ctl(epfd, EPOLL_CTL_ADD, ring.fd, &ev));
	}

	memset(&poll_iocb, 0, sizeof(poll_iocb));
	poll_iocb.aio_lio_opcode = IOCB_CMD_POLL;
	poll_iocb.aio_fildes = via_epoll ? epfd : ring.fd;
	poll_iocb.aio_buf = POLLIN;
	poll_iocb.aio_data = 100;
	poll_iocb.aio_flags = IOCB_FLAG_ASYNCFD;
	poll_iocb.aio_resfd = ring.fd;
	iocbp = &poll_iocb;
	ASSERT_EQ(1, sys_io_submit(aio, 1, &iocbp));
	EXPECT_EQ(0, asyncfd_ring_ready(&ring));

	kaio_prep_read(&read_iocb, fd, buf, KAIO_BLOCK, 0, ring.fd, 1);
	iocbp = &read_iocb;
	ASSERT_EQ(1, sys_io_submit(aio, 1, &iocbp));

	/* The harness's timeout fails the test if a completion never comes. */
	pfd = (struct pollfd){ .fd = ring.fd, .events = POLLIN };
	while (n < 2) {
		ASSERT_LE(0, poll(&pfd, 1, -1));
		n += asyncfd_reap(&ring, res + n, 4 - n);
	}
	ASSERT_EQ(2, n);
	for (i = 0; i < n; i++) {
		if (res[i].cookie == 1) {
			EXPECT_EQ(KAIO_BLOCK, res[i].res);
		} else {
			EXPECT_EQ(100, res[i].cookie);
			EXPECT_EQ((uintptr_t)&poll_iocb, res[i].obj);
			EXPECT_TRUE(res[i].res & POLLIN);
		}
	}
	EXPECT_NE(res[0].cookie, res[1].cookie);
	EXPECT_EQ(0, ring.hdr->overflow);

	EXPECT_EQ(0, sys_io_destroy(aio));
	if (epfd >= 0)
		close(epfd);
	free(buf);
	close(fd);
	asyncfd_ring_exit(&ring);
}

TEST(poll_iocb_on_own_asyncfd)
{
	poll_into_own_ring(_metadata, false);
}

TEST(poll_iocb_on_epoll_of_own_asyncfd)
{
	poll_into_own_ring(_metadata, true);
}

TEST_HARNESS_MAIN
