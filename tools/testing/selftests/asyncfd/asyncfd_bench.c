// SPDX-License-Identifier: GPL-2.0
/*
 * asyncfd_bench: what a result costs through asyncfd, next to what
 * applications use instead.
 *
 * kaio:	4 KiB O_DIRECT reads from null_blk, completed inline
 *		(irqmode 0) or by a timer interrupt (irqmode 2), reaped by
 *		(a) io_getevents, (b) eventfd + epoll + read + io_getevents,
 *		(c) asyncfd + epoll + the ring, (c2) asyncfd + poll() +
 *		the ring, (c3) asyncfd + a blocking read() + the ring,
 *		(d) io_uring (liburing), (e) the aio ring read from user
 *		space, io_getevents only to wait, (f) an edge-triggered
 *		eventfd + epoll + the aio ring read from user space.
 * delivery:	the test producer posting batches into an asyncfd, next to
 *		the bare store loop timed by the same module, and to an
 *		eventfd signalled and read once per result.
 * scale:	delivery into rings of 64 to 1M entries, and what
 *		registering a ring costs by its size.
 *
 * Meant for a guest whose clock counts instructions (QEMU -icount
 * shift=0, as "make bench" boots it), where one run repeats the last.
 * Every figure is the median of REPS runs after a warm-up run, printed
 * with the min and max as one line
 *
 *	bench: <what> <keys...> <min> <median> <max> [<syscalls per I/O>]
 *
 * which harness/bench-report turns into a table and a plot.  Nothing is
 * judged here: the exit status says only whether every run completed.
 *
 * The arguments, or else the words of $ASYNCFD_BENCH (which "make bench
 * BENCH=..." sets on the guest's command line, commas for spaces), name
 * the parts to run: kaio, delivery, scale; all three when none of them
 * is named.  "profile" runs a, c, c2, c3, d, e and f once more at
 * irqmode 0 QD 32 and QD 1 and irqmode 2 QD 1, each between two
 * getppid() calls: QEMU's insncount plugin (harness/insncount.c,
 * "make bench PROFILE=1") counts the instructions of every block
 * between two such marks.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/aio_abi.h>

#include "../kselftest.h"
#include "asyncfd_ring.h"
#include "test_producer.h"

#define REPS			5
#define IO_SIZE			4096
#define IOS_PER_RUN		4096
#define MAX_DEPTH		32
#define KAIO_RING_ENTRIES	256	/* more than MAX_DEPTH: none waits */
#define WATCHDOG_S		10	/* per run; one takes < 0.1 s */
#define NULLB_CONFIG		"/sys/kernel/config/nullb"
#define NODE_WAIT_MS		2000

#define RESULTS_PER_RUN		65536
#define RESULTS_PER_POST	2048	/* a multiple of every batch */
#define DELIVERY_RING_ENTRIES	4096
#define SCALE_BATCH		64
#define EVENTFD_PAIRS		16384

static unsigned long syscalls;

static void die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "asyncfd_bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static void watchdog(int sig)
{
	static const char msg[] = "asyncfd_bench: a run took over 10 s\n";

	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/*
 * The system calls of the measured loops, each counted: syscalls per
 * I/O is a figure of its own.
 */
static int sys_io_setup(unsigned int nr, aio_context_t *ctx)
{
	return syscall(__NR_io_setup, nr, ctx);
}

static int sys_io_destroy(aio_context_t ctx)
{
	return syscall(__NR_io_destroy, ctx);
}

static int sys_io_submit(aio_context_t ctx, long nr, struct iocb **iocbs)
{
	syscalls++;
	return syscall(__NR_io_submit, ctx, nr, iocbs);
}

/*
 * Every consumer waits with no timeout, as io_uring_submit_and_wait()
 * does: a timeout would arm and cancel an hrtimer per sleep, a cost of
 * its own.  The watchdog is an alarm per run.
 */
static int sys_io_getevents(aio_context_t ctx, long min_nr, long nr,
			    struct io_event *events)
{
	syscalls++;
	return syscall(__NR_io_getevents, ctx, min_nr, nr, events, NULL);
}

static void wait_readable(int ep)
{
	struct epoll_event ev;

	syscalls++;
	if (epoll_wait(ep, &ev, 1, -1) != 1)
		die("epoll_wait: %s", strerror(errno));
}

static void poll_readable(int fd)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	syscalls++;
	if (poll(&pfd, 1, -1) != 1)
		die("poll: %s", strerror(errno));
}

