// SPDX-License-Identifier: GPL-2.0
/*
 * KAIO completions delivered through asyncfd (IOCB_FLAG_ASYNCFD).
 *
 * Reads go to a regular file, which completes them inside io_submit(),
 * and to null_blk devices whose irqmode makes them complete in the
 * submitter's context, in softirq or in hard interrupt context; fsyncs
 * complete from a workqueue, where aio runs them.  Every
 * test counts results by cookie: each request must show up exactly
 * once, and while its asyncfd is open only in the asyncfd ring.  A
 * completion that finds the ring full waits in the kernel, in its own
 * request, and enters the ring at the next post, a flush, a read() or a
 * swap; io_getevents() sees it only once the asyncfd has been closed.
 */

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
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

/*
 * Results counted by cookie.  Cookie c, 1 <= c <= total, was submitted
 * from iocbs[(c - 1) % nr_iocbs] and must complete with @res, or with
 * res_of[c] if set, and res2 0.  If @dest is set, it must arrive where
 * dest[c] says, @source being where the tally takes results from now.
 * The tally lives in a shared mapping, so that a child that consumes
 * can leave its count to the parent.
 */
struct tally {
	unsigned int total;
	unsigned int got;		/* stored with atomics: a watchdog reads it */
	unsigned int duplicates;
	unsigned int bad;		/* unknown cookie, wrong obj or wrong res */
	unsigned int misplaced;		/* arrived elsewhere than dest[] says */
	unsigned int via_ring;
	unsigned int via_getevents;
	unsigned int flushes;		/* reaps after which results still waited */
	long long waited;		/* asyncfd-waited-total, as a child saw it */
	const struct iocb *iocbs;
	unsigned int nr_iocbs;
	long long res;
	const long long *res_of;
	const unsigned char *dest;
	unsigned char source;
	struct asyncfd_ring *ring;	/* the one consumed, for reports */
	size_t len;
	unsigned char seen[];
};

static struct tally *tally_new(unsigned int total, const struct iocb *iocbs,
			       unsigned int nr_iocbs, long long res)
{
	size_t len = sizeof(struct tally) + total + 1;
	struct tally *t;

	t = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		 -1, 0);
	if (t == MAP_FAILED)
		return NULL;
	t->total = total;
	t->iocbs = iocbs;
	t->nr_iocbs = nr_iocbs;
	t->res = res;
	t->len = len;
	return t;
}

static void tally_free(struct tally *t)
{
	if (t)
		munmap(t, t->len);
}

static void tally_take(struct tally *t, uint64_t cookie, uint64_t obj,
		       int64_t res, int64_t res2)
{
	__atomic_store_n(&t->got, t->got + 1, __ATOMIC_RELAXED);
	if (!cookie || cookie > t->total) {
		t->bad++;
		return;
	}
	if (t->seen[cookie]++) {
		t->duplicates++;
		return;
	}
	if (obj != (uintptr_t)&t->iocbs[(cookie - 1) % t->nr_iocbs] ||
	    res != (t->res_of ? t->res_of[cookie] : t->res) || res2)
		t->bad++;
	if (t->dest && t->dest[cookie] != t->source)
		t->misplaced++;
}

static unsigned int tally_missing(const struct tally *t)
{
	unsigned int cookie, missing = 0;

	for (cookie = 1; cookie <= t->total; cookie++)
		missing += !t->seen[cookie];
	return missing;
}

/* Take all that the ring holds now; how many. */
static unsigned int tally_reap(struct tally *t, struct asyncfd_ring *ring)
{
	struct asyncfd_result res[64];
	unsigned int i, n, total = 0;

	while ((n = asyncfd_reap(ring, res, ARRAY_SIZE(res)))) {
		for (i = 0; i < n; i++)
			tally_take(t, res[i].cookie, res[i].obj, res[i].res,
				   res[i].res2);
		t->via_ring += n;
		total += n;
	}
	return total;
}

/* Take @nr from the aio ring, waiting for them with no timeout; 0 or -errno. */
static int tally_getevents(struct tally *t, aio_context_t aio, unsigned int nr)
{
	struct io_event ev[64];
	int i, n;

	while (nr) {
		n = nr < ARRAY_SIZE(ev) ? nr : ARRAY_SIZE(ev);
		n = sys_io_getevents(aio, n, n, ev, NULL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		for (i = 0; i < n; i++)
			tally_take(t, ev[i].data, ev[i].obj, ev[i].res,
				   ev[i].res2);
		t->via_getevents += n;
		nr -= n;
	}
	return 0;
}

static void tally_report(void *arg)
{
	struct tally *t = arg;

	printf("# %u of %u results taken\n",
	       __atomic_load_n(&t->got, __ATOMIC_RELAXED), t->total);
	if (t->ring && t->ring->fd >= 0)
		printf("# the ring holds %u, kflags %#x, %lld wait in the kernel\n",
		       asyncfd_ring_ready(t->ring),
		       __atomic_load_n(&t->ring->hdr->kflags, __ATOMIC_ACQUIRE),
		       fdinfo_get(t->ring->fd, "asyncfd-waiting"));
}

static void expect_tally_complete(struct __test_metadata *_metadata,
				  const struct tally *t)
{
	EXPECT_EQ(t->total, t->got);
	EXPECT_EQ(0, t->bad);
	EXPECT_EQ(0, t->duplicates);
	EXPECT_EQ(0, t->misplaced);
	EXPECT_EQ(0, tally_missing(t));
}

/* The three ways a consumer can sleep until the asyncfd has news. */
enum consumer_wait {
	WAIT_POLL,
	WAIT_EPOLL,
	WAIT_READ,	/* read() lets waiting results in itself */
};

/*
 * The consumer loop of the ABI, until @until results are in: reap; if
 * results wait in the kernel, flush them into the room just made and
 * reap again; sleep only when neither found anything.  The sleep has no
 * timeout: the asyncfd is readable while its ring holds results or
 * results wait.  0 or -errno.
 */
static int tally_consume(struct tally *t, struct asyncfd_ring *ring,
			 unsigned int until, enum consumer_wait how)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct pollfd pfd = { .fd = ring->fd, .events = POLLIN };
	int epfd = -1, ret = 0;
	uint64_t count;

	t->ring = ring;
	if (how == WAIT_EPOLL) {
		epfd = epoll_create1(EPOLL_CLOEXEC);
		if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, ring->fd, &ev)) {
			ret = -errno;
			goto out;
		}
	}
	while (t->got < until) {
		unsigned int n = tally_reap(t, ring);

		if (asyncfd_waiting(ring)) {
			ret = asyncfd_flush(ring);
			if (ret < 0)
				goto out;
			t->flushes++;
			continue;
		}
		if (n)
			continue;
		if (how == WAIT_POLL)
			ret = poll(&pfd, 1, -1);
		else if (how == WAIT_EPOLL)
			ret = epoll_wait(epfd, &ev, 1, -1);
		else
			ret = read(ring->fd, &count, sizeof(count));
		if (ret < 0 && errno != EINTR) {
			ret = -errno;
			goto out;
		}
	}
	ret = 0;
out:
	if (epfd >= 0)
		close(epfd);
	return ret;
}

/* tally_consume() under a watchdog, which fails the test if it stalls. */
static void consume(struct __test_metadata *_metadata, struct tally *t,
		    struct asyncfd_ring *ring, unsigned int until,
		    enum consumer_wait how)
{
	struct kaio_watch w;
	int ret;

	t->ring = ring;
	ASSERT_EQ(0, kaio_watch_start(&w, &t->got, tally_report, t));
	ret = tally_consume(t, ring, until, how);
	kaio_watch_stop(&w);
	ASSERT_EQ(0, ret) {
		TH_LOG("consumer: %s after %u of %u", strerror(-ret), t->got,
		       until);
	}
	/* A consumer that took all it expected leaves nothing behind. */
	EXPECT_EQ(0, asyncfd_ring_ready(ring));
	EXPECT_FALSE(asyncfd_waiting(ring));
}

/* tally_getevents() under a watchdog, which fails the test if it stalls. */
static void getevents(struct __test_metadata *_metadata, struct tally *t,
		      aio_context_t aio, unsigned int nr)
{
	struct kaio_watch w;
	int ret;

	ASSERT_EQ(0, kaio_watch_start(&w, &t->got, tally_report, t));
	ret = tally_getevents(t, aio, nr);
	kaio_watch_stop(&w);
	ASSERT_EQ(0, ret) TH_LOG("io_getevents: %s", strerror(-ret));
}

/* The aio ring has nothing, without waiting for anything. */
static int aio_ring_events(aio_context_t aio)
{
	struct timespec zero = { 0, 0 };
	struct io_event ev;

	return sys_io_getevents(aio, 0, 1, &ev, &zero);
}

/*
 * The header of the aio ring, which io_setup() maps at the address that
 * it returns as the context: the ring has @nr slots, of which one stays
 * empty, and holds the events from @head up to @tail.
 */
struct aio_ring_header {
	unsigned int id;
	unsigned int nr;
	unsigned int head;
	unsigned int tail;
	unsigned int magic;
};

#define AIO_RING_MAGIC	0xa10a10a1

static const struct aio_ring_header *aio_ring_header(aio_context_t aio)
{
	return (const struct aio_ring_header *)(uintptr_t)aio;
}

/* The events that the aio ring holds now, taking none. */
static unsigned int aio_ring_held(aio_context_t aio)
{
	const struct aio_ring_header *ring = aio_ring_header(aio);
	unsigned int head = __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE);
	unsigned int tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);

	return (tail + ring->nr - head) % ring->nr;
}

static long long waiting_in_kernel(int fd)
{
	return fdinfo_get(fd, "asyncfd-waiting");
}

/* Results that reached the asyncfd, reaped or not: in its ring or waiting. */
static long long arrived(const struct asyncfd_ring *ring)
{
	long long waiting = waiting_in_kernel(ring->fd);

	return waiting < 0 ? -1 : asyncfd_ring_ready(ring) + waiting;
}

struct arrival {
	const struct asyncfd_ring *ring;
	unsigned int now;
};

static void arrival_report(void *arg)
{
	const struct arrival *a = arg;

	printf("# %u results reached the asyncfd: %u in the ring, kflags %#x\n",
	       a->now, asyncfd_ring_ready(a->ring),
	       __atomic_load_n(&a->ring->hdr->kflags, __ATOMIC_ACQUIRE));
}

