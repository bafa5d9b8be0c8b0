// SPDX-License-Identifier: GPL-2.0
/*
 * asyncfd-demo: kernel AIO completions delivered through asyncfd.
 *
 * The application reads a null_blk device with O_DIRECT, keeping
 * requests in flight with io_submit().  Each iocb carries
 * IOCB_FLAG_ASYNCFD, so its completion, which null_blk signals from a
 * timer in hard interrupt context, is stored straight into a ring in
 * the application's memory.  The application sleeps in epoll_wait(),
 * with no timeout, takes completions out of the ring without a system
 * call each, and never calls io_getevents().
 *
 * A second run gives the ring fewer entries than there are requests in
 * flight.  A completion that finds the ring full waits in the kernel,
 * in its own request and in order, and makes the asyncfd readable just
 * as a stored one does.  Once the application has emptied the ring, the
 * ring's kflags tells it that completions wait, and asyncfd(fd, NULL, 0)
 * moves them into the room it made; it reaps again.  Nothing is lost,
 * and nothing goes to the aio ring while the asyncfd is open.
 *
 * Exit status: 0 if every request completed exactly once, 1 if not (or
 * if completions stopped coming, see KAIO_STALL_SECONDS), 2 if the demo
 * cannot run on this kernel.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kaio.h"

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define REQUESTS	4096
#define DEPTH		32
#define COMPLETION_NS	10000

struct demo_run {
	const char *title;
	unsigned int ring_entries;
	unsigned int requests;
};

/*
 * The reads of one run.  Slot i owns iocbs[i] and its buffer from
 * submission to completion; a completion names its iocb in obj, which
 * frees the slot.  Cookies count from 0: any value is a valid cookie.
 */
struct reads {
	aio_context_t aio;
	int fd;
	struct asyncfd_ring *ring;
	unsigned int total;

	unsigned int submitted;
	unsigned int completed;	/* atomic: the watchdog reads it */
	unsigned int duplicates;
	unsigned int bad;	/* unknown cookie, wrong iocb or short */
	unsigned int submit_calls, epoll_calls, flush_calls;
	const char *failed;	/* the system call that failed, if one did */
	int error;

	struct iocb iocbs[DEPTH];
	uint64_t slot_cookie[DEPTH];
	unsigned int free_slots[DEPTH];
	unsigned int nr_free;
	char *bufs;
	unsigned char *seen;
};

static void complete_read(struct reads *r, const struct asyncfd_result *res)
{
	uintptr_t base = (uintptr_t)r->iocbs;
	unsigned int slot = (res->obj - base) / sizeof(struct iocb);

	__atomic_store_n(&r->completed, r->completed + 1, __ATOMIC_RELAXED);
	if (res->cookie >= r->total) {
		r->bad++;
		return;
	}
	if (r->seen[res->cookie]++) {
		r->duplicates++;
		return;
	}
	if (res->obj < base || slot >= DEPTH ||
	    res->obj != (uintptr_t)&r->iocbs[slot] ||
	    r->slot_cookie[slot] != res->cookie || res->res != KAIO_BLOCK) {
		r->bad++;
		return;
	}
	r->free_slots[r->nr_free++] = slot;
}

/* Everything the ring holds; returns how many. */
static unsigned int reap(struct reads *r)
{
	struct asyncfd_result res[DEPTH];
	unsigned int i, n, total = 0;

	while ((n = asyncfd_reap(r->ring, res, ARRAY_SIZE(res)))) {
		for (i = 0; i < n; i++)
			complete_read(r, &res[i]);
		total += n;
	}
	return total;
}

/* A read in every free slot, as long as there are reads to do. */
static int submit(struct reads *r)
{
	struct iocb *batch[DEPTH];
	unsigned int n = 0;
	int ret;

	while (r->nr_free && r->submitted + n < r->total) {
		unsigned int slot = r->free_slots[--r->nr_free];
		uint64_t cookie = r->submitted + n;

		kaio_prep_read(&r->iocbs[slot], r->fd, r->bufs + slot * KAIO_BLOCK,
			       KAIO_BLOCK, (cookie % KAIO_SPAN_BLOCKS) * KAIO_BLOCK,
			       r->ring->fd, cookie);
		r->slot_cookie[slot] = cookie;
		batch[n++] = &r->iocbs[slot];
	}
	if (!n)
		return 0;
	r->submit_calls++;
	ret = sys_io_submit(r->aio, n, batch);
	if (ret != (int)n) {
		r->failed = "io_submit";
		r->error = ret < 0 ? errno : EAGAIN;
		return -1;
	}
	r->submitted += n;
	return 0;
}