static void read_readable(int fd)
{
	uint64_t waiting;

	syscalls++;
	if (read(fd, &waiting, sizeof(waiting)) != sizeof(waiting))
		die("read asyncfd: %s", strerror(errno));
}

static int epoll_for(int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		die("epoll: %s", strerror(errno));
	return ep;
}

/* min, median and max of @n runs, in place */
struct figure {
	double min, median, max;
};

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static struct figure summarize(double *runs, int n)
{
	qsort(runs, n, sizeof(*runs), cmp_double);
	return (struct figure){ runs[0], runs[n / 2], runs[n - 1] };
}

static void print_figure(const char *what, struct figure f)
{
	printf("bench: %s %.1f %.1f %.1f\n", what, f.min, f.median, f.max);
}

static unsigned int marks;

/* A getppid() that the insncount plugin starts or ends a window at */
static void profile_mark(void)
{
	syscall(__NR_getppid);
	marks++;
}

/* ---- kaio: the same reads, several ways to learn they completed ---- */

struct kaio_bench {
	int fd;			/* the null_blk disk, O_DIRECT */
	unsigned int depth;	/* reads in flight */
	char *bufs;
	struct iocb iocbs[MAX_DEPTH];
	struct iocb *batch[MAX_DEPTH];
	unsigned int issued;
	unsigned int done;
	bool profile;		/* mark the timed part for the profiler */
	uint64_t start;		/* of the timed part, in ns */
	uint64_t ns;		/* that it took */
};

/*
 * Power on a null_blk disk whose reads complete inline (irqmode 0) or
 * from a 10 us timer interrupt (irqmode 2), and open it for O_DIRECT
 * reads.  The driver names the disk after its configfs directory:
 * /dev/@prefix_irqmodeN.  A powered disk takes no new irqmode, so each
 * caller passes a prefix of its own.
 */
static int nullb_open(const char *prefix, int irqmode)
{
	const char *attrs[][2] = {
		{ "irqmode", irqmode ? "2" : "0" },
		{ "completion_nsec", "10000" },
		{ "power", "1" },
	};
	char name[32], path[192];
	unsigned int i;
	int fd;

	snprintf(name, sizeof(name), "%s_irqmode%d", prefix, irqmode);
	snprintf(path, sizeof(path), NULLB_CONFIG "/%s", name);
	if (mkdir(path, 0755) && errno != EEXIST)
		die("mkdir %s: %s", path, strerror(errno));
	for (i = 0; i < ARRAY_SIZE(attrs); i++) {
		snprintf(path, sizeof(path), NULLB_CONFIG "/%s/%s", name,
			 attrs[i][0]);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, attrs[i][1], strlen(attrs[i][1])) < 0)
			die("%s: %s", path, strerror(errno));
		close(fd);
	}
	/* devtmpfs makes the node from a kernel thread of its own. */
	snprintf(path, sizeof(path), "/dev/%s", name);
	for (i = 0; i < NODE_WAIT_MS && access(path, R_OK); i++)
		usleep(1000);
	fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		die("%s: %s", path, strerror(errno));
	return fd;
}

static void kaio_prep(struct kaio_bench *kb, unsigned int slot,
		      unsigned int flags, unsigned int resfd)
{
	struct iocb *iocb = &kb->iocbs[slot];

	*iocb = (struct iocb){
		.aio_data = slot,
		.aio_lio_opcode = IOCB_CMD_PREAD,
		.aio_fildes = kb->fd,
		.aio_buf = (uintptr_t)(kb->bufs + slot * IO_SIZE),
		.aio_nbytes = IO_SIZE,
		.aio_offset = (uint64_t)slot * IO_SIZE,
		.aio_flags = flags,
		.aio_resfd = resfd,
	};
}

static void kaio_check(struct kaio_bench *kb, long long res)
{
	if (res != IO_SIZE)
		die("read of %d bytes returned %lld", IO_SIZE, res);
	kb->done++;
}

