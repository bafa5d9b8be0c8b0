// SPDX-License-Identifier: GPL-2.0
/*
 * asyncfd-demo: an application consuming results through asyncfd.
 *
 * A thread stands in for a device: through the test producer
 * (CONFIG_TEST_ASYNCFD) it has the kernel post results from hard
 * interrupt context, as a completion interrupt would.  The main thread
 * is the application: it sleeps in epoll_wait() and, when woken, takes
 * the results straight out of the ring in its own memory, with no
 * system call per result.
 *
 * Exit status: 0 if every result arrived exactly once, 1 if not, 2 if
 * the demo cannot run on this kernel.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "asyncfd_ring.h"
#include "test_producer.h"

#define RING_ENTRIES	256	/* room for every result: none is refused */
#define POSTS		4
#define PER_POST	50
#define BATCH		10	/* results per simulated interrupt */
#define TOTAL		(POSTS * PER_POST)
#define FIRST_COOKIE	1
#define TIMEOUT_MS	5000

struct device {
	int fd;
	unsigned int stored;
	unsigned int refused;
	int error;
};

static void *device_run(void *arg)
{
	struct device *dev = arg;
	struct post_result pr;
	int i;

	for (i = 0; i < POSTS && !dev->error; i++) {
		dev->error = test_producer_post(dev->fd, "hardirq",
						FIRST_COOKIE + i * PER_POST,
						PER_POST, BATCH, &pr);
		if (!dev->error) {
			dev->stored += pr.stored;
			dev->refused += pr.refused;
			dev->error = pr.error;
		}
		/* Give the application time to sleep again. */
		usleep(20000);
	}
	return NULL;
}

/* What the producer reports in res: where the result was posted from. */
static const char * const context_names[] = {
	[TEST_PRODUCER_IN_HARDIRQ]	= "hardirq",
	[TEST_PRODUCER_IN_SOFTIRQ]	= "softirq",
	[TEST_PRODUCER_IN_TASK]		= "task",
	[TEST_PRODUCER_IN_TASK + 1]	= "unknown",
};

static void print_fdinfo(int fd)
{
	char path[64], line[128];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "re");
	if (!f)
		return;
	printf("\nthe kernel's view, from %s:\n", path);
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "asyncfd-", 8))
			printf("  %s", line);
	fclose(f);
}

int main(void)
{
	unsigned int received = 0, wakeups = 0, misordered = 0;
	unsigned int contexts[TEST_PRODUCER_IN_TASK + 2] = {};
	uint64_t next_cookie = FIRST_COOKIE;
	struct epoll_event ev = { .events = EPOLLIN };
	struct device dev = {};
	struct asyncfd_ring ring;
	uint64_t cpus = 0;
	pthread_t thread;
	int ep, ret, i;
	bool ok;

	if (!test_producer_available()) {
		fprintf(stderr, "%s missing: needs CONFIG_TEST_ASYNCFD=y and debugfs\n",
			TEST_PRODUCER_PATH);
		return 2;
	}
	ret = asyncfd_ring_setup(&ring, RING_ENTRIES, ASYNCFD_CLOEXEC);
	if (ret) {
		fprintf(stderr, "asyncfd(): %s\n", strerror(-ret));
		return 2;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ring.fd, &ev)) {
		perror("epoll");
		return 2;
	}

	printf("asyncfd demo: kernel results delivered into a ring in our memory\n\n");
	printf("  ring       %u entries, asyncfd %d, watched by epoll\n",
	       RING_ENTRIES, ring.fd);
	printf("  device     a thread has the kernel post %u results from hardirq context,\n"
	       "             %u posts of %u, %u results per interrupt\n",
	       TOTAL, POSTS, PER_POST, BATCH);
	printf("  app        sleeps in epoll_wait(), then reads the ring directly\n\n");

	dev.fd = ring.fd;
	if (pthread_create(&thread, NULL, device_run, &dev)) {
		fprintf(stderr, "pthread_create failed\n");
		return 2;
	}

	while (received < TOTAL) {
		struct asyncfd_result *res;
		unsigned int taken = 0;
		uint64_t first = 0;

		ret = epoll_wait(ep, &ev, 1, TIMEOUT_MS);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret < 0) {
			perror("epoll_wait");
			break;
		}
		if (!ret) {
			printf("  no result for %d ms, giving up\n", TIMEOUT_MS);
			break;
		}
		wakeups++;
		while ((res = asyncfd_peek(&ring))) {
			if (!taken++)
				first = res->cookie;
			if (res->cookie != next_cookie)
				misordered++;
			next_cookie = res->cookie + 1;
			if (res->res > 0 && res->res <= TEST_PRODUCER_IN_TASK &&
			    context_names[res->res])
				contexts[res->res]++;
			else
				contexts[TEST_PRODUCER_IN_TASK + 1]++;
			if (res->res2 >= 0 && res->res2 < 64)
				cpus |= 1ULL << res->res2;
			received++;
			asyncfd_advance(&ring, 1);
		}
		printf("  woken: took %3u results from the ring (cookies %llu..%llu)\n",
		       taken, (unsigned long long)first,
		       (unsigned long long)(next_cookie - 1));
	}
	pthread_join(thread, NULL);

	printf("\n  woken      %u times\n", wakeups);
	printf("  posted     %u\n", TOTAL);
	printf("  stored     %u in the ring, %u refused (overflow counter %u)\n",
	       dev.stored, dev.refused, ring.hdr->overflow);
	printf("  received   %u via the ring, %s\n", received,
	       misordered ? "NOT in order" : "each cookie once, in order");
	printf("  contexts  ");
	for (i = 0; i < TEST_PRODUCER_IN_TASK + 2; i++)
		if (contexts[i])
			printf(" %s %u", context_names[i], contexts[i]);
	printf("\n  cpus      ");
	for (i = 0; i < 64; i++)
		if (cpus & (1ULL << i))
			printf(" %d", i);
	printf("\n");
	print_fdinfo(ring.fd);

	ok = !dev.error && received == TOTAL && dev.stored == TOTAL &&
	     !misordered && contexts[TEST_PRODUCER_IN_HARDIRQ] == TOTAL &&
	     ring.hdr->overflow == dev.refused;
	if (dev.error)
		printf("\nthe test producer failed: %s\n", strerror(-dev.error));
	printf("\n%s\n", ok ? "OK: every result arrived exactly once." :
			      "FAILED: results were lost, duplicated or misplaced.");

	close(ep);
	asyncfd_ring_exit(&ring);
	return ok ? 0 : 1;
}