/*
 * The consumer loop: reap; while kflags says that completions wait,
 * flush them in and reap again; sleep only when the ring was empty and
 * nothing waited.  What comes after that last look wakes us.
 */
static int run_reads(struct reads *r)
{
	struct epoll_event ev = { .events = EPOLLIN };
	int epfd, ret = 0;

	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, r->ring->fd, &ev)) {
		r->failed = "epoll";
		r->error = errno;
		if (epfd >= 0)
			close(epfd);
		return -1;
	}
	while (r->completed < r->total && !r->bad && !r->duplicates) {
		unsigned int reaped;

		ret = submit(r);
		if (ret)
			break;
		reaped = reap(r);
		if (asyncfd_waiting(r->ring)) {
			r->flush_calls++;
			ret = asyncfd_flush(r->ring);
			if (ret < 0) {
				r->failed = "asyncfd flush";
				r->error = -ret;
				ret = -1;
				break;
			}
			ret = 0;
			continue;
		}
		if (reaped)
			continue;
		r->epoll_calls++;
		if (epoll_wait(epfd, &ev, 1, -1) < 0 && errno != EINTR) {
			r->failed = "epoll_wait";
			r->error = errno;
			ret = -1;
		}
	}
	close(epfd);
	return ret;
}

struct watchdog {
	pthread_t thread;
	int stop;		/* an eventfd */
	struct reads *r;
};

/* No wait in the demo has a timeout: a stall fails it here instead. */
static void *watchdog_main(void *arg)
{
	struct watchdog *wd = arg;
	struct pollfd stop = { .fd = wd->stop, .events = POLLIN };
	unsigned int seen = 0, now;
	int ret;

	while ((ret = poll(&stop, 1, KAIO_STALL_SECONDS * 1000)) <= 0) {
		now = __atomic_load_n(&wd->r->completed, __ATOMIC_RELAXED);
		if (ret < 0 || now != seen) {
			seen = now;
			continue;
		}
		printf("  no completion for %d s: %u of %u complete\n",
		       KAIO_STALL_SECONDS, now, wd->r->total);
		printf("  the ring holds %u, kflags %#x\n",
		       asyncfd_ring_ready(wd->r->ring),
		       __atomic_load_n(&wd->r->ring->hdr->kflags, __ATOMIC_RELAXED));
		fflush(stdout);
		_exit(1);
	}
	return NULL;
}

static void print_fdinfo(int fd)
{
	char path[64], line[128];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return;
	printf("  fdinfo        ");
	while (fgets(line, sizeof(line), f)) {
		char *value = strchr(line, '\t');

		if (strncmp(line, "asyncfd-", 8) || !value)
			continue;
		value[-1] = '\0';
		value[strcspn(value, "\n")] = '\0';
		printf(" %s %s", line + 8, value + 1);
	}
	printf("\n");
	fclose(f);
}