/*
 * Wait until @n results reached the asyncfd, reaping none.  Edge
 * triggered, so that only a wakeup for each stored or waiting result,
 * as the ABI promises, ends each wait once the ring is full.
 */
static void wait_arrived(struct __test_metadata *_metadata,
			 const struct asyncfd_ring *ring, unsigned int n)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	struct arrival a = { .ring = ring };
	struct kaio_watch w;
	long long now;
	int epfd;

	ASSERT_LE(0, waiting_in_kernel(ring->fd)) {
		TH_LOG("no asyncfd-waiting in fdinfo");
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	ASSERT_LE(0, epfd);
	ASSERT_EQ(0, epoll_ctl(epfd, EPOLL_CTL_ADD, ring->fd, &ev));
	ASSERT_EQ(0, kaio_watch_start(&w, &a.now, arrival_report, &a));
	while ((now = arrived(ring)) < n) {
		__atomic_store_n(&a.now, now, __ATOMIC_RELAXED);
		if (epoll_wait(epfd, &ev, 1, -1) < 0 && errno != EINTR)
			break;
	}
	kaio_watch_stop(&w);
	close(epfd);
	ASSERT_EQ(n, now);
}

/*
 * Reads of @fd into @buf from iocbs[first] to iocbs[first + n - 1],
 * with cookies first + 1 on, in one io_submit() that must take them all.
 */
static void submit_reads(struct __test_metadata *_metadata, aio_context_t aio,
			 int fd, char *buf, struct iocb *iocbs,
			 unsigned int first, unsigned int n, int afd)
{
	struct iocb *batch[64];
	unsigned int i;

	ASSERT_GE(ARRAY_SIZE(batch), n);
	for (i = 0; i < n; i++) {
		unsigned int k = first + i;

		kaio_prep_read(&iocbs[k], fd, buf, KAIO_BLOCK,
			       ((k + 1) % KAIO_SPAN_BLOCKS) * KAIO_BLOCK, afd,
			       k + 1);
		batch[i] = &iocbs[k];
	}
	ASSERT_EQ(n, sys_io_submit(aio, n, batch)) {
		TH_LOG("io_submit: %s", strerror(errno));
	}
}

static int pin_to_this_cpu(void)
{
	int cpu = sched_getcpu();
	cpu_set_t set;

	if (cpu < 0)
		return -1;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
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
		EXPECT_EQ(0, run->flushes);
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
	/* The ring had room for all: nothing waited, nothing in the aio ring. */
	EXPECT_EQ(0, fdinfo_get(self->ring.fd, "asyncfd-waited-total"));
	EXPECT_EQ(0, aio_ring_events(self->aio));
	free(run);
}

/*
 * A ring of 8 holds 7 results.  With 64 reads and nobody reaping, 57
 * wait in the kernel, in their requests, and none in the aio ring.  A
 * flush lets in as many as were reaped, and no more.
 */
TEST_F(kaio, small_ring_results_wait_for_flush)
{
	struct asyncfd_ring small;
	struct kaio_run *run = malloc(sizeof(*run));
	struct pollfd pfd;
	int left;

	ASSERT_NE(NULL, run);
	ASSERT_EQ(0, asyncfd_ring_setup(&small, 8, ASYNCFD_CLOEXEC));
	ASSERT_EQ(0, kaio_run_init(run, self->aio, self->fd, &small, 64, 64));
	ASSERT_EQ(0, kaio_run_submit(run));
	ASSERT_EQ(64, run->submitted);

	wait_arrived(_metadata, &small, 64);
	EXPECT_EQ(7, asyncfd_ring_ready(&small));
	EXPECT_EQ(57, waiting_in_kernel(small.fd));
	EXPECT_TRUE(asyncfd_waiting(&small));
	EXPECT_EQ(0, aio_ring_events(self->aio));
	pfd = (struct pollfd){ .fd = small.fd,
			       .events = POLLIN | POLLRDNORM | POLLPRI };
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN | POLLRDNORM | POLLPRI, pfd.revents);

	EXPECT_EQ(7, kaio_run_reap_ring(run));
	/* Still readable, for what waits, though the ring is empty. */
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN | POLLRDNORM | POLLPRI, pfd.revents);
	EXPECT_EQ(50, asyncfd_flush(&small));
	EXPECT_EQ(7, asyncfd_ring_ready(&small));
	EXPECT_EQ(50, waiting_in_kernel(small.fd));
	do {
		kaio_run_reap_ring(run);
		left = asyncfd_flush(&small);
	} while (left > 0);
	EXPECT_EQ(0, left);
	EXPECT_FALSE(asyncfd_waiting(&small));
	/* The last results are in the ring, no longer urgent. */
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN | POLLRDNORM, pfd.revents);
	kaio_run_reap_ring(run);
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	EXPECT_EQ(0, aio_ring_events(self->aio));

	EXPECT_EQ(64, run->via_ring);
	EXPECT_EQ(0, run->bad);
	EXPECT_EQ(0, run->duplicates);
	EXPECT_EQ(0, kaio_run_missing(run));
	EXPECT_EQ(0, waiting_in_kernel(small.fd));
	EXPECT_EQ(57, fdinfo_get(small.fd, "asyncfd-waited-total"));
	EXPECT_EQ(57, fdinfo_get(small.fd, "asyncfd-waiting-peak"));
	/* KAIO keeps what waits in its requests, never in copies. */
	EXPECT_EQ(0, fdinfo_get(small.fd, "asyncfd-waiting-copied"));
	kaio_run_exit(run);
	free(run);
	asyncfd_ring_exit(&small);
}

/*
 * Mixed delivery under way: a ring smaller than the queue depth, reaped
 * while requests run, with what waited let in by flushes.
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
	EXPECT_EQ(total, run->via_ring);
	EXPECT_EQ(0, run->via_getevents);
	EXPECT_EQ(0, aio_ring_events(self->aio));
	/* 64 submitted at once to a ring of 15: some must have waited. */
	EXPECT_LT(0, run->flushes);
	EXPECT_LT(0, fdinfo_get(small.fd, "asyncfd-waited-total"));
	ksft_print_msg("%u reads at depth 64, ring of 16: %u flushes, %lld waited\n",
		       total, run->flushes,
		       fdinfo_get(small.fd, "asyncfd-waited-total"));
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
	EXPECT_EQ(0, run->flushes);
	EXPECT_EQ(0, kaio_run_missing(run));
	EXPECT_EQ(0, aio_ring_events(aio));
	kaio_run_exit(run);
	free(run);
	EXPECT_EQ(0, sys_io_destroy(aio));
}

/*
 * Cookie 0 is a result like any other, now that no slot is marked free
 * by it.  Catches a kernel that still refuses aio_data == 0 with
 * EINVAL, as ABI v2 did, or that drops such a result on the way.
 */
