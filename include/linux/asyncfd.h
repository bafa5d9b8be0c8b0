/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The producer side of asyncfd: kernel code that completes work on
 * behalf of userspace posts the results into the user's ring.
 */
#ifndef _LINUX_ASYNCFD_H
#define _LINUX_ASYNCFD_H

#include <linux/err.h>
#include <linux/fs.h>
#include <linux/list.h>
#include <uapi/linux/asyncfd.h>

struct asyncfd_ctx;

/**
 * struct asyncfd_wait - A producer's storage for results that may wait
 * @list: the asyncfd's list of results that wait for room
 * @results: the results, which stay valid and unchanged until @done
 * @nr: the number of results, at least 1
 * @done: called once the last of them is in the ring (@stored true),
 *	or when the asyncfd is released while some still wait (@stored
 *	false: from @results on, @nr of them were never stored).  Called
 *	without asyncfd locks held, from any context.
 *
 * The asyncfd owns the structure from asyncfd_ctx_add_wait() returning 1
 * until @done, and moves @results and @nr past what it stored.
 */
struct asyncfd_wait {
	struct list_head list;
	const struct asyncfd_result *results;
	unsigned int nr;
	void (*done)(struct asyncfd_wait *wait, bool stored);
};

#ifdef CONFIG_ASYNCFD

struct asyncfd_ctx *asyncfd_ctx_fdget(int fd);
/* For asyncfd_file_ctx(), which KAIO calls on every submission. */
extern const struct file_operations asyncfd_fops;

/**
 * asyncfd_file_ctx - The context of an asyncfd file, borrowed
 * @file: the file
 *
 * The context stays valid for as long as the caller holds @file; a
 * producer that posts later takes a reference with asyncfd_ctx_get(),
 * which outlives the file: once userspace releases the file,
 * asyncfd_ctx_add_results() returns -EBADFD.
 *
 * Return: the context, or ERR_PTR(-EINVAL) if @file is not an asyncfd.
 */
static inline struct asyncfd_ctx *asyncfd_file_ctx(struct file *file)
{
	if (file->f_op != &asyncfd_fops)
		return ERR_PTR(-EINVAL);
	return file->private_data;
}

void asyncfd_ctx_get(struct asyncfd_ctx *ctx);
void asyncfd_ctx_put(struct asyncfd_ctx *ctx);
int asyncfd_ctx_add_results(struct asyncfd_ctx *ctx,
			    const struct asyncfd_result *results, int n);
int asyncfd_ctx_add_wait(struct asyncfd_ctx *ctx, struct asyncfd_wait *wait);

#else /* CONFIG_ASYNCFD */

/* No file can be an asyncfd, so lookups fail as they do for other files. */
static inline struct asyncfd_ctx *asyncfd_ctx_fdget(int fd)
{
	return ERR_PTR(-EINVAL);
}

static inline struct asyncfd_ctx *asyncfd_file_ctx(struct file *file)
{
	return ERR_PTR(-EINVAL);
}

static inline void asyncfd_ctx_get(struct asyncfd_ctx *ctx)
{
}

static inline void asyncfd_ctx_put(struct asyncfd_ctx *ctx)
{
}

static inline int asyncfd_ctx_add_results(struct asyncfd_ctx *ctx,
					  const struct asyncfd_result *results,
					  int n)
{
	return -EBADFD;
}

static inline int asyncfd_ctx_add_wait(struct asyncfd_ctx *ctx,
				       struct asyncfd_wait *wait)
{
	return -EBADFD;
}

#endif /* CONFIG_ASYNCFD */

#endif /* _LINUX_ASYNCFD_H */