/* Resubmit the reads @iocbs, as many as there are I/Os left to do. */
static void kaio_resubmit(struct kaio_bench *kb, aio_context_t ctx,
			  struct iocb **iocbs, unsigned int n)
{
	if (n > IOS_PER_RUN - kb->issued)
		n = IOS_PER_RUN - kb->issued;
	if (!n)
		return;
	if (sys_io_submit(ctx, n, iocbs) != (int)n)
		die("io_submit: %s", strerror(errno));
	kb->issued += n;
}

/*
 * A run times its I/O alone, from the first submission to the last
 * completion reaped: each method's setup and teardown (io_setup(), an
 * asyncfd and its ring, an eventfd, epoll, io_uring_queue_init()) are
 * done once by an application, and stay out of the figure.
 */
static void kaio_clock_start(struct kaio_bench *kb)
{
	if (kb->profile)
		profile_mark();
	syscalls = 0;
	kb->start = now_ns();
}

static void kaio_clock_stop(struct kaio_bench *kb)
{
	kb->ns = now_ns() - kb->start;
	if (kb->profile)
		profile_mark();
}

static void kaio_start(struct kaio_bench *kb, aio_context_t ctx)
{
	unsigned int i;

	kaio_clock_start(kb);
	for (i = 0; i < kb->depth; i++)
		kb->batch[i] = &kb->iocbs[i];
	kb->issued = 0;
	kb->done = 0;
	kaio_resubmit(kb, ctx, kb->batch, kb->depth);
}

/* (a) io_submit + io_getevents */
static void kaio_getevents(struct kaio_bench *kb, aio_context_t ctx)
{
	struct io_event events[MAX_DEPTH];
	int i, n;

	for (i = 0; i < (int)kb->depth; i++)
		kaio_prep(kb, i, 0, 0);
	kaio_start(kb, ctx);
	while (kb->done < IOS_PER_RUN) {
		n = sys_io_getevents(ctx, 1, kb->depth, events);
		if (n <= 0)
			die("io_getevents: %d", n);
		for (i = 0; i < n; i++) {
			kaio_check(kb, events[i].res);
			kb->batch[i] = (struct iocb *)(uintptr_t)events[i].obj;
		}
		kaio_resubmit(kb, ctx, kb->batch, n);
	}
	kaio_clock_stop(kb);
}

/* (b) io_submit + eventfd + epoll_wait + read + io_getevents */
static void kaio_eventfd(struct kaio_bench *kb, aio_context_t ctx)
{
	struct io_event events[MAX_DEPTH];
	int efd = eventfd(0, EFD_CLOEXEC);
	int ep = epoll_for(efd);
	uint64_t ready;
	int i, n;

	for (i = 0; i < (int)kb->depth; i++)
		kaio_prep(kb, i, IOCB_FLAG_RESFD, efd);
	kaio_start(kb, ctx);
	while (kb->done < IOS_PER_RUN) {
		wait_readable(ep);
		syscalls++;
		if (read(efd, &ready, sizeof(ready)) != sizeof(ready))
			die("read eventfd: %s", strerror(errno));
		n = sys_io_getevents(ctx, ready, ready, events);
		if (n != (int)ready)
			die("io_getevents: %d of %llu", n,
			    (unsigned long long)ready);
		for (i = 0; i < n; i++) {
			kaio_check(kb, events[i].res);
			kb->batch[i] = (struct iocb *)(uintptr_t)events[i].obj;
		}
		kaio_resubmit(kb, ctx, kb->batch, n);
	}
	kaio_clock_stop(kb);
	close(ep);
	close(efd);
}

/*
 * The aio ring, as fs/aio.c lays it out at the address that io_setup()
 * returns as the context.  No header exports it: the programs that read
 * it (QEMU's block/linux-aio.c, Seastar, SPDK, libev, fio's
 * userspace_reap) declare it themselves and trust it only after checking
 * the magic number and that no incompatible feature is set.
 */
#define AIO_RING_MAGIC	0xa10a10a1

struct aio_user_ring {
	unsigned int id;
	unsigned int nr;		/* entries in io_events[] */
	unsigned int head;		/* written by the consumer */
	unsigned int tail;		/* written by the kernel */
	unsigned int magic;
	unsigned int compat_features;
	unsigned int incompat_features;
	unsigned int header_length;
	struct io_event io_events[];
};