TEST_F(kaio, zero_cookie_delivered)
{
	struct iocb iocbs[2], *iocbp[2] = { &iocbs[0], &iocbs[1] };
	struct asyncfd_result res[3];
	struct pollfd pfd = { .fd = self->ring.fd, .events = POLLIN };
	struct kaio_watch w;
	unsigned int n = 0;
	char *buf;

	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	kaio_prep_read(&iocbs[0], self->fd, buf, KAIO_BLOCK, 0, self->ring.fd, 0);
	kaio_prep_read(&iocbs[1], self->fd, buf, KAIO_BLOCK, KAIO_BLOCK,
		       self->ring.fd, 0);
	ASSERT_EQ(2, sys_io_submit(self->aio, 2, iocbp)) {
		TH_LOG("io_submit: %s", strerror(errno));
	}
	ASSERT_EQ(0, kaio_watch_start(&w, &n, NULL, NULL));
	while (n < 2) {
		__atomic_store_n(&n, n + asyncfd_reap(&self->ring, res + n, 3 - n),
				 __ATOMIC_RELAXED);
		if (n < 2 && poll(&pfd, 1, -1) < 0 && errno != EINTR)
			break;
	}
	kaio_watch_stop(&w);
	ASSERT_EQ(2, n);
	EXPECT_EQ(0, asyncfd_reap(&self->ring, res + n, 1));
	EXPECT_EQ(0, res[0].cookie);
	EXPECT_EQ(0, res[1].cookie);
	EXPECT_NE(res[0].obj, res[1].obj);
	EXPECT_TRUE(res[0].obj == (uintptr_t)&iocbs[0] ||
		    res[0].obj == (uintptr_t)&iocbs[1]);
	EXPECT_TRUE(res[1].obj == (uintptr_t)&iocbs[0] ||
		    res[1].obj == (uintptr_t)&iocbs[1]);
	EXPECT_EQ(KAIO_BLOCK, res[0].res);
	EXPECT_EQ(KAIO_BLOCK, res[1].res);
	EXPECT_EQ(0, aio_ring_events(self->aio));
	free(buf);
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

/*
 * Bad iocbs: each gets its errno and leaves no trace, not even a slot.
 * aio refuses an fsync of a file without one, such as a pipe, with
 * EINVAL at io_submit(), rather than run it and deliver EINVAL.
 */
TEST(bad_iocbs_rejected_without_consuming)
{
	struct asyncfd_ring ring;
	struct iocb iocb, *iocbp = &iocb;
	struct timespec zero = { 0, 0 };
	struct io_event ev;
	aio_context_t aio;
	eventfd_t count;
	int fd, efd, ret, i, j, pipefd[2];
	char *buf;
	struct {
		const char *what;
		unsigned int flags;
		int resfd;	/* -1: the asyncfd */
		int err;
		unsigned int opcode;	/* of the file, or a sync of the pipe */
	} cases[] = {
		{ "RESFD with ASYNCFD", IOCB_FLAG_ASYNCFD | IOCB_FLAG_RESFD,
		  -1, EINVAL },
		{ "eventfd as asyncfd", IOCB_FLAG_ASYNCFD, 0, EINVAL },
		{ "file as asyncfd", IOCB_FLAG_ASYNCFD, 0, EINVAL },
		{ "closed fd", IOCB_FLAG_ASYNCFD, 0, EBADF },
		{ "fsync of a pipe", IOCB_FLAG_ASYNCFD, -1, EINVAL,
		  IOCB_CMD_FSYNC },
		{ "fdatasync of a pipe", IOCB_FLAG_ASYNCFD, -1, EINVAL,
		  IOCB_CMD_FDSYNC },
	};

	ret = asyncfd_ring_setup(&ring, 16, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	fd = make_file("/tmp/asyncfd_kaio_bad");
	ASSERT_LE(0, fd);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ASSERT_LE(0, efd);
	ASSERT_EQ(0, pipe2(pipefd, O_CLOEXEC));
	cases[1].resfd = efd;
	cases[2].resfd = fd;
	cases[3].resfd = dup(fd);
	ASSERT_LE(0, cases[3].resfd);
	close(cases[3].resfd);
	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	/* The smallest aio ring: a leaked reservation per call would show. */
	ASSERT_EQ(0, sys_io_setup(1, &aio));

	for (i = 0; i < (int)ARRAY_SIZE(cases); i++) {
		for (j = 0; j < 300; j++) {
			int resfd = cases[i].resfd;

			if (resfd < 0)
				resfd = ring.fd;
			if (cases[i].opcode == IOCB_CMD_PREAD)
				kaio_prep_read(&iocb, fd, buf, KAIO_BLOCK, 0,
					       resfd, i * 1000 + j + 1);
			else
				kaio_prep_fsync(&iocb, pipefd[j & 1],
						cases[i].opcode == IOCB_CMD_FDSYNC,
						resfd, i * 1000 + j + 1);
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
	EXPECT_FALSE(asyncfd_waiting(&ring));
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
	close(pipefd[0]);
	close(pipefd[1]);
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
	EXPECT_FALSE(asyncfd_waiting(&a));
	EXPECT_FALSE(asyncfd_waiting(&b));
	EXPECT_EQ(0, aio_ring_events(aio));

	EXPECT_EQ(0, sys_io_destroy(aio));
	free(buf);
	close(fd);
	asyncfd_ring_exit(&b);
	asyncfd_ring_exit(&a);
}

#define TWO_CTX_REQUESTS	16	/* per context and round */
#define TWO_CTX_ROUNDS		16
#define TWO_CTX_RING		4

/*
 * Two aio contexts feed one asyncfd whose ring holds 3 while 32 are in
 * flight: each cookie comes once, through the ring alone, and neither
 * aio ring ever holds an event.  Catches results of one context that
 * wait behind the other's and are lost or sent to an aio ring (as ABI
 * v2 did, counting them in an overflow nobody claims here), and a
 * flush that lets in only one context's requests.
 */
TEST_F(kaio, two_contexts_feed_one_small_ring)
{
	struct iocb iocbs[2 * TWO_CTX_REQUESTS];
	struct asyncfd_ring small;
	aio_context_t aio[2];
	struct tally *t;
	unsigned int round, c;
	char *buf;

	ASSERT_EQ(0, asyncfd_ring_setup(&small, TWO_CTX_RING, ASYNCFD_CLOEXEC));
	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	t = tally_new(TWO_CTX_ROUNDS * ARRAY_SIZE(iocbs), iocbs,
		      ARRAY_SIZE(iocbs), KAIO_BLOCK);
	ASSERT_NE(NULL, t);
	for (c = 0; c < 2; c++)
		ASSERT_EQ(0, sys_io_setup(TWO_CTX_REQUESTS, &aio[c]));

	for (round = 0; round < TWO_CTX_ROUNDS; round++) {
		struct iocb *batch[TWO_CTX_REQUESTS];
		unsigned int i;

		for (c = 0; c < 2; c++) {
			for (i = 0; i < TWO_CTX_REQUESTS; i++) {
				unsigned int k = c * TWO_CTX_REQUESTS + i;
				uint64_t cookie = round * ARRAY_SIZE(iocbs) + k + 1;

				kaio_prep_read(&iocbs[k], self->fd, buf,
					       KAIO_BLOCK,
					       (cookie % KAIO_SPAN_BLOCKS) * KAIO_BLOCK,
					       small.fd, cookie);
				batch[i] = &iocbs[k];
			}
			ASSERT_EQ(TWO_CTX_REQUESTS,
				  sys_io_submit(aio[c], TWO_CTX_REQUESTS, batch)) {
				TH_LOG("round %u, context %u: %s", round, c,
				       strerror(errno));
			}
		}
		consume(_metadata, t, &small, (round + 1) * ARRAY_SIZE(iocbs),
			WAIT_EPOLL);
	}
	expect_tally_complete(_metadata, t);
	EXPECT_EQ(t->total, t->via_ring);
	EXPECT_LT(0, fdinfo_get(small.fd, "asyncfd-waited-total"));
	EXPECT_LT(0, t->flushes);
	for (c = 0; c < 2; c++) {
		EXPECT_EQ(0, aio_ring_events(aio[c]));
		EXPECT_EQ(0, sys_io_destroy(aio[c]));
	}
	ksft_print_msg("%u reads from 2 contexts, ring of %d: %lld waited, %u flushes\n",
		       t->total, TWO_CTX_RING,
		       fdinfo_get(small.fd, "asyncfd-waited-total"), t->flushes);
	tally_free(t);
	free(buf);
	asyncfd_ring_exit(&small);
}

#define SCM_REQUESTS	64
#define SCM_RING	4

/*
 * The receiver: it swaps in a ring of its own memory, says so, and
 * collects with read(), which lets waiting results in.  It has no aio
 * context, so no io_getevents() could help it.  Its exit status says
 * which step failed.
 */
static int scm_consumer(int sock, struct tally *t)
{
	struct asyncfd_ring mine;
	struct kaio_watch w;
	char ack = 1;
	int fd, ret;

	fd = recv_fd(sock);
	if (fd < 0)
		return 10;
	if (asyncfd_ring_map(&mine, SCM_RING))
		return 11;
	if (sys_asyncfd(fd, mine.hdr, 0) != fd)
		return 12;
	mine.fd = fd;
	if (write(sock, &ack, 1) != 1)
		return 13;
	/* Consume only once every read has completed, most of them waiting. */
	if (read(sock, &ack, 1) != 1)
		return 17;
	if (kaio_watch_start(&w, &t->got, tally_report, t))
		return 14;
	ret = tally_consume(t, &mine, t->total, WAIT_READ);
	kaio_watch_stop(&w);
	if (ret)
		return 15;
	if (asyncfd_ring_ready(&mine) || asyncfd_waiting(&mine))
		return 16;
	t->waited = fdinfo_get(fd, "asyncfd-waited-total");
	return 0;
}

/*
 * An asyncfd passed with SCM_RIGHTS to a process that has no aio
 * context: the sender submits, then closes its descriptor, and the
 * receiver collects every result, those that had to wait included.
 * Catches a kernel that sends waiting results to the submitter's aio
 * ring (ABI v2's overflow, or a close of one descriptor taken for the
 * release of the file), and a swap that pins the ring through the
 * creator's mm instead of the caller's.
 */
TEST_F(kaio, scm_rights_receiver_without_aio_collects)
{
	struct iocb iocbs[SCM_REQUESTS];
	struct asyncfd_ring first;
	struct tally *t;
	int sv[2], status;
	char ack, *buf;
	pid_t pid;

	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	t = tally_new(SCM_REQUESTS, iocbs, SCM_REQUESTS, KAIO_BLOCK);
	ASSERT_NE(NULL, t);
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv));
	/* Forked before the asyncfd exists: only the socket can bring it. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		close(sv[0]);
		_exit(scm_consumer(sv[1], t));
	}
	close(sv[1]);

	ASSERT_EQ(0, asyncfd_ring_setup(&first, 2, ASYNCFD_CLOEXEC));
	ASSERT_EQ(0, send_fd(sv[0], first.fd));
	ASSERT_EQ(1, read(sv[0], &ack, 1)) {
		TH_LOG("the receiver did not take the asyncfd: status %d",
		       wait_child(pid));
	}
	submit_reads(_metadata, self->aio, self->fd, buf, iocbs, 0,
		     SCM_REQUESTS, first.fd);
	/*
	 * Hold the receiver back until the reads that found its ring full
	 * wait, so that it must let them in; the harness's timeout is the
	 * watchdog of this wait.
	 */
	while (fdinfo_get(first.fd, "asyncfd-waiting") <
	       SCM_REQUESTS - (SCM_RING - 1))
		usleep(1000);
	ASSERT_EQ(1, write(sv[0], &ack, 1));
	/* The receiver's descriptor keeps the asyncfd open. */
	asyncfd_ring_exit(&first);

	status = wait_child(pid);
	EXPECT_EQ(0, status);
	expect_tally_complete(_metadata, t);
	EXPECT_EQ(SCM_REQUESTS, t->via_ring);
	EXPECT_LT(0, t->waited);
	EXPECT_EQ(0, aio_ring_events(self->aio));
	ksft_print_msg("receiver: %u results, %lld of them waited, %u flushes\n",
		       t->via_ring, t->waited, t->flushes);
	close(sv[0]);
	tally_free(t);
	free(buf);
}

#define BOUND_NR_EVENTS	8
#define BOUND_RING	4

/*
 * Reads, one per io_submit(), from iocbs[first] on with cookies first + 1
 * on, until io_submit() fails with EAGAIN or @max iocbs are used; how
 * many it took, or -errno on another failure.  Their completions go to
 * @afd, or to the aio ring if @afd is -1.
 */
static int submit_until_eagain(aio_context_t aio, int fd, char *buf,
			       struct iocb *iocbs, unsigned int first,
			       unsigned int max, int afd)
{
	unsigned int k;

	for (k = first; k < max; k++) {
		struct iocb *iocbp = &iocbs[k];

		kaio_prep_read(iocbp, fd, buf, KAIO_BLOCK,
			       ((k + 1) % KAIO_SPAN_BLOCKS) * KAIO_BLOCK, afd,
			       k + 1);
		if (afd < 0) {
			iocbp->aio_flags = 0;
			iocbp->aio_resfd = 0;
		}
		if (sys_io_submit(aio, 1, &iocbp) == 1)
			continue;
		if (errno != EAGAIN)
			return -errno;
		break;
	}
	return k - first;
}

/*
 * io_setup() sizes the aio ring for nr_events, and a context takes no
 * more requests than the ring has slots for: each request holds a
 * reservation until its event can no longer need a slot.  A result that
 * waits in the asyncfd still may, as the asyncfd can be released first,
 * so its request keeps the reservation until the result enters the
 * asyncfd ring; one that went to the aio ring keeps it until
 * io_getevents() has taken it.
 *
 * The test fills a context to EAGAIN with reads whose results, as
 * nobody reaps, wait in a ring of BOUND_RING, and keeps it at its bound:
 * - what holds a reservation, every result but the BOUND_RING - 1 that
 *   the ring stored, is at least nr_events and fits the aio ring;
 * - with every read complete, one more io_submit() fails with EAGAIN;
 * - letting n waiting results into the ring gives back exactly n
 *   reservations: n io_submit() calls succeed, and the next one fails;
 * - the close of the asyncfd sends every waiting result to the aio ring,
 *   where each still holds its reservation: io_submit() fails, with and
 *   without an asyncfd, until io_getevents() has taken them;
 * - then the context takes again no more than the aio ring holds, and
 *   io_getevents() finds every event: none was overwritten.
 * Everything runs on one CPU, as aio caches reservations per CPU.
 *
 * Catches a kernel that gives the reservation back when a result starts
 * to wait (io_submit() does not fail at the bound), or when a waiting
 * result falls back to the aio ring (io_submit() succeeds after the
 * close, and the aio ring can be asked for more events than it holds),
 * and one that never gives it back for a result that waited (nothing is
 * taken after the flush).
 */
TEST_F(kaio, reservation_bounds_a_context_while_results_wait)
{
	unsigned int room = BOUND_RING - 1, slots, limit, cookies;
	struct asyncfd_ring small, other;
	struct iocb *iocbs;
	aio_context_t aio;
	struct tally *t;
	int taken, again;
	long long held;
	char *buf;

	ASSERT_EQ(0, pin_to_this_cpu());
	ASSERT_EQ(0, sys_io_setup(BOUND_NR_EVENTS, &aio));
	ASSERT_EQ(AIO_RING_MAGIC, aio_ring_header(aio)->magic);
	slots = aio_ring_header(aio)->nr;
	ASSERT_LT(BOUND_NR_EVENTS, slots);
	/* Room to see a kernel that lets twice the bound through. */
	limit = 2 * slots + 64;
	iocbs = calloc(2 * limit + room, sizeof(*iocbs));
	ASSERT_NE(NULL, iocbs);
	t = tally_new(2 * limit + room, iocbs, 2 * limit + room, KAIO_BLOCK);
	ASSERT_NE(NULL, t);
	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	ASSERT_EQ(0, asyncfd_ring_setup(&small, BOUND_RING, ASYNCFD_CLOEXEC));
	ASSERT_EQ(0, asyncfd_ring_setup(&other, BOUND_RING, ASYNCFD_CLOEXEC));

	taken = submit_until_eagain(aio, self->fd, buf, iocbs, 0, limit,
				    small.fd);
	ASSERT_LE(0, taken) TH_LOG("io_submit: %s", strerror(-taken));
	ASSERT_GT(limit, taken) TH_LOG("no EAGAIN while results waited");
	wait_arrived(_metadata, &small, taken);
	held = waiting_in_kernel(small.fd);
	EXPECT_EQ(taken - room, held);
	EXPECT_LE(BOUND_NR_EVENTS, held);
	EXPECT_GT(slots, held) {
		TH_LOG("%lld requests hold a slot of an aio ring of %u",
		       held, slots);
	}
	ksft_print_msg("io_setup(%d): aio ring of %u, %d taken, %lld waiting\n",
		       BOUND_NR_EVENTS, slots, taken, held);
	cookies = taken;
	EXPECT_EQ(0, submit_until_eagain(aio, self->fd, buf, iocbs, cookies,
					 cookies + 1, small.fd));

	EXPECT_EQ(room, tally_reap(t, &small));
	EXPECT_EQ(held - room, asyncfd_flush(&small));
	EXPECT_EQ(room, submit_until_eagain(aio, self->fd, buf, iocbs, cookies,
					    cookies + room + 1, small.fd));
	cookies += room;
	wait_arrived(_metadata, &small, taken);
	EXPECT_EQ(held, waiting_in_kernel(small.fd));

	EXPECT_EQ(0, close(small.fd));
	small.fd = -1;
	EXPECT_EQ(held, aio_ring_held(aio));
	EXPECT_EQ(0, submit_until_eagain(aio, self->fd, buf, iocbs, cookies,
					 cookies + 1, -1));
	EXPECT_EQ(0, submit_until_eagain(aio, self->fd, buf, iocbs, cookies,
					 cookies + 1, other.fd));
	/* Our memory still has what the ring got before the close. */
	EXPECT_EQ(room, tally_reap(t, &small));
	getevents(_metadata, t, aio, held);
	EXPECT_EQ(0, aio_ring_held(aio));

	again = submit_until_eagain(aio, self->fd, buf, iocbs, cookies,
				    cookies + limit, -1);
	ASSERT_LE(0, again) TH_LOG("io_submit: %s", strerror(-again));
	EXPECT_LE(BOUND_NR_EVENTS, again);
	EXPECT_GT(slots, again) {
		TH_LOG("%d requests for an aio ring of %u", again, slots);
	}
	getevents(_metadata, t, aio, again);
	cookies += again;
	t->total = cookies;
	expect_tally_complete(_metadata, t);
	EXPECT_EQ(held + again, t->via_getevents);
	EXPECT_EQ(0, aio_ring_events(aio));
	EXPECT_EQ(0, asyncfd_ring_ready(&other));
	EXPECT_EQ(0, sys_io_destroy(aio));
	asyncfd_ring_exit(&other);
	asyncfd_ring_exit(&small);
	free(buf);
	tally_free(t);
	free(iocbs);
}

#define CLOSE_REQUESTS	32
#define CLOSE_RING	4

/*
 * Closing the asyncfd while results wait in it sends exactly those to
 * the aio ring, where io_getevents() finds them; what the ring got
 * before stays there.  Catches a release that drops waiting results or
 * their requests (io_getevents() then waits for ever), that frees them
 * twice, or that sends the ones already in the ring too.
 */
TEST_F(kaio, close_sends_waiting_results_to_aio_ring)
{
	struct iocb iocbs[CLOSE_REQUESTS];
	struct asyncfd_ring small;
	long long waiting;
	struct tally *t;
	char *buf;

	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	t = tally_new(CLOSE_REQUESTS, iocbs, CLOSE_REQUESTS, KAIO_BLOCK);
	ASSERT_NE(NULL, t);
	ASSERT_EQ(0, asyncfd_ring_setup(&small, CLOSE_RING, ASYNCFD_CLOEXEC));
	submit_reads(_metadata, self->aio, self->fd, buf, iocbs, 0,
		     CLOSE_REQUESTS, small.fd);
	wait_arrived(_metadata, &small, CLOSE_REQUESTS);

	/* Make the ring hold some that waited, too. */
	EXPECT_EQ(CLOSE_RING - 1, tally_reap(t, &small));
	EXPECT_EQ(CLOSE_REQUESTS - 2 * (CLOSE_RING - 1), asyncfd_flush(&small));
	waiting = waiting_in_kernel(small.fd);
	ASSERT_EQ(CLOSE_REQUESTS - 2 * (CLOSE_RING - 1), waiting);
	EXPECT_EQ(0, aio_ring_events(self->aio));

	EXPECT_EQ(0, close(small.fd));
	small.fd = -1;
	/* Our memory still has what the ring got before the close. */
	EXPECT_EQ(CLOSE_RING - 1, tally_reap(t, &small));
	getevents(_metadata, t, self->aio, waiting);
	EXPECT_EQ(0, aio_ring_events(self->aio));
	EXPECT_EQ(waiting, t->via_getevents);
	EXPECT_EQ(0, asyncfd_ring_ready(&small));
	expect_tally_complete(_metadata, t);
	asyncfd_ring_exit(&small);
	tally_free(t);
	free(buf);
}

#define SYNC_REQUESTS	32
#define SYNC_RING	8

/*
 * SYNC_REQUESTS iocbs in one io_submit(), into a ring of SYNC_RING that
 * nobody reaps until all have arrived: fsyncs and fdatasyncs in turn,
 * and with @with_reads a read before each.  Every result must reach the
 * ring exactly once, most after waiting, with its iocb in obj and its
 * own res: the byte count for a read, 0 for an fsync.
 */
static void syncs_through_small_ring(struct __test_metadata *_metadata,
				     aio_context_t aio, int fd, bool with_reads)
{
	struct iocb iocbs[SYNC_REQUESTS], *batch[SYNC_REQUESTS];
	long long res_of[SYNC_REQUESTS + 1];
	unsigned int room = SYNC_RING - 1, k;
	struct asyncfd_ring small;
	struct tally *t;
	char *buf;

	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	ASSERT_EQ(0, asyncfd_ring_setup(&small, SYNC_RING, ASYNCFD_CLOEXEC));
	t = tally_new(SYNC_REQUESTS, iocbs, SYNC_REQUESTS, 0);
	ASSERT_NE(NULL, t);
	t->res_of = res_of;
	for (k = 0; k < SYNC_REQUESTS; k++) {
		if (with_reads && !(k & 1)) {
			kaio_prep_read(&iocbs[k], fd, buf, KAIO_BLOCK,
				       k * KAIO_BLOCK, small.fd, k + 1);
			res_of[k + 1] = KAIO_BLOCK;
		} else {
			kaio_prep_fsync(&iocbs[k], fd,
					k & (with_reads ? 2 : 1), small.fd,
					k + 1);
			res_of[k + 1] = 0;
		}
		batch[k] = &iocbs[k];
	}
	ASSERT_EQ(SYNC_REQUESTS, sys_io_submit(aio, SYNC_REQUESTS, batch)) {
		TH_LOG("io_submit: %s", strerror(errno));
	}
	wait_arrived(_metadata, &small, SYNC_REQUESTS);
	EXPECT_EQ(room, asyncfd_ring_ready(&small));
	EXPECT_EQ(SYNC_REQUESTS - room, waiting_in_kernel(small.fd));
	EXPECT_EQ(0, aio_ring_held(aio));

	consume(_metadata, t, &small, SYNC_REQUESTS, WAIT_EPOLL);
	expect_tally_complete(_metadata, t);
	EXPECT_EQ(SYNC_REQUESTS, t->via_ring);
	EXPECT_EQ(SYNC_REQUESTS - room, fdinfo_waited_total(small.fd));
	EXPECT_EQ(0, aio_ring_events(aio));
	asyncfd_ring_exit(&small);
	tally_free(t);
	free(buf);
}

/*
 * aio runs IOCB_CMD_FSYNC and IOCB_CMD_FDSYNC in a workqueue, which
 * completes them there: in process context, but not the submitter's.
 * Each must reach the ring exactly once with the result of the fsync,
 * 0, and those that find the ring full wait like any other.  Catches a
 * kernel that delivers to the asyncfd only the completions of reads and
 * writes (the fsyncs land in the aio ring and the watchdog fails the
 * wait), that takes res from anything but the fsync, or that puts the
 * file of a request without I/O of its own twice (KASAN).
 */
TEST_F(kaio, fsyncs_deliver_once_through_the_ring)
{
	syncs_through_small_ring(_metadata, self->aio, self->fd, false);
}

/*
 * Reads and fsyncs in one io_submit(), which complete in different
 * places: the reads where the variant completes them, the fsyncs in the
 * workqueue, and in the ring they queue up together.  Catches results
 * of one kind that go astray, or that carry the res of the other.
 */
TEST_F(kaio, reads_and_fsyncs_in_one_submit)
{
	syncs_through_small_ring(_metadata, self->aio, self->fd, true);
}

#define MT_SUBMITTERS		2
#define MT_BATCH		8
#define MT_WINDOW		4	/* batches in flight per submitter */
#define MT_ROUNDS		128
#define MT_RING			16
#define MT_RINGS		3
#define MT_PER_SUBMITTER	(MT_ROUNDS * MT_BATCH)
#define MT_TOTAL		(MT_SUBMITTERS * MT_PER_SUBMITTER)

/*
 * The asyncfd that each iocb of a batch names, A B A C A A B C: A first
 * and most, switches between all three, and a run of two.
 */
static const unsigned int mt_pattern[MT_BATCH] = { 0, 1, 0, 2, 0, 0, 1, 2 };

struct mt;

struct mt_submitter {
	struct mt *mt;
	unsigned int id;
	int error;		/* errno of a failed io_submit() */
	pthread_t thread;
	struct iocb iocbs[MT_WINDOW * MT_BATCH];
};

struct mt {
	aio_context_t aio;
	int fd;
	char *buf;
	struct asyncfd_ring rings[MT_RINGS];
	int failed;		/* an eventfd: a submitter gave up */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned int done[MT_SUBMITTERS];	/* under lock */
	bool stop;				/* under lock */
	unsigned int got;	/* stored with atomics: the watchdog reads it */
	unsigned int duplicates;
	unsigned int bad;
	unsigned int wrong_ring;
	unsigned int delivered[MT_RINGS];
	unsigned int flushes;
	unsigned char seen[MT_TOTAL];
	struct mt_submitter sub[MT_SUBMITTERS];
};

static void *mt_submit(void *arg)
{
	struct mt_submitter *s = arg;
	struct mt *mt = s->mt;
	unsigned int round, i;

	for (round = 0; round < MT_ROUNDS; round++) {
		struct iocb *batch[MT_BATCH];
		bool stop;
		int ret;

		pthread_mutex_lock(&mt->lock);
		while (!mt->stop &&
		       round * MT_BATCH - mt->done[s->id] > (MT_WINDOW - 1) * MT_BATCH)
			pthread_cond_wait(&mt->cond, &mt->lock);
		stop = mt->stop;
		pthread_mutex_unlock(&mt->lock);
		if (stop)
			break;
		for (i = 0; i < MT_BATCH; i++) {
			unsigned int k = (round % MT_WINDOW) * MT_BATCH + i;
			uint64_t cookie = s->id * MT_PER_SUBMITTER +
					  round * MT_BATCH + i + 1;

			kaio_prep_read(&s->iocbs[k], mt->fd, mt->buf, KAIO_BLOCK,
				       (cookie % KAIO_SPAN_BLOCKS) * KAIO_BLOCK,
				       mt->rings[mt_pattern[i]].fd, cookie);
			batch[i] = &s->iocbs[k];
		}
		ret = sys_io_submit(mt->aio, MT_BATCH, batch);
		if (ret != MT_BATCH) {
			s->error = ret < 0 ? errno : EAGAIN;
			eventfd_write(mt->failed, 1);
			break;
		}
	}
	return NULL;
}

static void mt_take(struct mt *mt, unsigned int ring,
		    const struct asyncfd_result *res, unsigned int *done)
{
	uint64_t index = res->cookie - 1;
	unsigned int id, n, i, k;

	__atomic_store_n(&mt->got, mt->got + 1, __ATOMIC_RELAXED);
	if (!res->cookie || index >= MT_TOTAL) {
		mt->bad++;
		return;
	}
	if (mt->seen[index]++) {
		mt->duplicates++;
		return;
	}
	id = index / MT_PER_SUBMITTER;
	n = index % MT_PER_SUBMITTER;
	i = n % MT_BATCH;
	k = (n / MT_BATCH % MT_WINDOW) * MT_BATCH + i;
	done[id]++;
	mt->delivered[ring]++;
	if (mt_pattern[i] != ring)
		mt->wrong_ring++;
	if (res->obj != (uintptr_t)&mt->sub[id].iocbs[k] ||
	    res->res != KAIO_BLOCK)
		mt->bad++;
}

/* Reap every ring and flush what waits; how much happened, or -errno. */
static int mt_reap(struct mt *mt)
{
	unsigned int done[MT_SUBMITTERS] = { 0 };
	struct asyncfd_result res[32];
	unsigned int n, i, r, id;
	int ret, progress = 0;

	for (r = 0; r < MT_RINGS; r++) {
		while ((n = asyncfd_reap(&mt->rings[r], res, ARRAY_SIZE(res)))) {
			for (i = 0; i < n; i++)
				mt_take(mt, r, &res[i], done);
			progress += n;
		}
		if (asyncfd_waiting(&mt->rings[r])) {
			ret = asyncfd_flush(&mt->rings[r]);
			if (ret < 0)
				return ret;
			mt->flushes++;
			progress++;
		}
	}
	pthread_mutex_lock(&mt->lock);
	for (id = 0; id < MT_SUBMITTERS; id++)
		mt->done[id] += done[id];
	pthread_cond_broadcast(&mt->cond);
	pthread_mutex_unlock(&mt->lock);
	return progress;
}

static void mt_report(void *arg)
{
	struct mt *mt = arg;
	unsigned int r;

	printf("# %u of %u results taken\n",
	       __atomic_load_n(&mt->got, __ATOMIC_RELAXED), MT_TOTAL);
	for (r = 0; r < MT_RINGS; r++)
		printf("# ring %u holds %u, kflags %#x, %lld wait in the kernel\n",
		       r, asyncfd_ring_ready(&mt->rings[r]),
		       __atomic_load_n(&mt->rings[r].hdr->kflags, __ATOMIC_ACQUIRE),
		       fdinfo_get(mt->rings[r].fd, "asyncfd-waiting"));
	printf("# the aio ring holds %u events\n", aio_ring_held(mt->aio));
}

/* VmPin once it equals @kb; a watchdog fails the test if it never does. */
static long long vmpin_watched(long long kb)
{
	static const unsigned int still;
	struct kaio_watch w;
	long long now;

	if (kaio_watch_start(&w, &still, NULL, NULL))
		return vmpin_now_kb();
	while ((now = vmpin_settled(kb)) != kb)
		;
	kaio_watch_stop(&w);
	return now;
}

/*
 * Two threads submit at once to one aio context, each io_submit()
 * naming three asyncfds in turn, A B A C A A B C, while a third thread
 * consumes: the process shares its fd table, so io_submit() takes and
 * drops a real file reference for each switch.  The context keeps a
 * reference on A, the first asyncfd it saw, which the requests naming A
 * borrow, and those naming B or C hold their own.  Every result must
 * come once, into the ring its iocb named, and every asyncfd must be
 * released by its close.  Catches a reference dropped wrongly when one
 * io_submit() names several asyncfds, or when a request's reference is
 * taken for the borrowed one or the other way round (the file or the
 * context is released early: results go to the aio ring, or KASAN sees
 * the use after free), and one never dropped (the ring stays pinned
 * after the close, or kmemleak finds the context).
 */
TEST_F_TIMEOUT(kaio, threads_submit_to_several_asyncfds, 120)
{
	struct mt *mt = calloc(1, sizeof(*mt));
	struct kaio_watch w;
	struct pollfd pfd[MT_RINGS + 1];
	unsigned int s, missing = 0, i;
	long long vmpin;
	int ret = 0;

	ASSERT_NE(NULL, mt);
	vmpin = vmpin_now_kb();
	mt->aio = self->aio;
	mt->fd = self->fd;
	ASSERT_EQ(0, posix_memalign((void **)&mt->buf, KAIO_BLOCK, KAIO_BLOCK));
	for (i = 0; i < MT_RINGS; i++) {
		ASSERT_EQ(0, asyncfd_ring_setup(&mt->rings[i], MT_RING,
						ASYNCFD_CLOEXEC));
		pfd[i] = (struct pollfd){ .fd = mt->rings[i].fd, .events = POLLIN };
	}
	mt->failed = eventfd(0, EFD_CLOEXEC);
	ASSERT_LE(0, mt->failed);
	ASSERT_EQ(0, pthread_mutex_init(&mt->lock, NULL));
	ASSERT_EQ(0, pthread_cond_init(&mt->cond, NULL));
	pfd[MT_RINGS] = (struct pollfd){ .fd = mt->failed, .events = POLLIN };

	ASSERT_EQ(0, kaio_watch_start(&w, &mt->got, mt_report, mt));
	for (s = 0; s < MT_SUBMITTERS; s++) {
		mt->sub[s].mt = mt;
		mt->sub[s].id = s;
		ASSERT_EQ(0, pthread_create(&mt->sub[s].thread, NULL, mt_submit,
					    &mt->sub[s]));
	}
	while (mt->got < MT_TOTAL && !mt->bad && !mt->duplicates &&
	       !mt->wrong_ring) {
		ret = mt_reap(mt);
		if (ret < 0)
			break;
		if (ret)
			continue;
		if (poll(pfd, ARRAY_SIZE(pfd), -1) < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		if (pfd[MT_RINGS].revents)
			break;
	}
	pthread_mutex_lock(&mt->lock);
	mt->stop = true;
	pthread_cond_broadcast(&mt->cond);
	pthread_mutex_unlock(&mt->lock);
	for (s = 0; s < MT_SUBMITTERS; s++) {
		pthread_join(mt->sub[s].thread, NULL);
		EXPECT_EQ(0, mt->sub[s].error) {
			TH_LOG("submitter %u: io_submit: %s", s,
			       strerror(mt->sub[s].error));
		}
	}
	kaio_watch_stop(&w);
	ASSERT_LE(0, ret) TH_LOG("consumer: %s", strerror(-ret));

	for (i = 0; i < MT_TOTAL; i++)
		missing += !mt->seen[i];
	EXPECT_EQ(MT_TOTAL, mt->got);
	EXPECT_EQ(0, missing);
	EXPECT_EQ(0, mt->duplicates);
	EXPECT_EQ(0, mt->wrong_ring);
	EXPECT_EQ(0, mt->bad);
	EXPECT_EQ(0, aio_ring_events(self->aio));
	for (i = 0; i < MT_RINGS; i++) {
		ksft_print_msg("ring %u of %d: %lld of %u results waited\n",
			       i, MT_RING,
			       fdinfo_get(mt->rings[i].fd, "asyncfd-waited-total"),
			       mt->delivered[i]);
		asyncfd_ring_exit(&mt->rings[i]);
	}
	EXPECT_EQ(vmpin, vmpin_watched(vmpin));
	close(mt->failed);
	pthread_cond_destroy(&mt->cond);
	pthread_mutex_destroy(&mt->lock);
	free(mt->buf);
	free(mt);
}

/*
 * Requests that take this long, so that they are in flight through a
 * close, io_destroy(), exit or swap that follows their io_submit() at
 * once, even on an emulated CPU with a debug kernel.  null_blk arms a
 * request's timer as io_submit() queues it, and a timer never fires
 * early, so no request completes sooner than SLOW_NSEC after a clock
 * read taken before its io_submit().  Each test asserts that its close,
 * io_destroy(), exit or swap came sooner than that, and so before every
 * completion: a machine too slow for this fails the test, rather than
 * pass one that missed the window it is about.
 */
#define SLOW_NSEC	(200 * 1000 * 1000)
#define SLOW_REQUESTS	32
#define SLOW_SMALL_RING	4

FIXTURE(slow) {
	aio_context_t aio;
	struct asyncfd_ring ring;
	struct nullb nb;
	struct iocb iocbs[SLOW_REQUESTS];
	struct tally *t;
	char *buf;
	int fd;
	unsigned int steps;	/* a watchdog's progress through the test */
};

FIXTURE_SETUP(slow)
{
	int ret;

	self->fd = -1;
	self->ring = (struct asyncfd_ring){ .fd = -1 };
	memset(&self->nb, 0, sizeof(self->nb));
	/* Each test makes the ring it needs; this one only asks for asyncfd(). */
	ret = asyncfd_ring_setup(&self->ring, 2, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	asyncfd_ring_exit(&self->ring);
	ret = sys_io_setup(64, &self->aio);
	if (ret && errno == ENOSYS)
		MISSING(return, "kernel AIO not supported");
	ASSERT_EQ(0, ret);
	self->fd = nullb_open(&self->nb, "asyncfd_slow", 2, SLOW_NSEC);
	if (self->fd == -ENOENT)
		MISSING(return, "null_blk configfs not available");
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, posix_memalign((void **)&self->buf, KAIO_BLOCK, KAIO_BLOCK));
	self->t = tally_new(SLOW_REQUESTS, self->iocbs, SLOW_REQUESTS,
			    KAIO_BLOCK);
	ASSERT_NE(NULL, self->t);
}

FIXTURE_TEARDOWN(slow)
{
	tally_free(self->t);
	free(self->buf);
	if (self->aio)
		sys_io_destroy(self->aio);
	if (self->fd >= 0)
		close(self->fd);
	nullb_destroy(&self->nb);
	asyncfd_ring_exit(&self->ring);
}

static void slow_report(void *arg)
{
	unsigned int *steps = arg;

	printf("# stuck after step %u\n", __atomic_load_n(steps, __ATOMIC_RELAXED));
}

static void step(unsigned int *steps)
{
	__atomic_store_n(steps, *steps + 1, __ATOMIC_RELAXED);
}

/*
 * That @at, a mono_ns() time, came before any request submitted after
 * @submitted could complete: @what happened while all were in flight.
 */
static void assert_in_flight(struct __test_metadata *_metadata,
			     int64_t submitted, int64_t at, const char *what)
{
	long long ms = (at - submitted) / 1000000;

	ASSERT_GT(SLOW_NSEC, at - submitted) {
		TH_LOG("%s came %lld ms after the io_submit(), when the reads may have completed",
		       what, ms);
	}
	ksft_print_msg("%s came %lld ms after the io_submit(), before any read completed\n",
		       what, ms);
}

#define SLOW_FIRST	8	/* the close test's reads that wait */

/*
 * Closing the asyncfd sends to the aio ring both the results that wait
 * in it and those of the requests still in flight: the requests hold
 * the asyncfd context, not the file, and find it released.  SLOW_FIRST
 * reads complete first, and all but SLOW_SMALL_RING - 1 of them wait;
 * the rest are submitted right before the close, which comes before any
 * of them completes.  The close puts exactly those that waited in the
 * aio ring; the others reach it as they complete, after the close, and
 * none reaches the ring memory, which is ours alone again.  Catches a
 * release that drops waiting results or sends them twice, and a
 * completion after the release that stores into the released ring,
 * uses it after it was freed (KASAN), or goes nowhere (io_getevents()
 * waits for ever, and the watchdog fails the test).
 */
TEST_F(slow, close_with_requests_in_flight)
{
	unsigned int room = SLOW_SMALL_RING - 1;
	unsigned int rest = SLOW_REQUESTS - SLOW_FIRST;
	int64_t submitted;
	unsigned int held;

	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, SLOW_SMALL_RING,
					ASYNCFD_CLOEXEC));
	submit_reads(_metadata, self->aio, self->fd, self->buf, self->iocbs, 0,
		     SLOW_FIRST, self->ring.fd);
	wait_arrived(_metadata, &self->ring, SLOW_FIRST);
	ASSERT_EQ(SLOW_FIRST - room, waiting_in_kernel(self->ring.fd));
	EXPECT_EQ(SLOW_FIRST - room, fdinfo_waited_total(self->ring.fd));

	submitted = mono_ns();
	submit_reads(_metadata, self->aio, self->fd, self->buf, self->iocbs,
		     SLOW_FIRST, rest, self->ring.fd);
	EXPECT_EQ(0, close(self->ring.fd));
	self->ring.fd = -1;
	held = aio_ring_held(self->aio);
	assert_in_flight(_metadata, submitted, mono_ns(), "close()");
	EXPECT_EQ(SLOW_FIRST - room, held);

	EXPECT_EQ(room, tally_reap(self->t, &self->ring));
	getevents(_metadata, self->t, self->aio, SLOW_REQUESTS - room);
	EXPECT_EQ(0, tally_reap(self->t, &self->ring));
	EXPECT_EQ(0, aio_ring_events(self->aio));
	expect_tally_complete(_metadata, self->t);
	EXPECT_EQ(room, self->t->via_ring);
	ksft_print_msg("%u in the ring, %u waited, to the aio ring at the close, %u after it\n",
		       room, held, rest);
}

/*
 * io_destroy() with every request in flight, into a ring of
 * SLOW_SMALL_RING: io_destroy() waits for the I/O, as it always has, but
 * not for the results that then wait in the asyncfd, which enter the
 * ring only after it returned, as the consumer makes room.  Catches an
 * io_destroy() that waits for results that only the consumer can let in
 * (it never returns, and the watchdog fails the test), one that returns
 * before the I/O is done, and one that drops waiting results with the
 * context or uses the freed context when they enter the ring (KASAN).
 */
TEST_F(slow, destroy_with_requests_in_flight)
{
	unsigned int room = SLOW_SMALL_RING - 1;
	int64_t submitted, called;
	struct kaio_watch w;

	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, SLOW_SMALL_RING,
					ASYNCFD_CLOEXEC));
	submitted = mono_ns();
	submit_reads(_metadata, self->aio, self->fd, self->buf, self->iocbs, 0,
		     SLOW_REQUESTS, self->ring.fd);
	ASSERT_EQ(0, kaio_watch_start(&w, &self->steps, slow_report,
				      &self->steps));
	called = mono_ns();
	EXPECT_EQ(0, sys_io_destroy(self->aio));
	step(&self->steps);
	kaio_watch_stop(&w);
	self->aio = 0;
	assert_in_flight(_metadata, submitted, called, "io_destroy()");
	EXPECT_EQ(room, asyncfd_ring_ready(&self->ring));
	EXPECT_EQ(SLOW_REQUESTS - room, waiting_in_kernel(self->ring.fd));

	consume(_metadata, self->t, &self->ring, SLOW_REQUESTS, WAIT_POLL);
	expect_tally_complete(_metadata, self->t);
	EXPECT_EQ(SLOW_REQUESTS, self->t->via_ring);
	EXPECT_EQ(SLOW_REQUESTS - room, fdinfo_waited_total(self->ring.fd));
	EXPECT_EQ(SLOW_REQUESTS - room, fdinfo_waiting_peak(self->ring.fd));
}

