/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Drives the asyncfd test producer (lib/test_asyncfd.c, built with
 * CONFIG_TEST_ASYNCFD), which makes the kernel post results from the
 * contexts real producers run in, hard and soft interrupts included.
 */
#ifndef __TEST_PRODUCER_H
#define __TEST_PRODUCER_H

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#define TEST_PRODUCER_PATH		"/sys/kernel/debug/test_asyncfd"
#define NO_PRODUCER "no " TEST_PRODUCER_PATH ": needs CONFIG_TEST_ASYNCFD and debugfs"

/*
 * Every context the producer posts from, the calling task first: tests
 * that index past it, to post from elsewhere, rely on the order.
 */
static const char * const contexts[] = {
	"process", "kthread", "workqueue", "softirq", "hardirq",
};

/* Where the producer ran, as it reports in asyncfd_result.res. */
#define TEST_PRODUCER_IN_HARDIRQ	1
#define TEST_PRODUCER_IN_SOFTIRQ	2
#define TEST_PRODUCER_IN_TASK		4

/*
 * The producer's report of one post.  stored + waited + unposted is the
 * number of results the post was for.
 */
struct post_result {
	unsigned int stored;	/* went straight into the ring */
	unsigned int waited;	/* waited in the kernel, to enter the ring later */
	unsigned int unposted;	/* never handed over, see error */
	unsigned int retries;	/* calls refused for want of room, made again */
	int error;		/* 0, or the -errno that ended the post */
};

static inline bool test_producer_available(void)
{
	return access(TEST_PRODUCER_PATH, W_OK) == 0;
}

/* A handle for test_producer_send(); the fd or -errno. */
static inline int test_producer_open(void)
{
	int tp = open(TEST_PRODUCER_PATH, O_RDWR | O_CLOEXEC);

	return tp < 0 ? -errno : tp;
}

/*
 * Have the kernel post @count results into the asyncfd @fd from
 * @context ("process", "kthread", "workqueue", "softirq" or "hardirq"),
 * @batch per call.  Result i carries cookie @cookie + i, obj i, the
 * TEST_PRODUCER_IN_* bit of its context in res and the CPU it was
 * posted on in res2.
 * With @all_cpus, each online CPU posts @count results at the same time
 * (not from "process"): the k-th takes cookies from @cookie + k * @count,
 * and @out gives the totals.
 *
 * A call that would make more results wait than the ring has entries is
 * refused whole.  Without @retry that ends the post, with error -ENOSPC
 * (or -ENOMEM) and the rest unposted; with @retry the producer makes the
 * call again until it fits, so someone must be making room: a consumer,
 * or a swap to a larger ring.  A signal to the writer ends such a post
 * with -EINTR.
 *
 * Returns 0 once the post is over, with the outcome in @out, or -errno
 * if the producer took no command: -EBADF or -EINVAL for an @fd that is
 * not an asyncfd.
 */
static inline int test_producer_command(int tp, int fd, const char *context,
					bool all_cpus, int cpu, bool retry,
					uint64_t cookie, unsigned int count,
					unsigned int batch,
					struct post_result *out)
{
	char buf[160], on_cpu[20] = "";
	ssize_t ret;
	int len;

	if (cpu >= 0)
		snprintf(on_cpu, sizeof(on_cpu), " cpu=%d", cpu);
	len = snprintf(buf, sizeof(buf), "post %d %s %llu %u %u%s%s%s\n", fd,
		       context, (unsigned long long)cookie, count, batch,
		       all_cpus ? " all" : "", retry ? " retry" : "", on_cpu);
	if (len < 0 || len >= (int)sizeof(buf))
		return -EINVAL;
	ret = write(tp, buf, len);
	if (ret < 0)
		return -errno;
	if (ret != len)
		return -EIO;
	ret = pread(tp, buf, sizeof(buf) - 1, 0);
	if (ret < 0)
		return -errno;
	buf[ret] = '\0';
	if (sscanf(buf, "stored %u waited %u unposted %u retries %u error %d",
		   &out->stored, &out->waited, &out->unposted, &out->retries,
		   &out->error) != 5)
		return -EPROTO;
	return 0;
}

static inline int test_producer_send_from(int tp, int fd, const char *context,
					  bool all_cpus, bool retry,
					  uint64_t cookie, unsigned int count,
					  unsigned int batch,
					  struct post_result *out)
{
	return test_producer_command(tp, fd, context, all_cpus, -1, retry,
				     cookie, count, batch, out);
}

/*
 * test_producer_send_from() for one job on CPU @cpu, which must be
 * online: a kthread bound there, work queued there, an hrtimer pinned
 * there.  Otherwise the kernel picks the CPU, and may pick the one a
 * test wants kept free of producers.  Not for "process", which posts
 * on the writer's CPU: pin the writer instead.  -EINVAL if the producer
 * takes no such job: @cpu offline, or @context "process".
 */
static inline int test_producer_send_on(int tp, int fd, const char *context,
					int cpu, bool retry, uint64_t cookie,
					unsigned int count, unsigned int batch,
					struct post_result *out)
{
	return test_producer_command(tp, fd, context, false, cpu, retry,
				     cookie, count, batch, out);
}

static inline int test_producer_send(int tp, int fd, const char *context,
				     uint64_t cookie, unsigned int count,
				     unsigned int batch, struct post_result *out)
{
	return test_producer_send_from(tp, fd, context, false, false, cookie,
				       count, batch, out);
}

/* test_producer_send() that retries calls refused for want of room. */
static inline int test_producer_send_retry(int tp, int fd, const char *context,
					   uint64_t cookie, unsigned int count,
					   unsigned int batch,
					   struct post_result *out)
{
	return test_producer_send_from(tp, fd, context, false, true, cookie,
				       count, batch, out);
}

/*
 * test_producer_send_from() through a handle of its own.  The handle
 * takes a descriptor, so when @fd may be closed concurrently, open the
 * handle first: it must not be the one to reuse @fd's number.
 */
static inline int test_producer_post_from(int fd, const char *context,
					  bool all_cpus, bool retry,
					  uint64_t cookie, unsigned int count,
					  unsigned int batch,
					  struct post_result *out)
{
	int tp = test_producer_open();
	int ret;

	if (tp < 0)
		return tp;
	ret = test_producer_send_from(tp, fd, context, all_cpus, retry, cookie,
				      count, batch, out);
	close(tp);
	return ret;
}

static inline int test_producer_post(int fd, const char *context,
				     uint64_t cookie, unsigned int count,
				     unsigned int batch, struct post_result *out)
{
	return test_producer_post_from(fd, context, false, false, cookie,
				       count, batch, out);
}

static inline int test_producer_post_retry(int fd, const char *context,
					   uint64_t cookie, unsigned int count,
					   unsigned int batch,
					   struct post_result *out)
{
	return test_producer_post_from(fd, context, false, true, cookie,
				       count, batch, out);
}

#endif /* __TEST_PRODUCER_H */