static struct aio_user_ring *aio_user_ring(aio_context_t ctx)
{
	struct aio_user_ring *ring = (struct aio_user_ring *)(uintptr_t)ctx;

	if (ring->magic != AIO_RING_MAGIC || ring->incompat_features)
		die("the aio ring has magic %#x, incompat_features %#x",
		    ring->magic, ring->incompat_features);
	return ring;
}

/* Take up to @max events out of the aio ring, as its readers do. */
static unsigned int aio_ring_reap(struct aio_user_ring *ring,
				  struct io_event *out, unsigned int max)
{
	unsigned int nr = ring->nr;
	unsigned int head = ring->head;
	unsigned int tail = __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
	unsigned int n = 0;

	while (head != tail && n < max) {
		out[n++] = ring->io_events[head];
		if (++head == nr)
			head = 0;
	}
	if (n)
		__atomic_store_n(&ring->head, head, __ATOMIC_RELEASE);
	return n;
}

static void kaio_reap_events(struct kaio_bench *kb, aio_context_t ctx,
			     struct io_event *events, unsigned int n)
{
	unsigned int i;

	for (i = 0; i < n; i++) {
		kaio_check(kb, events[i].res);
		kb->batch[i] = (struct iocb *)(uintptr_t)events[i].obj;
	}
	kaio_resubmit(kb, ctx, kb->batch, n);
}

/*
 * (e) io_submit + the aio ring read from user space, with io_getevents()
 * only when the ring is empty, to wait: fio's libaio engine with
 * userspace_reap=1 and QEMU's linux-aio.
 */
static void kaio_user_reap(struct kaio_bench *kb, aio_context_t ctx)
{
	struct aio_user_ring *ring = aio_user_ring(ctx);
	struct io_event events[MAX_DEPTH];
	unsigned int i;
	int n;

	for (i = 0; i < kb->depth; i++)
		kaio_prep(kb, i, 0, 0);
	kaio_start(kb, ctx);
	while (kb->done < IOS_PER_RUN) {
		n = aio_ring_reap(ring, events, kb->depth);
		if (!n)
			n = sys_io_getevents(ctx, 1, kb->depth, events);
		if (n <= 0)
			die("io_getevents: %d", n);
		kaio_reap_events(kb, ctx, events, n);
	}
	kaio_clock_stop(kb);
}

/*
 * (f) io_submit + an eventfd that epoll watches edge-triggered and
 * nobody reads + the aio ring read from user space: how an event loop
 * (Seastar, libev, SPDK) puts KAIO beside its other fds.  Every
 * completion signals the eventfd, and so queues an edge; the ring is
 * looked at before sleeping, so an edge is never waited for twice.
 */
static void kaio_user_reap_epoll(struct kaio_bench *kb, aio_context_t ctx)
{
	struct aio_user_ring *ring = aio_user_ring(ctx);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	struct io_event events[MAX_DEPTH];
	int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	unsigned int i, n;

	if (efd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev))
		die("eventfd + epoll: %s", strerror(errno));
	for (i = 0; i < kb->depth; i++)
		kaio_prep(kb, i, IOCB_FLAG_RESFD, efd);
	kaio_start(kb, ctx);
	while (kb->done < IOS_PER_RUN) {
		n = aio_ring_reap(ring, events, kb->depth);
		if (!n) {
			wait_readable(ep);
			continue;
		}
		kaio_reap_events(kb, ctx, events, n);
	}
	kaio_clock_stop(kb);
	close(ep);
	close(efd);
}

enum asyncfd_wait { WAIT_EPOLL, WAIT_POLL, WAIT_READ };

/*
 * (c) io_submit + asyncfd + epoll_wait + the ring, (c2) with poll() on
 * the one fd instead of epoll, (c3) with a blocking read() of it.  The
 * ring is looked at before sleeping: a read that completed inline is
 * there already when io_submit returns.  The ring has room for every
 * read in flight, so kflags never says that completions wait; the
 * consumer looks anyway, as every consumer must, and flushes if it does.
 */
static void kaio_asyncfd(struct kaio_bench *kb, aio_context_t ctx,
			 enum asyncfd_wait wait)
{
	struct asyncfd_result results[MAX_DEPTH];
	struct asyncfd_ring ring;
	unsigned int i, n;
	int ep = -1, ret;

