/* SPDX-License-Identifier: GPL-2.0 */
/*
 * null_blk devices made through configfs for the asyncfd tests: their
 * irqmode picks the context that block completions, and so the asyncfd
 * deliveries of KAIO, run in.
 */
#ifndef __ASYNCFD_NULLB_H
#define __ASYNCFD_NULLB_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define NULLB_CONFIGFS		"/sys/kernel/config/nullb"

/*
 * A null_blk device of 4 KiB blocks that completes requests
 * (irqmode 0) inline, in the submitter's context, (1) in softirq
 * context, or (2) from an hrtimer, in hard interrupt context, after
 * @completion_nsec.  One queue and no poll queues: with more than one
 * hardware queue, irqmode 1 completes inline too.
 */
struct nullb {
	char dir[64];
	char path[64];		/* the block device */
};

static inline int nullb_set(const struct nullb *nb, const char *attr,
			    unsigned long value)
{
	char path[128], buf[32];
	int fd, len, ret = 0;

	snprintf(path, sizeof(path), "%s/%s", nb->dir, attr);
	len = snprintf(buf, sizeof(buf), "%lu\n", value);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != len)
		ret = -errno;
	close(fd);
	return ret;
}

static inline int nullb_index(const struct nullb *nb)
{
	char path[128], buf[32];
	ssize_t len;
	int fd;

	snprintf(path, sizeof(path), "%s/index", nb->dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return -EIO;
	buf[len] = '\0';
	return atoi(buf);
}

/* Power the device off and remove it; harmless on a half-made one. */
static inline void nullb_destroy(struct nullb *nb)
{
	if (!nb->dir[0])
		return;
	nullb_set(nb, "power", 0);
	rmdir(nb->dir);
	nb->dir[0] = '\0';
}

static inline double nullb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Make and power on the device; 0 or -errno. */
static inline int nullb_create(struct nullb *nb, const char *name,
			       unsigned int irqmode,
			       unsigned long completion_nsec)
{
	struct timespec pause = { 0, 10 * 1000 * 1000 };
	double deadline;
	int index, ret;

	snprintf(nb->dir, sizeof(nb->dir), "%s/%s", NULLB_CONFIGFS, name);
	/*
	 * A test that failed an assertion may have ended without its
	 * teardown and left its device behind: remove it, so that only
	 * that test fails.
	 */
	ret = mkdir(nb->dir, 0755) ? -errno : 0;
	if (ret == -EEXIST) {
		nullb_set(nb, "power", 0);
		rmdir(nb->dir);
		ret = mkdir(nb->dir, 0755) ? -errno : 0;
	}
	if (ret) {
		nb->dir[0] = '\0';
		return ret;
	}
	ret = nullb_set(nb, "submit_queues", 1);
	ret = ret ?: nullb_set(nb, "poll_queues", 0);
	ret = ret ?: nullb_set(nb, "blocksize", 4096);
	ret = ret ?: nullb_set(nb, "irqmode", irqmode);
	ret = ret ?: nullb_set(nb, "completion_nsec", completion_nsec);
	ret = ret ?: nullb_set(nb, "hw_queue_depth", 256);
	ret = ret ?: nullb_set(nb, "power", 1);
	if (ret)
		goto fail;
	index = nullb_index(nb);
	if (index < 0) {
		ret = index;
		goto fail;
	}
	/*
	 * The disk is named after the configfs directory, or nullb<index>
	 * on older kernels.  devtmpfs adds the node from a uevent: allow
	 * it a few seconds.
	 */
	deadline = nullb_now() + 5;
	do {
		snprintf(nb->path, sizeof(nb->path), "/dev/%s", name);
		if (!access(nb->path, R_OK))
			return 0;
		snprintf(nb->path, sizeof(nb->path), "/dev/nullb%d", index);
		if (!access(nb->path, R_OK))
			return 0;
		nanosleep(&pause, NULL);
	} while (nullb_now() < deadline);
	ret = -ENODEV;

fail:
	nullb_destroy(nb);
	return ret;
}

/*
 * Make the device and open it for O_DIRECT reads; the fd or -errno,
 * -ENOENT if the kernel has no null_blk configfs.  Needs _GNU_SOURCE.
 */
static inline int nullb_open(struct nullb *nb, const char *name,
			     unsigned int irqmode,
			     unsigned long completion_nsec)
{
	int fd, ret;

	ret = nullb_create(nb, name, irqmode, completion_nsec);
	if (ret)
		return ret;
	fd = open(nb->path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		nullb_destroy(nb);
		return ret;
	}
	return fd;
}

#endif /* __ASYNCFD_NULLB_H */
