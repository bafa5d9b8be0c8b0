/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The consumer side of an asyncfd ring.
 *
 * The kernel stores results into a ring that lives in our memory, and
 * we take them out without a system call.  The memory ordering below is
 * part of the ABI (Documentation/filesystems/asyncfd.rst): copy these
 * helpers rather than rewrite them.  A ring has one consumer; threads
 * that share a ring must serialize asyncfd_reap() and friends.
 */
#ifndef __ASYNCFD_RING_H
#define __ASYNCFD_RING_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <linux/asyncfd.h>

#ifndef __NR_asyncfd
#define __NR_asyncfd 463	/* x86 and the generic syscall table */
#endif

struct asyncfd_ring {
	struct asyncfd_uring *hdr;
	struct asyncfd_result *entries;
	/*
	 * Our own copy of hdr->size: the header is writable memory, and a
	 * stray store there must not send us past the end of @entries.
	 */
	unsigned int size;
	int fd;			/* -1 while no asyncfd uses the ring */
	void *mem;
	size_t mem_len;
};

static inline int sys_asyncfd(int ufd, struct asyncfd_uring *urng,
			      unsigned int flags)
{
	return syscall(__NR_asyncfd, ufd, urng, flags);
}

/*
 * Map a zeroed ring of @size entries, ready to register with
 * sys_asyncfd(); 0 or -errno.  On failure @ring is left empty, so that
 * asyncfd_ring_exit() is harmless.
 *
 * The header gets a page to itself: the kernel pins the header and the
 * entries separately, so a page they shared would be charged to
 * RLIMIT_MEMLOCK twice anyway, and page-aligned entries make a ring of
 * 2^n >= 128 entries cost exactly 1 + size * 32 / PAGE_SIZE pages.
 */
static inline int asyncfd_ring_map(struct asyncfd_ring *ring,
				   unsigned int size)
{
	size_t page = sysconf(_SC_PAGESIZE);
	size_t bytes = (size_t)size * sizeof(struct asyncfd_result);
	size_t len = page + (bytes + page - 1) / page * page;
	void *mem;

	*ring = (struct asyncfd_ring){ .fd = -1 };
	if (!size || size > ASYNCFD_MAX_ENTRIES)
		return -EINVAL;
	mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	ring->mem = mem;
	ring->mem_len = len;
	ring->hdr = mem;
	ring->entries = (struct asyncfd_result *)((char *)mem + page);
	ring->size = size;
	ring->hdr->ptr = (uintptr_t)ring->entries;
	ring->hdr->size = size;
	return 0;
}

/*
 * Unmapping a registered ring is allowed: the kernel keeps storing into
 * its pinned pages, out of our sight, until a swap or the last close.
 */
static inline void asyncfd_ring_unmap(struct asyncfd_ring *ring)
{
	munmap(ring->mem, ring->mem_len);
	ring->mem = NULL;
	ring->hdr = NULL;
	ring->entries = NULL;
}

/* Map a ring and create an asyncfd for it; 0 or -errno. */
static inline int asyncfd_ring_setup(struct asyncfd_ring *ring,
				     unsigned int size, unsigned int flags)
{
	int ret = asyncfd_ring_map(ring, size);

	if (ret)
		return ret;
	ring->fd = sys_asyncfd(-1, ring->hdr, flags);
	if (ring->fd < 0) {
		ret = -errno;
		asyncfd_ring_unmap(ring);
	}
	return ret;
}

/*
 * Make @next, a mapped ring, the ring of @ring's asyncfd; 0 or -errno.
 * On success @next owns the fd, and @ring keeps whatever the kernel
 * stored before the swap: reap it, then unmap it.  On failure the
 * kernel still uses @ring.
 */
static inline int asyncfd_ring_swap(struct asyncfd_ring *ring,
				    struct asyncfd_ring *next)
{
	if (sys_asyncfd(ring->fd, next->hdr, 0) < 0)
		return -errno;
	next->fd = ring->fd;
	ring->fd = -1;
	return 0;
}

static inline void asyncfd_ring_exit(struct asyncfd_ring *ring)
{
	if (ring->fd >= 0)
		close(ring->fd);
	ring->fd = -1;
	if (ring->mem)
		asyncfd_ring_unmap(ring);
}

/* Number of results waiting to be reaped. */
static inline unsigned int asyncfd_ring_ready(const struct asyncfd_ring *ring)
{
	unsigned int head = ring->hdr->iuser;
	unsigned int tail = __atomic_load_n(&ring->hdr->ikernel, __ATOMIC_ACQUIRE);

	return tail >= head ? tail - head : ring->size - head + tail;
}

/*
 * The oldest result, or NULL.  Its slot stays ours, and the kernel does
 * not reuse it, until asyncfd_advance() hands it back.
 */
static inline struct asyncfd_result *asyncfd_peek(const struct asyncfd_ring *ring)
{
	unsigned int head = ring->hdr->iuser;

	/* Pairs with the kernel's release of ikernel after its stores. */
	if (head == __atomic_load_n(&ring->hdr->ikernel, __ATOMIC_ACQUIRE))
		return NULL;
	return &ring->entries[head];
}

/*
 * Hand the @n oldest results back to the kernel.  Release keeps our
 * reads of them before the kernel's next stores into their slots: the
 * kernel reads iuser with acquire before it stores.
 */
static inline void asyncfd_advance(struct asyncfd_ring *ring, unsigned int n)
{
	unsigned int head = ring->hdr->iuser + n;

	if (head >= ring->size)
		head -= ring->size;
	__atomic_store_n(&ring->hdr->iuser, head, __ATOMIC_RELEASE);
}

/* Copy up to @max results, oldest first, into @out; returns how many. */
static inline unsigned int asyncfd_reap(struct asyncfd_ring *ring,
					struct asyncfd_result *out,
					unsigned int max)
{
	struct asyncfd_result *entries = ring->entries;
	unsigned int size = ring->size;
	unsigned int head = ring->hdr->iuser;
	unsigned int tail = __atomic_load_n(&ring->hdr->ikernel, __ATOMIC_ACQUIRE);
	unsigned int n = 0;

	while (head != tail && n < max) {
		out[n++] = entries[head];
		if (++head == size)
			head = 0;
	}
	if (n)
		__atomic_store_n(&ring->hdr->iuser, head, __ATOMIC_RELEASE);
	return n;
}

/*
 * Whether results wait in the kernel for room.  Read it after making
 * room: results that had to wait enter the ring at the next post, or
 * at once with asyncfd_flush().
 */
static inline bool asyncfd_waiting(const struct asyncfd_ring *ring)
{
	return __atomic_load_n(&ring->hdr->kflags, __ATOMIC_ACQUIRE) &
	       ASYNCFD_KF_WAITING;
}

/*
 * Move the results that wait in the kernel into the room we made; never
 * blocks.  Returns how many still wait (the ring is full again), or
 * -errno.
 */
static inline int asyncfd_flush(const struct asyncfd_ring *ring)
{
	int ret = sys_asyncfd(ring->fd, NULL, 0);

	return ret < 0 ? -errno : ret;
}

#endif /* __ASYNCFD_RING_H */