/*
 * The same for a process that exits with requests in flight naming an
 * inherited asyncfd: its exit waits for the I/O but not for the results
 * that wait, and they reach the parent's ring after the child is gone.
 * The child's exit status says whether it began to exit before any
 * read could complete.  Catches an exit that hangs on them (the child
 * never becomes a zombie, and the watchdog fails the test) or loses
 * them with the child's contexts.
 */
TEST_F(slow, exit_with_requests_in_flight)
{
	unsigned int room = SLOW_SMALL_RING - 1;
	struct kaio_watch w;
	pid_t pid;
	int status;

	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, SLOW_SMALL_RING,
					ASYNCFD_CLOEXEC));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid) {
		struct iocb *batch[SLOW_REQUESTS];
		aio_context_t aio;
		int64_t submitted;
		unsigned int k;

		/* The iocbs at the parent's addresses: obj names them alike. */
		for (k = 0; k < SLOW_REQUESTS; k++) {
			kaio_prep_read(&self->iocbs[k], self->fd, self->buf,
				       KAIO_BLOCK, k * KAIO_BLOCK,
				       self->ring.fd, k + 1);
			batch[k] = &self->iocbs[k];
		}
		if (sys_io_setup(SLOW_REQUESTS, &aio))
			_exit(2);
		submitted = mono_ns();
		if (sys_io_submit(aio, SLOW_REQUESTS, batch) != SLOW_REQUESTS)
			_exit(3);
		_exit(mono_ns() - submitted < SLOW_NSEC ? 0 : 4);
	}
	ASSERT_EQ(0, kaio_watch_start(&w, &self->steps, slow_report,
				      &self->steps));
	status = wait_child(pid);
	step(&self->steps);
	kaio_watch_stop(&w);
	ASSERT_EQ(0, status) {
		TH_LOG("%s", status == 4 ?
		       "the child exited when the reads may have completed" :
		       "the child could not submit");
	}
	EXPECT_EQ(room, asyncfd_ring_ready(&self->ring));
	EXPECT_EQ(SLOW_REQUESTS - room, waiting_in_kernel(self->ring.fd));

	consume(_metadata, self->t, &self->ring, SLOW_REQUESTS, WAIT_EPOLL);
	expect_tally_complete(_metadata, self->t);
	EXPECT_EQ(SLOW_REQUESTS, self->t->via_ring);
	EXPECT_EQ(SLOW_REQUESTS - room, fdinfo_waited_total(self->ring.fd));
}

