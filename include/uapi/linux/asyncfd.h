/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * asyncfd: results of asynchronous kernel work, delivered into a ring
 * that userspace supplies.  See Documentation/filesystems/asyncfd.rst.
 */
#ifndef _UAPI_LINUX_ASYNCFD_H
#define _UAPI_LINUX_ASYNCFD_H

#include <linux/types.h>

/* Flags for asyncfd(). */
#define ASYNCFD_CLOEXEC		(1U << 0)

/*
 * Largest ring asyncfd() accepts: 4M entries, 128 MiB of results.  It
 * keeps the byte size of a ring within 32 bits on every architecture
 * and bounds the page array that pinning allocates; RLIMIT_MEMLOCK
 * usually stops a ring well before that.
 */
#define ASYNCFD_MAX_ENTRIES	(1U << 22)

/*
 * The ring header, in user memory, aligned to 8 bytes.  Each word has one
 * writer: @iuser is written by userspace only, @ikernel and @kflags by the
 * kernel only, which never reads them back.  A result that finds no room
 * waits in the kernel, in order, and enters the ring once the consumer
 * has made room: ASYNCFD_KF_WAITING in @kflags says that some wait, and
 * asyncfd(fd, NULL, 0) moves them in.  A ring has at least 2 entries, as
 * one always stays empty.  The header grows only under a new flag of
 * asyncfd(), which older kernels refuse.
 */
struct asyncfd_uring {
	__u64 ptr;		/* user address of struct asyncfd_result[size] */
	__u32 iuser;		/* consumer index */
	__u32 size;		/* number of entries */
	__u32 ikernel;		/* producer index */
	__u32 kflags;		/* ASYNCFD_KF_* */
};

/* Results wait in the kernel for room in the ring. */
#define ASYNCFD_KF_WAITING	(1U << 0)

/* One result, with the layout of struct io_event.  Any cookie is valid. */
struct asyncfd_result {
	__u64 cookie;
	__u64 obj;
	__s64 res;
	__s64 res2;
};

#endif /* _UAPI_LINUX_ASYNCFD_H */