	ret = asyncfd_ring_setup(&ring, KAIO_RING_ENTRIES, ASYNCFD_CLOEXEC);
	if (ret)
		die("asyncfd: %s", strerror(-ret));
	if (wait == WAIT_EPOLL)
		ep = epoll_for(ring.fd);
	for (i = 0; i < kb->depth; i++)
		kaio_prep(kb, i, IOCB_FLAG_ASYNCFD, ring.fd);
	kaio_start(kb, ctx);
	while (kb->done < IOS_PER_RUN) {
		n = asyncfd_reap(&ring, results, kb->depth);
		if (!n && asyncfd_waiting(&ring)) {
			syscalls++;
			if (asyncfd_flush(&ring) < 0)
				die("asyncfd flush: %s", strerror(errno));
			continue;
		}
		if (!n) {
			if (wait == WAIT_EPOLL)
				wait_readable(ep);
			else if (wait == WAIT_POLL)
				poll_readable(ring.fd);
			else
				read_readable(ring.fd);
			continue;
		}
		for (i = 0; i < n; i++) {
			kaio_check(kb, results[i].res);
			kb->batch[i] = (struct iocb *)(uintptr_t)results[i].obj;
		}
		kaio_resubmit(kb, ctx, kb->batch, n);
	}
	kaio_clock_stop(kb);
	if (ep >= 0)
		close(ep);
	asyncfd_ring_exit(&ring);
}

/*
 * (d) io_uring: one io_uring_enter() per round submits the reads to
 * replace those completed and waits for at least one more.
 */
static void kaio_io_uring(struct kaio_bench *kb)
{
	struct io_uring_cqe *cqes[MAX_DEPTH];
	struct io_uring ring;
	unsigned int i, n, slot;

	if (io_uring_queue_init(kb->depth, &ring, 0))
		die("io_uring_queue_init failed");
	kb->issued = 0;
	kb->done = 0;
	for (slot = 0; slot < kb->depth; slot++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);

		io_uring_prep_read(sqe, kb->fd, kb->bufs + slot * IO_SIZE,
				   IO_SIZE, (uint64_t)slot * IO_SIZE);
		sqe->user_data = slot;
		kb->issued++;
	}
	kaio_clock_start(kb);
	while (kb->done < IOS_PER_RUN) {
		syscalls++;
		if (io_uring_submit_and_wait(&ring, 1) < 0)
			die("io_uring_submit_and_wait failed");
		n = io_uring_peek_batch_cqe(&ring, cqes, kb->depth);
		for (i = 0; i < n; i++) {
			struct io_uring_sqe *sqe;

			kaio_check(kb, cqes[i]->res);
			if (kb->issued == IOS_PER_RUN)
				continue;
			slot = cqes[i]->user_data;
			sqe = io_uring_get_sqe(&ring);
			io_uring_prep_read(sqe, kb->fd,
					   kb->bufs + slot * IO_SIZE, IO_SIZE,
					   (uint64_t)slot * IO_SIZE);
			sqe->user_data = slot;
			kb->issued++;
		}
		io_uring_cq_advance(&ring, n);
	}
	kaio_clock_stop(kb);
	io_uring_queue_exit(&ring);
}

static const char * const kaio_methods[] = { "a", "b", "c", "c2", "c3",
					     "d", "e", "f" };

/* ns per I/O of one run of @method; syscalls per I/O in @calls */
static double kaio_run(struct kaio_bench *kb, const char *method,
		       double *calls)
{
	bool aio = strcmp(method, "d");
	aio_context_t ctx = 0;

	if (aio && sys_io_setup(kb->depth, &ctx))
		die("io_setup: %s", strerror(errno));
	alarm(WATCHDOG_S);
	if (!strcmp(method, "a"))
		kaio_getevents(kb, ctx);
	else if (!strcmp(method, "b"))
		kaio_eventfd(kb, ctx);
	else if (!strcmp(method, "c"))
		kaio_asyncfd(kb, ctx, WAIT_EPOLL);
	else if (!strcmp(method, "c2"))
		kaio_asyncfd(kb, ctx, WAIT_POLL);
	else if (!strcmp(method, "c3"))
		kaio_asyncfd(kb, ctx, WAIT_READ);
	else if (!strcmp(method, "e"))
		kaio_user_reap(kb, ctx);
	else if (!strcmp(method, "f"))
		kaio_user_reap_epoll(kb, ctx);
	else
		kaio_io_uring(kb);
	alarm(0);
	*calls = (double)syscalls / IOS_PER_RUN;
	if (aio)
		sys_io_destroy(ctx);
	return (double)kb->ns / IOS_PER_RUN;
}