#define SLOW_NEXT_RING	8

/*
 * A swap with results waiting and requests in flight.  Half the reads
 * complete into a ring of SLOW_SMALL_RING, where most wait; the other
 * half are submitted, and the swap, to a ring of SLOW_NEXT_RING, comes
 * before any of them completes.  At the swap, as many waiting results
 * as fit move into the new ring, oldest first, and the rest keep
 * waiting; the reads in flight complete after it, and wait behind them.
 * The old ring keeps what it held, and the kernel no longer writes it.
 * Catches a swap that leaves waiting results behind (they would enter
 * only at the next post), that loses them or moves more than fit, that
 * lets a later completion jump the queue, or that writes the old ring
 * afterwards, and a completion after the swap that goes to the old ring
 * or is lost.
 */
TEST_F(slow, swap_with_requests_in_flight)
{
	unsigned int half = SLOW_REQUESTS / 2, room = SLOW_SMALL_RING - 1;
	unsigned int next_room = SLOW_NEXT_RING - 1, old_tail, i;
	long long waiting, moved_first = 0;
	struct asyncfd_ring next;
	int64_t submitted;

	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, SLOW_SMALL_RING,
					ASYNCFD_CLOEXEC));
	ASSERT_EQ(0, asyncfd_ring_map(&next, SLOW_NEXT_RING));
	submit_reads(_metadata, self->aio, self->fd, self->buf, self->iocbs, 0,
		     half, self->ring.fd);
	wait_arrived(_metadata, &self->ring, half);
	ASSERT_EQ(room, asyncfd_ring_ready(&self->ring));
	ASSERT_EQ(half - room, waiting_in_kernel(self->ring.fd));

	submitted = mono_ns();
	submit_reads(_metadata, self->aio, self->fd, self->buf, self->iocbs,
		     half, half, self->ring.fd);
	ASSERT_EQ(0, asyncfd_ring_swap(&self->ring, &next));
	waiting = waiting_in_kernel(next.fd);
	for (i = 0; i < asyncfd_ring_ready(&next); i++)
		moved_first += next.entries[i].cookie <= half;
	assert_in_flight(_metadata, submitted, mono_ns(), "the swap");
	old_tail = self->ring.hdr->ikernel;
	EXPECT_EQ(room, asyncfd_ring_ready(&self->ring));
	EXPECT_EQ(next_room, moved_first);
	EXPECT_EQ(half - room - next_room, waiting);
	EXPECT_TRUE(asyncfd_waiting(&next));

	wait_arrived(_metadata, &next, SLOW_REQUESTS - room);
	EXPECT_EQ(next_room, asyncfd_ring_ready(&next));
	EXPECT_EQ(SLOW_REQUESTS - room, fdinfo_waited_total(next.fd));
	EXPECT_EQ(SLOW_REQUESTS - room - next_room,
		  fdinfo_waiting_peak(next.fd));
	EXPECT_EQ(room, tally_reap(self->t, &self->ring));
	consume(_metadata, self->t, &next, SLOW_REQUESTS, WAIT_READ);
	EXPECT_EQ(old_tail, self->ring.hdr->ikernel);
	EXPECT_EQ(0, asyncfd_ring_ready(&self->ring));
	expect_tally_complete(_metadata, self->t);
	EXPECT_EQ(SLOW_REQUESTS, self->t->via_ring);
	EXPECT_EQ(0, aio_ring_events(self->aio));
	asyncfd_ring_exit(&next);
}

