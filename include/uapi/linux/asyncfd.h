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
 * The ring header, in user memory, aligned to 8 bytes.  @iuser is
 * written by userspace only, @ikernel by the kernel only.  @overflow
 * counts the results refused for lack of room that the consumer has not
 * claimed yet: the kernel adds to it atomically, and the consumer claims
 * them with an atomic exchange to 0, then collects that many from the
 * producer's fallback (for kernel AIO, the aio ring).  The asyncfd polls
 * readable while @overflow is not 0, with EPOLLPRI.  A ring has at least
 * 2 entries, as one always stays empty.
 */
struct asyncfd_uring {
	__u64 ptr;		/* user address of struct asyncfd_result[size] */
	__u32 iuser;		/* consumer index */
	__u32 size;		/* number of entries */
	__u32 ikernel;		/* producer index */
	__u32 overflow;		/* refused results, not yet claimed */
};

/*
 * One result; a slot is free when its cookie is 0, so producers never
 * post a zero cookie.  The layout equals struct io_event.
 */
struct asyncfd_result {
	__u64 cookie;
	__u64 obj;
	__s64 res;
	__s64 res2;
};

#endif /* _UAPI_LINUX_ASYNCFD_H */