static void bench_kaio_method(struct kaio_bench *kb, int irqmode,
			      const char *method)
{
	double runs[REPS], calls;
	struct figure f;
	int r;

	kaio_run(kb, method, &calls);
	for (r = 0; r < REPS; r++)
		runs[r] = kaio_run(kb, method, &calls);
	f = summarize(runs, REPS);
	printf("bench: kaio %d %u %s %.0f %.0f %.0f %.2f\n", irqmode,
	       kb->depth, method, f.min, f.median, f.max, calls);
}

static void bench_kaio(void)
{
	static const unsigned int depths[] = { 1, MAX_DEPTH };
	static const int irqmodes[] = { 0, 2 };
	struct kaio_bench kb = { .profile = false };
	unsigned int m, d, i;

	if (posix_memalign((void **)&kb.bufs, IO_SIZE, MAX_DEPTH * IO_SIZE))
		die("out of memory");
	for (m = 0; m < 2; m++) {
		kb.fd = nullb_open("bench", irqmodes[m]);
		for (d = 0; d < 2; d++) {
			kb.depth = depths[d];
			for (i = 0; i < ARRAY_SIZE(kaio_methods); i++)
				bench_kaio_method(&kb, irqmodes[m],
						  kaio_methods[i]);
		}
		close(kb.fd);
	}
	free(kb.bufs);
}

/* ---- delivery: the test producer posting into a ring ---- */

/* The producer's report up to its times, which the bench reads alone. */
#define PRODUCER_COUNTS	"stored %*u waited %*u unposted %*u retries %*u error %*d"

/*
 * The time the producer's last command spent in asyncfd_ctx_add_results()
 * alone, or for "limit" in its copy loop, in ns.
 */
static uint64_t producer_call_ns(int tp)
{
	unsigned long long ns;
	char buf[192];
	ssize_t len = pread(tp, buf, sizeof(buf) - 1, 0);

	if (len <= 0)
		die("read %s: %s", TEST_PRODUCER_PATH, strerror(errno));
	buf[len] = '\0';
	if (sscanf(buf, PRODUCER_COUNTS " ns %*u call_ns %llu", &ns) != 1)
		die("%s says \"%s\": no call time", TEST_PRODUCER_PATH, buf);
	return ns;
}

struct delivery {
	double post;		/* ns per result in the kernel */
	double reap;		/* ns per result taking it out of the ring */
};

/*
 * Post RESULTS_PER_RUN results, @batch per call, in rounds that fit in
 * the ring, and take each round out before the next.
 */
static struct delivery deliver(int tp, struct asyncfd_ring *ring,
			       unsigned int batch)
{
	unsigned int round = RESULTS_PER_POST;
	static struct asyncfd_result out[RESULTS_PER_POST];
	uint64_t post_ns = 0, reap_ns = 0, start;
	unsigned int done = 0, n;
	struct post_result pr;

	if (round > ring->size - 1)
		round = ring->size - 1;
	while (done < RESULTS_PER_RUN) {
		if (test_producer_send(tp, ring->fd, "process", done + 1, round,
				       batch, &pr) || pr.stored != round)
			die("post of %u results stored %u, %u waited",
			    round, pr.stored, pr.waited);
		post_ns += producer_call_ns(tp);
		start = now_ns();
		n = asyncfd_reap(ring, out, round);
		reap_ns += now_ns() - start;
		if (n != round)
			die("reaped %u of %u results", n, round);
		done += round;
	}
	return (struct delivery){ (double)post_ns / done,
				  (double)reap_ns / done };
}