struct submitter {
	aio_context_t aio;
	pthread_barrier_t *start;
	struct iocb **batch;
	long nr;
	int ret;
	int error;
	pthread_t thread;
};

static void *submit_at_start(void *arg)
{
	struct submitter *s = arg;

	pthread_barrier_wait(s->start);
	s->ret = sys_io_submit(s->aio, s->nr, s->batch);
	s->error = s->ret < 0 ? errno : 0;
	return NULL;
}

/*
 * Two threads at once submit SLOW_REQUESTS / 2 reads each, in one
 * io_submit(), to one aio context, naming asyncfds A, B and C in the
 * order of threads_submit_to_several_asyncfds, A first; then the
 * asyncfds in the mask @closed close while every read is in flight.
 * The results of a closed asyncfd go to the aio ring, those of an open
 * one to its ring of SLOW_SMALL_RING, where most wait: each exactly
 * once, and in its place.  Last, io_destroy() lets the context's
 * reference on A go, so that kmemleak, which the harness runs, would
 * find a reference left over.
 */
static void close_in_flight(struct __test_metadata *_metadata,
			    aio_context_t *aio, int fd, char *buf,
			    unsigned int closed)
{
	unsigned int room = SLOW_SMALL_RING - 1, half = SLOW_REQUESTS / 2;
	unsigned int nr[MT_RINGS] = { 0 }, to_aio = 0, k, r;
	struct iocb iocbs[SLOW_REQUESTS], *batch[SLOW_REQUESTS];
	unsigned char dest[SLOW_REQUESTS + 1];
	struct asyncfd_ring rings[MT_RINGS];
	struct submitter sub[2];
	pthread_barrier_t start;
	int64_t submitted;
	struct tally *t;
	long long vmpin;

	vmpin = vmpin_now_kb();
	t = tally_new(SLOW_REQUESTS, iocbs, SLOW_REQUESTS, KAIO_BLOCK);
	ASSERT_NE(NULL, t);
	for (r = 0; r < MT_RINGS; r++)
		ASSERT_EQ(0, asyncfd_ring_setup(&rings[r], SLOW_SMALL_RING,
						ASYNCFD_CLOEXEC));
	/* dest[]: 0 for the aio ring, r + 1 for ring r */
	for (k = 0; k < SLOW_REQUESTS; k++) {
		r = mt_pattern[k % MT_BATCH];
		kaio_prep_read(&iocbs[k], fd, buf, KAIO_BLOCK, k * KAIO_BLOCK,
			       rings[r].fd, k + 1);
		batch[k] = &iocbs[k];
		dest[k + 1] = closed & (1 << r) ? 0 : r + 1;
		if (closed & (1 << r))
			to_aio++;
		else
			nr[r]++;
	}
	t->dest = dest;

	ASSERT_EQ(0, pthread_barrier_init(&start, NULL, 3));
	for (k = 0; k < 2; k++) {
		sub[k] = (struct submitter){
			.aio = *aio, .start = &start,
			.batch = batch + k * half, .nr = half,
		};
		ASSERT_EQ(0, pthread_create(&sub[k].thread, NULL,
					    submit_at_start, &sub[k]));
	}
	submitted = mono_ns();
	pthread_barrier_wait(&start);
	for (k = 0; k < 2; k++) {
		pthread_join(sub[k].thread, NULL);
		EXPECT_EQ(half, sub[k].ret) {
			TH_LOG("thread %u: io_submit: %s", k,
			       strerror(sub[k].error));
		}
	}
	for (r = 0; r < MT_RINGS; r++) {
		if (closed & (1 << r)) {
			EXPECT_EQ(0, close(rings[r].fd));
			rings[r].fd = -1;
		}
	}
	EXPECT_EQ(0, aio_ring_held(*aio));
	assert_in_flight(_metadata, submitted, mono_ns(), "the close");

	for (r = 0; r < MT_RINGS; r++) {
		if (rings[r].fd < 0)
			continue;
		wait_arrived(_metadata, &rings[r], nr[r]);
		EXPECT_EQ(nr[r] - room, waiting_in_kernel(rings[r].fd));
	}
	getevents(_metadata, t, *aio, to_aio);
	for (r = 0; r < MT_RINGS; r++) {
		t->source = r + 1;
		if (rings[r].fd < 0) {
			EXPECT_EQ(0, tally_reap(t, &rings[r]));
			continue;
		}
		consume(_metadata, t, &rings[r], t->got + nr[r], WAIT_EPOLL);
		EXPECT_EQ(nr[r] - room, fdinfo_waited_total(rings[r].fd));
	}
	expect_tally_complete(_metadata, t);
	EXPECT_EQ(to_aio, t->via_getevents);
	EXPECT_EQ(0, aio_ring_events(*aio));
	ksft_print_msg("%u results to the aio ring, %u to the open rings\n",
		       to_aio, SLOW_REQUESTS - to_aio);

	EXPECT_EQ(0, sys_io_destroy(*aio));
	*aio = 0;
	for (r = 0; r < MT_RINGS; r++)
		asyncfd_ring_exit(&rings[r]);
	EXPECT_EQ(vmpin, vmpin_watched(vmpin));
	pthread_barrier_destroy(&start);
	tally_free(t);
}