/* One run; true if every request completed exactly once, in the ring. */
static bool demo(const struct demo_run *d, aio_context_t aio, int fd)
{
	struct timespec zero = { 0, 0 };
	struct watchdog wd = { .stop = -1 };
	struct asyncfd_ring ring;
	struct reads *r = calloc(1, sizeof(*r));
	unsigned int i, syscalls, missing = 0;
	struct io_event ev;
	double start, secs;
	int ret, left;
	bool ok;

	ret = asyncfd_ring_setup(&ring, d->ring_entries, ASYNCFD_CLOEXEC);
	if (!r || ret) {
		fprintf(stderr, "setup failed: %s\n", strerror(ret ? -ret : ENOMEM));
		free(r);
		return false;
	}
	r->aio = aio;
	r->fd = fd;
	r->ring = &ring;
	r->total = d->requests;
	r->seen = calloc(d->requests, 1);
	if (posix_memalign((void **)&r->bufs, KAIO_BLOCK, DEPTH * KAIO_BLOCK))
		r->bufs = NULL;
	wd.r = r;
	wd.stop = eventfd(0, EFD_CLOEXEC);
	if (!r->seen || !r->bufs || wd.stop < 0 ||
	    pthread_create(&wd.thread, NULL, watchdog_main, &wd)) {
		fprintf(stderr, "setup failed\n");
		exit(2);
	}
	for (i = 0; i < DEPTH; i++)
		r->free_slots[r->nr_free++] = i;

	printf("\n%s\n", d->title);
	printf("  %u reads of %d bytes, %u in flight, ring of %u entries\n",
	       d->requests, KAIO_BLOCK, DEPTH, d->ring_entries);
	start = nullb_now();
	ret = run_reads(r);
	secs = nullb_now() - start;
	eventfd_write(wd.stop, 1);
	pthread_join(wd.thread, NULL);
	close(wd.stop);
	if (ret)
		printf("  %s failed: %s\n", r->failed, strerror(r->error));

	for (i = 0; i < r->total; i++)
		missing += !r->seen[i];
	/* The zero timeout is the check: the aio ring must be empty. */
	left = sys_io_getevents(aio, 0, 1, &ev, &zero);
	syscalls = r->submit_calls + r->epoll_calls + r->flush_calls;
	printf("  completed      %u in %.2f s, all through the ring\n", r->completed, secs);
	printf("  system calls   %u io_submit + %u epoll_wait + %u asyncfd flush = %.3f per read\n",
	       r->submit_calls, r->epoll_calls, r->flush_calls,
	       (double)syscalls / d->requests);
	printf("  checks         %u missing, %u duplicated, %u wrong (cookie, iocb or length)\n",
	       missing, r->duplicates, r->bad);
	printf("                 %d in the aio ring, which nobody needs to read\n", left);
	print_fdinfo(ring.fd);

	ok = !ret && !missing && !r->duplicates && !r->bad && !left &&
	     !asyncfd_waiting(&ring);
	free(r->seen);
	free(r->bufs);
	free(r);
	asyncfd_ring_exit(&ring);
	return ok;
}

int main(void)
{
	static const struct demo_run runs[] = {
		{ "1. the ring has room for every completion", 256, REQUESTS },
		{ "2. a ring of 8 for 32 in flight: completions wait in the kernel,\n"
		  "   and a flush brings them in", 8, REQUESTS / 4 },
	};
	struct nullb nb = {};
	aio_context_t aio;
	bool ok = true;
	unsigned int i;
	int fd;

	fd = nullb_open(&nb, "asyncfd_demo", 2, COMPLETION_NS);
	if (fd < 0) {
		fprintf(stderr, "null_blk via %s: %s\n", NULLB_CONFIGFS,
			strerror(-fd));
		return 2;
	}
	if (sys_io_setup(2 * DEPTH, &aio)) {
		perror("io_setup");
		nullb_destroy(&nb);
		return 2;
	}

	printf("asyncfd demo: kernel AIO completions delivered into a ring in our memory\n\n");
	printf("  device   %s, null_blk irqmode=2: each read completes from a\n"
	       "           timer interrupt %d us later, in hard interrupt context\n",
	       nb.path, COMPLETION_NS / 1000);
	printf("  submit   io_submit() of O_DIRECT reads with IOCB_FLAG_ASYNCFD;\n"
	       "           aio_data is the cookie, and the ring gives back the iocb\n");
	printf("  wait     epoll_wait() on the asyncfd with no timeout, then reap the ring;\n"
	       "           a completion that finds the ring full waits in the kernel,\n"
	       "           and wakes us too: once the ring is empty, kflags says that\n"
	       "           completions wait, and asyncfd(fd, NULL, 0) moves them in\n");
	printf("  fdinfo   what waits now, the most that waited at once, and the total\n");

	for (i = 0; i < ARRAY_SIZE(runs); i++)
		ok &= demo(&runs[i], aio, fd);

	sys_io_destroy(aio);
	close(fd);
	nullb_destroy(&nb);
	printf("\n%s\n", ok ? "OK: every read completed exactly once." :
			      "FAILED: completions were lost, duplicated or wrong.");
	return ok ? 0 : 1;
}
