/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The producer side of asyncfd: kernel code that completes work on
 * behalf of userspace posts the results into the user's ring.
 */
#ifndef _LINUX_ASYNCFD_H
#define _LINUX_ASYNCFD_H

#include <linux/err.h>
#include <uapi/linux/asyncfd.h>

struct asyncfd_ctx;
struct file;

#ifdef CONFIG_ASYNCFD

struct file *asyncfd_fget(int fd);
int asyncfd_add_results(struct file *file, const struct asyncfd_result *results,
			int n);
struct asyncfd_ctx *asyncfd_ctx_fdget(int fd);
struct asyncfd_ctx *asyncfd_ctx_fileget(struct file *file);
void asyncfd_ctx_put(struct asyncfd_ctx *ctx);
int asyncfd_ctx_add_results(struct asyncfd_ctx *ctx,
			    const struct asyncfd_result *results, int n);

#else /* CONFIG_ASYNCFD */

/* No file can be an asyncfd, so lookups fail as they do for other files. */
static inline struct file *asyncfd_fget(int fd)
{
	return ERR_PTR(-EINVAL);
}

static inline int asyncfd_add_results(struct file *file,
				      const struct asyncfd_result *results,
				      int n)
{
	return -EBADFD;
}

static inline struct asyncfd_ctx *asyncfd_ctx_fdget(int fd)
{
	return ERR_PTR(-EINVAL);
}

static inline struct asyncfd_ctx *asyncfd_ctx_fileget(struct file *file)
{
	return ERR_PTR(-EINVAL);
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

#endif /* CONFIG_ASYNCFD */

#endif /* _LINUX_ASYNCFD_H */