/*
 * A, whose reference the aio context holds and its requests borrow,
 * closes with C while their reads are in flight.  Catches a completion
 * that drops the borrowed reference as if it were its own, or one whose
 * context was freed with the file (KASAN either way), and a reference
 * never dropped (kmemleak).
 */
TEST_F(slow, first_asyncfd_closed_with_requests_in_flight)
{
	close_in_flight(_metadata, &self->aio, self->fd, self->buf,
			1 << 0 | 1 << 2);
}

/*
 * B and C, named after A and so referenced by each request of their
 * own, close while their reads are in flight, and A stays open.
 * Catches a request that borrows a reference it does not have, or
 * keeps one for ever, and results sent to the wrong ring.
 */
TEST_F(slow, later_asyncfds_closed_with_requests_in_flight)
{
	close_in_flight(_metadata, &self->aio, self->fd, self->buf,
			1 << 1 | 1 << 2);
}

#define LATE_MAX	1024	/* more requests than any context here takes */

/*
 * Reads in flight when their asyncfd is released complete into the aio
 * ring, and keep their reservations there until userspace reaps their
 * events, as requests without the flag do: a context filled with them
 * takes nothing more until then.  The context is filled with reads that
 * name the asyncfd, which is closed before any completes.  Catches a
 * completion that finds the asyncfd released and gives its reservation
 * back as if its event had gone to the asyncfd ring: io_submit() then
 * queues more events than the aio ring holds.
 */