/* Print "<@label> post" and "<@label> reap" figures. */
static void bench_deliver(int tp, unsigned int entries, unsigned int batch,
			  const char *label)
{
	double post[REPS], reap[REPS];
	struct asyncfd_ring ring;
	char name[64];
	int r, ret;

	ret = asyncfd_ring_setup(&ring, entries, ASYNCFD_CLOEXEC);
	if (ret)
		die("asyncfd of %u entries: %s", entries, strerror(-ret));
	deliver(tp, &ring, batch);
	for (r = 0; r < REPS; r++) {
		struct delivery d = deliver(tp, &ring, batch);

		post[r] = d.post;
		reap[r] = d.reap;
	}
	asyncfd_ring_exit(&ring);
	snprintf(name, sizeof(name), "%s post", label);
	print_figure(name, summarize(post, REPS));
	snprintf(name, sizeof(name), "%s reap", label);
	print_figure(name, summarize(reap, REPS));
}

/*
 * The limit at @batch: the same results, prepared the same way, copied
 * into a plain kernel buffer by the simplest loop, and timed as a post's
 * calls are.
 */
static void bench_limit(int tp, unsigned int batch)
{
	char cmd[48], name[32];
	double runs[REPS];
	int len = snprintf(cmd, sizeof(cmd), "limit %u %u\n", RESULTS_PER_RUN,
			   batch);
	int r;

	for (r = -1; r < REPS; r++) {
		if (write(tp, cmd, len) != len)
			die("%s: limit: %s", TEST_PRODUCER_PATH, strerror(errno));
		if (r >= 0)
			runs[r] = (double)producer_call_ns(tp) / RESULTS_PER_RUN;
	}
	snprintf(name, sizeof(name), "limit %u", batch);
	print_figure(name, summarize(runs, REPS));
}

/*
 * What one result costs through an eventfd: a write() to signal it, the
 * userspace twin of eventfd_signal(), which the same eventfd_ctx code
 * serves, and a read() to consume it.  The write's system call stands
 * for the interrupt or syscall a kernel signaller runs in anyway.
 */
static void bench_eventfd(void)
{
	uint64_t one = 1, value, start;
	double runs[REPS];
	int efd = eventfd(0, EFD_CLOEXEC);
	int r, i;

	if (efd < 0)
		die("eventfd: %s", strerror(errno));
	for (r = -1; r < REPS; r++) {
		start = now_ns();
		for (i = 0; i < EVENTFD_PAIRS; i++) {
			if (write(efd, &one, sizeof(one)) != sizeof(one) ||
			    read(efd, &value, sizeof(value)) != sizeof(value))
				die("eventfd: %s", strerror(errno));
		}
		if (r >= 0)
			runs[r] = (double)(now_ns() - start) / EVENTFD_PAIRS;
	}
	close(efd);
	print_figure("eventfd", summarize(runs, REPS));
}

/* ---- scale: registration cost by ring size ---- */

static void bench_register(unsigned int entries)
{
	double reg[REPS], rel[REPS];
	struct asyncfd_ring ring;
	unsigned long pages;
	char name[64];
	uint64_t start;
	int r;

	if (asyncfd_ring_map(&ring, entries))
		die("mmap of %u entries failed", entries);
	/* Fault the ring in first: pinning, not page zeroing, is timed. */
	memset(ring.entries, 0, (size_t)entries * sizeof(*ring.entries));
	pages = ring.mem_len / sysconf(_SC_PAGESIZE);
	for (r = -1; r < REPS; r++) {
		start = now_ns();
		ring.fd = sys_asyncfd(-1, ring.hdr, ASYNCFD_CLOEXEC);
		if (ring.fd < 0)
			die("asyncfd of %u entries: %s", entries,
			    strerror(errno));
		if (r >= 0)
			reg[r] = now_ns() - start;
		start = now_ns();
		close(ring.fd);
		if (r >= 0)
			rel[r] = now_ns() - start;
	}
	ring.fd = -1;
	asyncfd_ring_exit(&ring);
	snprintf(name, sizeof(name), "register %u %lu", entries, pages);
	print_figure(name, summarize(reg, REPS));
	snprintf(name, sizeof(name), "release %u %lu", entries, pages);
	print_figure(name, summarize(rel, REPS));
}

static bool named(int argc, char **argv, const char *part)
{
	const char *env = getenv("ASYNCFD_BENCH");
	char words[128], *word, *save;
	int i;

	if (argc > 1) {
		for (i = 1; i < argc; i++)
			if (!strcmp(argv[i], part))
				return true;
		return false;
	}
	snprintf(words, sizeof(words), "%s", env ? env : "");
	for (word = strtok_r(words, ", ", &save); word;
	     word = strtok_r(NULL, ", ", &save))
		if (!strcmp(word, part))
			return true;
	return false;
}

