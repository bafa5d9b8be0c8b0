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

/* Where the producer ran, as it reports in asyncfd_result.res. */
#define TEST_PRODUCER_IN_HARDIRQ	1
#define TEST_PRODUCER_IN_SOFTIRQ	2
#define TEST_PRODUCER_IN_TASK		4

struct post_result {
	unsigned int stored;	/* results now in the ring */
	unsigned int refused;	/* for lack of room, or after the close */
	int error;		/* -EBADFD once the asyncfd was closed */
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
 * @batch per call.  Result i carries cookie @cookie + i and obj i.
 * With @all_cpus, each online CPU posts @count results at the same time
 * (not from "process"): the k-th takes cookies from @cookie + k * @count,
 * and @out gives the totals.
 * Returns 0 once all are posted, with the outcome in @out, or -errno.
 */
static inline int test_producer_send_from(int tp, int fd, const char *context,
					  bool all_cpus, uint64_t cookie,
					  unsigned int count, unsigned int batch,
					  struct post_result *out)
{
	char buf[128];
	ssize_t ret;
	int len;

	len = snprintf(buf, sizeof(buf), "post %d %s %llu %u %u%s\n", fd,
		       context, (unsigned long long)cookie, count, batch,
		       all_cpus ? " all" : "");
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
	if (sscanf(buf, "stored %u refused %u error %d",
		   &out->stored, &out->refused, &out->error) != 3)
		return -EPROTO;
	return 0;
}

static inline int test_producer_send(int tp, int fd, const char *context,
				     uint64_t cookie, unsigned int count,
				     unsigned int batch, struct post_result *out)
{
	return test_producer_send_from(tp, fd, context, false, cookie, count,
				       batch, out);
}

/*
 * test_producer_send() through a handle of its own.  The handle takes a
 * descriptor, so when @fd may be closed concurrently, open the handle
 * first: it must not be the one to reuse @fd's number.
 */
static inline int test_producer_post(int fd, const char *context,
				     uint64_t cookie, unsigned int count,
				     unsigned int batch, struct post_result *out)
{
	int tp = test_producer_open();
	int ret;

	if (tp < 0)
		return tp;
	ret = test_producer_send(tp, fd, context, cookie, count, batch, out);
	close(tp);
	return ret;
}

#endif /* __TEST_PRODUCER_H */