TEST_F(slow, late_completions_keep_their_reservations)
{
	struct io_event events[64];
	struct iocb *iocbs, *extra;
	unsigned char *seen;
	int64_t submitted;
	int taken, got, n, i;

	iocbs = calloc(LATE_MAX + 1, sizeof(*iocbs));
	seen = calloc(LATE_MAX + 2, 1);
	ASSERT_NE(NULL, iocbs);
	ASSERT_NE(NULL, seen);
	ASSERT_EQ(0, asyncfd_ring_setup(&self->ring, SLOW_SMALL_RING,
					ASYNCFD_CLOEXEC));
	submitted = mono_ns();
	taken = submit_until_eagain(self->aio, self->fd, self->buf, iocbs, 0,
				    LATE_MAX, self->ring.fd);
	EXPECT_EQ(0, close(self->ring.fd));
	self->ring.fd = -1;
	assert_in_flight(_metadata, submitted, mono_ns(), "close()");
	ASSERT_LT(0, taken);
	ASSERT_GT(LATE_MAX, taken);

	/* Every event reaches the aio ring, and none leaves it unreaped. */
	while (aio_ring_held(self->aio) < (unsigned int)taken)
		usleep(1000);
	EXPECT_EQ(taken, aio_ring_held(self->aio));
	EXPECT_EQ(0, submit_until_eagain(self->aio, self->fd, self->buf, iocbs,
					 LATE_MAX, LATE_MAX + 1, -1)) {
		TH_LOG("a context full of unreaped events took another request");
	}

	for (got = 0; got < taken; got += n) {
		n = sys_io_getevents(self->aio, 1, ARRAY_SIZE(events), events,
				     NULL);
		ASSERT_LT(0, n);
		for (i = 0; i < n; i++) {
			uint64_t cookie = events[i].data;

			ASSERT_TRUE(cookie >= 1 && cookie <= (uint64_t)taken);
			ASSERT_EQ(0, seen[cookie]);
			seen[cookie] = 1;
			EXPECT_EQ(KAIO_BLOCK, events[i].res);
		}
	}
	EXPECT_EQ(taken, got);

	/* Reaped, the events give their slots back. */
	extra = &iocbs[LATE_MAX];
	ASSERT_EQ(1, submit_until_eagain(self->aio, self->fd, self->buf, iocbs,
					 LATE_MAX, LATE_MAX + 1, -1));
	ASSERT_EQ(1, sys_io_getevents(self->aio, 1, 1, events, NULL));
	EXPECT_EQ((uintptr_t)extra, events[0].obj);
	ksft_print_msg("%d reads completed into the aio ring after the close\n",
		       taken);
	free(seen);
	free(iocbs);
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
	EXPECT_FALSE(asyncfd_waiting(&ring));
	EXPECT_EQ(0, aio_ring_events(aio));

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

/*
 * A poll iocb on the asyncfd itself, delivering into it, completes while
 * the ring is full, so its completion waits in the asyncfd.  A waiting
 * request that kept its file would keep the asyncfd open for ever: the
 * file would hold the request, and the request the file.  Closing the
 * descriptor must release the asyncfd at once, which unpins the ring
 * and sends the waiting completion to the aio ring.
 */
TEST(poll_on_itself_waits_without_holding_its_file)
{
	struct iocb read_iocb, poll_iocb, *iocbp;
	struct asyncfd_ring ring;
	struct io_event ev;
	aio_context_t aio = 0;
	long long before;
	int fd, ret;
	char *buf;

	before = vmpin_now_kb();
	ASSERT_LE(0, before);
	/* Two entries: the read's result fills the ring. */
	ret = asyncfd_ring_setup(&ring, 2, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(return, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	fd = make_file("/tmp/asyncfd_kaio_self");
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));
	ASSERT_EQ(0, sys_io_setup(8, &aio));

	kaio_prep_read(&read_iocb, fd, buf, KAIO_BLOCK, 0, ring.fd, 1);
	iocbp = &read_iocb;
	ASSERT_EQ(1, sys_io_submit(aio, 1, &iocbp));
	/* tmpfs completes the read inside io_submit(). */
	ASSERT_EQ(1, asyncfd_ring_ready(&ring));

	memset(&poll_iocb, 0, sizeof(poll_iocb));
	poll_iocb.aio_lio_opcode = IOCB_CMD_POLL;
	poll_iocb.aio_fildes = ring.fd;
	poll_iocb.aio_buf = POLLIN;
	poll_iocb.aio_data = 2;
	poll_iocb.aio_flags = IOCB_FLAG_ASYNCFD;
	poll_iocb.aio_resfd = ring.fd;
	iocbp = &poll_iocb;
	ASSERT_EQ(1, sys_io_submit(aio, 1, &iocbp));
	/* Readable already, so the poll completed and found no room. */
	EXPECT_EQ(1, fdinfo_get(ring.fd, "asyncfd-waiting"));
	EXPECT_TRUE(asyncfd_waiting(&ring));

	asyncfd_ring_exit(&ring);
	/* A watchdog fails the test if the ring is never unpinned. */
	EXPECT_EQ(before, vmpin_watched(before));
	/* The release has run: the completion is in the aio ring. */
	ASSERT_EQ(1, sys_io_getevents(aio, 1, 1, &ev, NULL));
	EXPECT_EQ(2, ev.data);
	EXPECT_EQ((uintptr_t)&poll_iocb, ev.obj);
	EXPECT_TRUE(ev.res & POLLIN);

	EXPECT_EQ(0, sys_io_destroy(aio));
	free(buf);
	close(fd);
}

static long read_sysctl(const char *path)
{
	FILE *f = fopen(path, "re");
	long val = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%ld", &val) != 1)
		val = -1;
	fclose(f);
	return val;
}

static int write_sysctl(const char *path, long val)
{
	FILE *f = fopen(path, "we");
	int ret;

	if (!f)
		return -errno;
	ret = fprintf(f, "%ld\n", val) > 0 ? 0 : -EIO;
	if (fclose(f))
		ret = -errno;
	return ret;
}

#define MAXNR_REQUESTS	32

/*
 * io_destroy() does not wait for requests that wait in an asyncfd, so
 * their destroyed context must keep counting against aio-max-nr until
 * they are gone: otherwise a loop of io_setup(), io_submit() and
 * io_destroy() against a full ring piles up requests without bound.
 * With room for two contexts, the third io_setup() fails while the
 * first two contexts' requests wait, and succeeds once the asyncfd's
 * release has sent them back.
 */
TEST(destroyed_contexts_count_while_requests_wait)
{
	struct iocb iocbs[MAXNR_REQUESTS], *batch[MAXNR_REQUESTS];
	static const char max_nr[] = "/proc/sys/fs/aio-max-nr";
	struct asyncfd_ring ring;
	aio_context_t aio;
	long nr, saved;
	int fd, i, round, ret;
	char *buf;

	saved = read_sysctl(max_nr);
	nr = read_sysctl("/proc/sys/fs/aio-nr");
	ASSERT_LE(0, saved);
	ASSERT_LE(0, nr);
	if (write_sysctl(max_nr, nr + 2 * MAXNR_REQUESTS))
		MISSING(return, "cannot set %s: not root", max_nr);
	ret = asyncfd_ring_setup(&ring, 2, ASYNCFD_CLOEXEC);
	if (ret == -ENOSYS)
		MISSING(goto restore, "asyncfd() not supported");
	ASSERT_EQ(0, ret);
	fd = make_file("/tmp/asyncfd_kaio_maxnr");
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, posix_memalign((void **)&buf, KAIO_BLOCK, KAIO_BLOCK));

	/* One result fills the ring; the rest of each round waits. */
	for (round = 0; round < 2; round++) {
		ASSERT_EQ(0, sys_io_setup(MAXNR_REQUESTS, &aio));
		for (i = 0; i < MAXNR_REQUESTS; i++) {
			kaio_prep_read(&iocbs[i], fd, buf, KAIO_BLOCK, 0,
				       ring.fd, round * MAXNR_REQUESTS + i);
			batch[i] = &iocbs[i];
		}
		ASSERT_EQ(MAXNR_REQUESTS,
			  sys_io_submit(aio, MAXNR_REQUESTS, batch));
		EXPECT_EQ(0, sys_io_destroy(aio));
	}
	EXPECT_EQ(2 * MAXNR_REQUESTS - 1,
		  fdinfo_get(ring.fd, "asyncfd-waiting"));
	aio = 0;
	EXPECT_EQ(-1, sys_io_setup(MAXNR_REQUESTS, &aio));
	EXPECT_EQ(EAGAIN, errno);

	/* The release sends them back, and the contexts go. */
	asyncfd_ring_exit(&ring);
	aio = 0;
	EXPECT_EQ(0, sys_io_setup(MAXNR_REQUESTS, &aio));
	if (aio)
		EXPECT_EQ(0, sys_io_destroy(aio));
	free(buf);
	close(fd);
restore:
	EXPECT_EQ(0, write_sysctl(max_nr, saved));
}

TEST_HARNESS_MAIN