static bool want(int argc, char **argv, const char *part)
{
	if (!strcmp(part, "profile"))
		return named(argc, argv, part);
	return named(argc, argv, part) ||
	       !(named(argc, argv, "kaio") || named(argc, argv, "delivery") ||
		 named(argc, argv, "scale"));
}

/* ---- profile: the instructions of one run, counted by QEMU ---- */

/*
 * One warm-up run, then one whose timed part lies between two marks.
 * The window that the second mark closes is this run's; "profile-marks" at the end tells
 * which of the plugin's windows that is, counting from its last.
 */
static void bench_profile(void)
{
	static const struct {
		int irqmode;
		unsigned int depth;
	} points[] = { { 0, MAX_DEPTH }, { 0, 1 }, { 2, 1 } };
	static const char * const methods[] = { "a", "c", "c2", "c3", "d",
						 "e", "f" };
	struct kaio_bench kb = { .profile = false };
	unsigned int p, m;
	double ns, calls;
	char disk[16];

	if (posix_memalign((void **)&kb.bufs, IO_SIZE, MAX_DEPTH * IO_SIZE))
		die("out of memory");
	for (p = 0; p < ARRAY_SIZE(points); p++) {
		snprintf(disk, sizeof(disk), "profile_qd%u", points[p].depth);
		kb.fd = nullb_open(disk, points[p].irqmode);
		kb.depth = points[p].depth;
		for (m = 0; m < ARRAY_SIZE(methods); m++) {
			kb.profile = false;
			kaio_run(&kb, methods[m], &calls);
			kb.profile = true;
			ns = kaio_run(&kb, methods[m], &calls);
			printf("bench: profile %d %u %s %u %d %.0f %.2f\n",
			       points[p].irqmode, kb.depth, methods[m], marks,
			       IOS_PER_RUN, ns, calls);
		}
		close(kb.fd);
	}
	free(kb.bufs);
	printf("bench: profile-marks %u\n", marks);
}

int main(int argc, char **argv)
{
	static const unsigned int batches[] = { 1, 16, 64, 256 };
	static const unsigned int rings[] = { 64, DELIVERY_RING_ENTRIES,
					      1U << 20 };
	static const unsigned int reg_sizes[] = { 64, 4096, 65536, 1U << 20 };
	char label[32];
	cpu_set_t cpu0;
	unsigned int i;
	int tp;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGALRM, watchdog);
	/* One CPU: the timer interrupts of irqmode 2 come back to it. */
	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	if (sched_setaffinity(0, sizeof(cpu0), &cpu0))
		die("sched_setaffinity: %s", strerror(errno));
	tp = test_producer_open();
	if (tp < 0)
		die("%s: %s", TEST_PRODUCER_PATH, strerror(-tp));

	printf("# %d runs per figure: min median max, in guest ns\n", REPS);
	if (want(argc, argv, "kaio")) {
		printf("# kaio irqmode depth method ns/I/O, syscalls/I/O\n");
		bench_kaio();
	}
	if (want(argc, argv, "delivery")) {
		printf("# delivery batch ns/result, ring of %u\n",
		       DELIVERY_RING_ENTRIES);
		for (i = 0; i < ARRAY_SIZE(batches); i++) {
			snprintf(label, sizeof(label), "delivery %u",
				 batches[i]);
			bench_deliver(tp, DELIVERY_RING_ENTRIES, batches[i],
				      label);
			bench_limit(tp, batches[i]);
		}
		bench_eventfd();
	}
	if (want(argc, argv, "scale")) {
		printf("# scale entries ns/result at batch %d\n", SCALE_BATCH);
		for (i = 0; i < ARRAY_SIZE(rings); i++) {
			snprintf(label, sizeof(label), "scale %u", rings[i]);
			bench_deliver(tp, rings[i], SCALE_BATCH, label);
		}
		printf("# register/release entries pages ns\n");
		for (i = 0; i < ARRAY_SIZE(reg_sizes); i++)
			bench_register(reg_sizes[i]);
	}
	if (want(argc, argv, "profile"))
		bench_profile();
	close(tp);
	return 0;
}
