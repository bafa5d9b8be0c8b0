// SPDX-License-Identifier: GPL-2.0
/*
 * asyncfd-demo: kernel AIO completions delivered through asyncfd.
 *
 * The application reads a null_blk device with O_DIRECT, keeping
 * requests in flight with io_submit().  Each iocb carries
 * IOCB_FLAG_ASYNCFD, so its completion, which null_blk signals from a
 * timer in hard interrupt context, is stored straight into a ring in
 * the application's memory.  The application sleeps in epoll_wait(),
 * with no timeout, and takes completions out of the ring without a
 * system call each, and never calls io_getevents() while the ring has
 * room.
 *
 * A second run gives the ring fewer entries than there are requests in
 * flight.  A completion the ring refuses goes to the aio ring as before,
 * counts in the ring's overflow and makes the asyncfd readable, just as
 * a stored one does.  The application claims the count with an atomic
 * exchange to 0, and then collects exactly that many with
 * io_getevents(), which has them at hand.  Nothing is lost either way.
 *
 * Exit status: 0 if every request completed exactly once, 1 if not (or
 * if completions stopped coming, see KAIO_STALL_SECONDS), 2 if the demo
 * cannot run on this kernel.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
	unsigned int depth;
};

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

/* One run; true if every request completed exactly once. */
static bool demo(const struct demo_run *d, aio_context_t aio, int fd)
{
	struct asyncfd_ring ring;
	struct kaio_run *run;
	unsigned int syscalls, missing;
	double start, secs;
	bool ok;
	int ret;

	run = malloc(sizeof(*run));
	ret = asyncfd_ring_setup(&ring, d->ring_entries, ASYNCFD_CLOEXEC);
	if (!run || ret || kaio_run_init(run, aio, fd, &ring, d->depth,
					 d->requests)) {
		fprintf(stderr, "setup failed: %s\n", strerror(ret ? -ret : ENOMEM));
		return false;
	}

	printf("\n%s\n", d->title);
	printf("  %u reads of %d bytes, %u in flight, ring of %u entries\n",
	       d->requests, KAIO_BLOCK, d->depth, d->ring_entries);
	start = nullb_now();
	ret = kaio_run(run);
	secs = nullb_now() - start;
	if (ret)
		printf("  %s failed: %s\n", run->failed, strerror(run->error));

	missing = kaio_run_missing(run);
	syscalls = run->submit_calls + run->epoll_calls + run->getevents_calls;
	printf("  completed      %u in %.2f s\n", run->completed, secs);
	printf("  via the ring   %u, taken from memory, no system call each\n",
	       run->via_ring);
	printf("  refused        %u: %u claims from overflow, %u collected by io_getevents\n",
	       run->claimed, run->claims, run->via_getevents);
	printf("  system calls   %u io_submit + %u epoll_wait + %u io_getevents = %.3f per read\n",
	       run->submit_calls, run->epoll_calls, run->getevents_calls,
	       (double)syscalls / d->requests);
	printf("  checks         %u missing, %u duplicated, %u wrong (cookie, iocb or length)\n",
	       missing, run->duplicates, run->bad);
	printf("                 %u refused but never claimed\n", ring.hdr->overflow);
	print_fdinfo(ring.fd);

	ok = !ret && !missing && !run->duplicates && !run->bad &&
	     run->via_getevents == run->claimed && !ring.hdr->overflow;
	kaio_run_exit(run);
	free(run);
	asyncfd_ring_exit(&ring);
	return ok;
}

int main(void)
{
	static const struct demo_run runs[] = {
		{ "1. the ring has room for every completion", 256, REQUESTS,
		  DEPTH },
		{ "2. a ring of 8 for 32 in flight: refused ones are claimed, then collected",
		  8, REQUESTS / 4, DEPTH },
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
	       "           a refused completion wakes us too, and counts in the ring's\n"
	       "           overflow, which we claim with an atomic exchange to 0 before\n"
	       "           collecting exactly that many with io_getevents()\n");
	printf("  fdinfo   its overflow is the kernel's total of refused completions\n");

	for (i = 0; i < ARRAY_SIZE(runs); i++)
		ok &= demo(&runs[i], aio, fd);

	sys_io_destroy(aio);
	close(fd);
	nullb_destroy(&nb);
	printf("\n%s\n", ok ? "OK: every read completed exactly once." :
			      "FAILED: completions were lost, duplicated or wrong.");
	return ok ? 0 : 1;
}
