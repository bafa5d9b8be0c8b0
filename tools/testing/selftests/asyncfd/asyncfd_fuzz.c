// SPDX-License-Identifier: GPL-2.0
/*
 * Random sequences of asyncfd() (create, swap and flush), read() of an
 * asyncfd, KAIO with IOCB_FLAG_ASYNCFD, the test producer, close, dup,
 * fork, munmap, mprotect and friends, with random arguments: mostly
 * plausible ones, so that calls get past the argument checks, and now
 * and then wild ones.  Results are left to wait in the kernel, rings
 * are swapped and closed while they do, cookies may be 0, and the
 * header words that only the kernel writes get scribbled on.
 *
 * It passes when the kernel did not splat (the harness reads dmesg),
 * every call failed only with an error the ABI documents, the producer
 * accounted for every result, and pinned memory (VmPin, and the user's
 * locked_vm as RLIMIT_MEMLOCK shows it) came back to where it started.
 * Then a fresh ring must still get every result, once and in order.
 *
 * Several worker processes fuzz at once, each with its own descriptors
 * and mappings, so that the kernel sees concurrent callers and the run
 * keeps both CPUs busy while one caller waits.  They fuzz for a time,
 * not for a count: a slower host runs fewer operations, as long as
 * there were FUZZ_MIN_OPS.
 *
 * Knobs, from the environment:
 *	ASYNCFD_FUZZ_SEED	replay the choices of an earlier run
 *	ASYNCFD_FUZZ_WORKERS	worker processes (default 4); worker i
 *				is seeded with the seed + i
 *	ASYNCFD_FUZZ_SECONDS	how long to fuzz (default 100)
 *	ASYNCFD_FUZZ_OPS	stop after this many operations in all, if
 *				sooner (default: no limit)
 * Each worker's choices replay exactly; what the kernel returns depends
 * on timing only where other workers, children or interrupts race.
 */

#define _GNU_SOURCE
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/aio_abi.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../kselftest_harness.h"
#include "asyncfd_ring.h"
#include "kaio.h"
#include "required.h"
#include "stress_helpers.h"
#include "test_producer.h"

#define NR_SLOTS	16	/* descriptors the operations pick from */
#define NR_REGIONS	8	/* mappings rings and buffers live in */
#define NR_AIO_CTXS	4
#define NR_IOCBS	64
#define NR_CHILDREN	4
#define MAX_REGION_PAGES	32
/* Caps what a run can pin: rings must fit, some must not. */
#define FUZZ_MEMLOCK_PAGES	256
#define PROBE_MEMLOCK_PAGES	64
/* Descriptors the operations must not close: out of dup2()'s reach. */
#define FIRST_PRIVATE_FD	200
#define CHILD_OPS	64
#define CHILD_SECONDS	5
#define MAX_OP_KINDS	32
/* Proof that the fuzzer ran, whatever the speed of the host. */
#define FUZZ_MIN_OPS	10000

/*
 * A PROT_NONE page on each side keeps a ring or a copy that runs past
 * the end from reaching memory that is not ours to fuzz.
 */
struct region {
	char *addr;		/* NULL when unmapped */
	size_t len;		/* without the guard pages */
};

/* A ring we registered: where a consumer would look. */
struct ring_view {
	struct asyncfd_uring *hdr;
	struct asyncfd_result *entries;
	unsigned int size;
};

/*
 * Counts of every worker and child, in shared memory: atomics only.
 * The first failure's text goes to whoever counted it first.
 */
struct fuzz_stats {
	uint64_t ops, failures, child_failures, forks;
	uint64_t asyncfd_ok, submitted, posted, waited, unposted, reaped;
	uint64_t flushes, reads, swaps_waiting;
	uint64_t op_count[MAX_OP_KINDS], op_ns[MAX_OP_KINDS];
	char failure[256];
};

struct fuzz {
	struct fuzz_stats *stats;
	uint64_t rng;
	unsigned int worker;
	bool child;
	int tp;				/* test producer handle */
	int file;			/* a tmpfs file for KAIO */
	int fds[NR_SLOTS];
	struct ring_view views[NR_SLOTS];
	struct region regions[NR_REGIONS];
	aio_context_t aio[NR_AIO_CTXS];
	struct iocb *iocbs;		/* NR_IOCBS, see map_iocbs() */
	unsigned int next_iocb;
	pid_t children[NR_CHILDREN];
	unsigned int nr_cpus;
	uint64_t ops;			/* by this process */
	uint64_t failures;		/* by this process */
};

static void count(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static void fail(struct fuzz *fz, const char *what, long ret, int err)
{
	fz->failures++;
	if (!__atomic_fetch_add(&fz->stats->failures, 1, __ATOMIC_RELAXED))
		snprintf(fz->stats->failure, sizeof(fz->stats->failure),
			 "worker %u%s op %llu: %s returned %ld errno %d",
			 fz->worker, fz->child ? " child" : "",
			 (unsigned long long)fz->ops, what, ret, err);
}

/*
 * Memory we read or write may have been unmapped or protected by an
 * earlier operation: touch it through these, which turn the fault into
 * a false return.
 */
static sigjmp_buf fault_jmp;
static int catching_faults;	/* shared with the handler: atomics only */

static void fault_handler(int sig)
{
	if (__atomic_load_n(&catching_faults, __ATOMIC_RELAXED))
		siglongjmp(fault_jmp, 1);
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_faults(int on)
{
	/* Order the flag against the copy, as the handler sees them. */
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
	__atomic_store_n(&catching_faults, on, __ATOMIC_RELAXED);
	__atomic_signal_fence(__ATOMIC_SEQ_CST);
}

/* Read @len bytes, which may be unmapped; false if they were. */
static bool guarded_copy(void *dst, const void *src, size_t len)
{
	if (sigsetjmp(fault_jmp, 1)) {
		catch_faults(0);
		return false;
	}
	catch_faults(1);
	memcpy(dst, src, len);
	catch_faults(0);
	return true;
}

/* Bytes from @addr to the end of the region that holds it, or 0. */
static size_t region_room(const struct fuzz *fz, const void *addr)
{
	const char *p = addr;
	unsigned int i;

	for (i = 0; i < NR_REGIONS; i++) {
		const struct region *r = &fz->regions[i];

		if (r->addr && p >= r->addr && p < r->addr + r->len)
			return r->addr + r->len - p;
	}
	return 0;
}

/*
 * Write into a region only, as far as its end: outside, the address may
 * have become libc's or the test harness's memory.  False if not all
 * of @len was written.
 */
static bool guarded_write(const struct fuzz *fz, void *dst, const void *src,
			  size_t len)
{
	size_t room = region_room(fz, dst);

	return guarded_copy(dst, src, len < room ? len : room) && len <= room;
}

static int pick_fd(struct fuzz *fz)
{
	switch (rng_below(&fz->rng, 10)) {
	case 0:
		/*
		 * Any number, but not stdin, stdout or stderr: KAIO would
		 * read the console, or write over the TAP output.
		 */
		return rng_one_in(&fz->rng, 8) ? -1 : 3 + rng_below(&fz->rng, 40);
	case 1:
		return fz->file;
	default:
		return fz->fds[rng_below(&fz->rng, NR_SLOTS)];
	}
}

static struct region *pick_region(struct fuzz *fz)
{
	return &fz->regions[rng_below(&fz->rng, NR_REGIONS)];
}

/* An address in some region, 8-aligned mostly, or a wild one. */
static char *pick_addr(struct fuzz *fz, size_t want)
{
	struct region *r = pick_region(fz);
	size_t off;

	switch (rng_below(&fz->rng, 20)) {
	case 0:
		return NULL;
	case 1:
		return (char *)(uintptr_t)rng_next(&fz->rng);
	case 2:
		return (char *)0xffff888000000000ULL;	/* the direct map */
	}
	if (!r->addr)
		return (char *)(uintptr_t)rng_next(&fz->rng);
	off = r->len > want ? rng_below(&fz->rng, r->len - want + 1) : 0;
	if (!rng_one_in(&fz->rng, 16))
		off &= ~(size_t)7;
	if (rng_one_in(&fz->rng, 2))
		off &= ~(size_t)(getpagesize() - 1);
	return r->addr + off;
}

/* Remember @fd in a slot, closing whatever the slot named before. */
static unsigned int keep_fd(struct fuzz *fz, int fd)
{
	unsigned int slot = rng_below(&fz->rng, NR_SLOTS);

	if (fz->fds[slot] >= 0 && fz->fds[slot] < FIRST_PRIVATE_FD)
		close(fz->fds[slot]);
	fz->fds[slot] = fd;
	memset(&fz->views[slot], 0, sizeof(fz->views[slot]));
	return slot;
}

/* Mostly an asyncfd we created (perhaps closed since), else anything. */
static int pick_asyncfd(struct fuzz *fz)
{
	unsigned int first = rng_below(&fz->rng, NR_SLOTS), i;

	if (rng_one_in(&fz->rng, 4))
		return pick_fd(fz);
	for (i = 0; i < NR_SLOTS; i++)
		if (fz->views[(first + i) % NR_SLOTS].hdr)
			return fz->fds[(first + i) % NR_SLOTS];
	return pick_fd(fz);
}

static bool asyncfd_errno_documented(int err)
{
	return err == EFAULT || err == EINVAL || err == EBADF ||
	       err == ENOMEM || err == EMFILE || err == ENFILE ||
	       err == EOPNOTSUPP;
}

/*
 * Half the asyncfds are non-blocking from the start, for good: a flag
 * that changed later would race the reads of children sharing the file.
 */
static void maybe_nonblock(struct fuzz *fz, int fd)
{
	if (rng_one_in(&fz->rng, 2))
		fcntl(fd, F_SETFL, O_NONBLOCK);
}

/* Remember that @slot's asyncfd now uses the ring at @hdr. */
static void set_view(struct fuzz *fz, unsigned int slot, char *hdr,
		     char *entries, unsigned int size)
{
	fz->views[slot] = (struct ring_view){
		.hdr = (struct asyncfd_uring *)hdr,
		.entries = (struct asyncfd_result *)entries,
		.size = size,
	};
}

/* Create an asyncfd, or swap the ring of one, on a mostly sane header. */
static void op_asyncfd(struct fuzz *fz)
{
	struct asyncfd_uring uring = {};
	unsigned int size = 1 + rng_below(&fz->rng, rng_one_in(&fz->rng, 8) ?
					  ASYNCFD_MAX_ENTRIES + 16 : 512);
	char *hdr = pick_addr(fz, sizeof(uring));
	char *entries = pick_addr(fz, size * sizeof(struct asyncfd_result));
	int ufd = rng_one_in(&fz->rng, 2) ? -1 : pick_fd(fz);
	unsigned int flags = rng_one_in(&fz->rng, 3) ? ASYNCFD_CLOEXEC : 0;
	int ret;

	if (rng_one_in(&fz->rng, 16))
		flags = rng_next(&fz->rng);
	uring.ptr = (uintptr_t)entries;
	uring.size = size;
	if (rng_one_in(&fz->rng, 4)) {
		uring.iuser = rng_below(&fz->rng, size);
		uring.ikernel = uring.iuser;
	}
	/* Words that only the kernel writes must start at 0. */
	if (rng_one_in(&fz->rng, 32))
		uring.kflags = rng_one_in(&fz->rng, 2) ? ASYNCFD_KF_WAITING : rng_next(&fz->rng);
	/* Nothing requires zeroed entries any more: mostly, clear them anyway. */
	if (!rng_one_in(&fz->rng, 8) && entries && size <= 512) {
		static const struct asyncfd_result zero[512];

		guarded_write(fz, entries, zero, size * sizeof(zero[0]));
	}
	if (!rng_one_in(&fz->rng, 8))
		guarded_write(fz, hdr, &uring, sizeof(uring));

	ret = sys_asyncfd(ufd, (struct asyncfd_uring *)hdr, flags);
	if (ret < 0) {
		if (!asyncfd_errno_documented(errno))
			fail(fz, "asyncfd", ret, errno);
		return;
	}
	count(&fz->stats->asyncfd_ok, 1);
	/* With no header, an existing asyncfd is flushed, not swapped. */
	if (ufd != -1 && hdr && ret != ufd)
		fail(fz, "asyncfd swap", ret, 0);
	if (ufd == -1) {
		maybe_nonblock(fz, ret);
		set_view(fz, keep_fd(fz, ret), hdr, entries, size);
	}
}

/*
 * Ask for the results that wait, as a consumer does once kflags says
 * so; now and then with flags, which a flush refuses.  Returns what
 * still waits, or -1.
 */
static int flush_fd(struct fuzz *fz, int fd)
{
	unsigned int flags = rng_one_in(&fz->rng, 8) ? rng_next(&fz->rng) : 0;
	int ret = sys_asyncfd(fd, NULL, flags);

	if (ret < 0) {
		/* -1 creates, and a NULL ring is no ring to create with. */
		if (!asyncfd_errno_documented(errno) ||
		    (fd == -1 && flags == 0 && errno != EFAULT))
			fail(fz, "asyncfd flush", ret, errno);
		return -1;
	}
	if (flags || fd == -1)
		fail(fz, "asyncfd flush with flags, or without a file", ret, 0);
	count(&fz->stats->flushes, 1);
	return ret;
}

/*
 * Consume a registered ring as a careless reader: it may be garbage, and
 * the fd may no longer be the ring's.  While kflags says that results
 * wait, mostly flush them in.
 */
static void op_reap(struct fuzz *fz)
{
	unsigned int slot = rng_below(&fz->rng, NR_SLOTS);
	struct ring_view *v = &fz->views[slot];
	struct asyncfd_uring hdr;
	struct asyncfd_result res;
	unsigned int n = 0;

	if (!v->hdr || !guarded_copy(&hdr, v->hdr, sizeof(hdr)))
		return;
	while (hdr.iuser != hdr.ikernel && hdr.iuser < v->size && n++ < 64) {
		if (!guarded_copy(&res, &v->entries[hdr.iuser], sizeof(res)))
			return;
		hdr.iuser = hdr.iuser + 1 == v->size ? 0 : hdr.iuser + 1;
	}
	guarded_write(fz, &v->hdr->iuser, &hdr.iuser, sizeof(hdr.iuser));
	count(&fz->stats->reaped, n);
	if ((hdr.kflags & ASYNCFD_KF_WAITING) && !rng_one_in(&fz->rng, 4))
		flush_fd(fz, fz->fds[slot]);
}

static void op_flush(struct fuzz *fz)
{
	flush_fd(fz, pick_asyncfd(fz));
}

/* What a post reports: every result accounted for, for a known reason. */
static bool post_sane(const struct post_result *pr, unsigned int count)
{
	if (pr->stored + pr->waited + pr->unposted != count ||
	    !pr->error != !pr->unposted)
		return false;
	return !pr->error || pr->error == -EBADFD || pr->error == -ENOSPC ||
	       pr->error == -ENOMEM || pr->error == -E2BIG;
}

/*
 * Post @nr results to @fd, which nobody may ever consume: without
 * retry, so that a call the kernel refuses ends the post.  Cookies may
 * be 0.  Returns the report, or false if nothing was posted.
 */
static bool post_to(struct fuzz *fz, int fd, unsigned int nr, struct post_result *pr)
{
	const char *context = contexts[rng_below(&fz->rng, ARRAY_SIZE(contexts))];
	bool all_cpus = rng_one_in(&fz->rng, 8) && strcmp(context, "process");
	unsigned int batch = 1 + rng_below(&fz->rng, 64);
	uint64_t cookie = rng_one_in(&fz->rng, 8) ? 0 : rng_below(&fz->rng, UINT64_MAX / 2);
	int ret;

	ret = test_producer_send_from(fz->tp, fd, context, all_cpus, false,
				      cookie, nr, batch, pr);
	if (ret) {
		if (ret != -EBADF && ret != -EINVAL)
			fail(fz, "post", ret, -ret);
		return false;
	}
	if (!post_sane(pr, nr * (all_cpus ? fz->nr_cpus : 1))) {
		char what[160];

		snprintf(what, sizeof(what),
			 "post %u from %s on %u CPUs: waited %u unposted %u, report",
			 nr, context, all_cpus ? fz->nr_cpus : 1,
			 pr->waited, pr->unposted);
		fail(fz, what, pr->stored, -pr->error);
	}
	count(&fz->stats->posted, pr->stored + pr->waited + pr->unposted);
	count(&fz->stats->waited, pr->waited);
	count(&fz->stats->unposted, pr->unposted);
	return true;
}

static void op_post(struct fuzz *fz)
{
	struct post_result pr;

	post_to(fz, pick_fd(fz), 1 + rng_below(&fz->rng, 64), &pr);
}

/*
 * A sane ring somewhere in a region: a header, then @size zeroed
 * entries.  False if no mapped region has room, or the memory faults.
 */
static bool sane_ring(struct fuzz *fz, unsigned int size, char **hdr, char **entries)
{
	struct region *r = pick_region(fz);
	size_t need = 64 + size * sizeof(struct asyncfd_result);
	struct asyncfd_uring uring = { .size = size };
	static const struct asyncfd_result zero[512];
	size_t off;

	if (!r->addr || r->len < need || size > ARRAY_SIZE(zero))
		return false;
	off = rng_below(&fz->rng, r->len - need + 1) & ~(size_t)7;
	*hdr = r->addr + off;
	*entries = *hdr + 64;
	uring.ptr = (uintptr_t)*entries;
	return guarded_write(fz, *entries, zero, size * sizeof(zero[0])) &&
	       guarded_write(fz, *hdr, &uring, sizeof(uring));
}

/*
 * Overfill an asyncfd of ours so that results wait in the kernel, then
 * swap its ring for a sane one, which they move into as far as it has
 * room; the rest keep waiting, and the new header's kflags says so.
 */
static void op_swap_waiting(struct fuzz *fz)
{
	unsigned int slot = rng_below(&fz->rng, NR_SLOTS);
	unsigned int size = 2 + rng_below(&fz->rng, 63);
	struct ring_view *v = &fz->views[slot];
	struct post_result pr;
	char *hdr, *entries;
	int fd = fz->fds[slot];
	int ret;

	if (!v->hdr || fd < 0)
		return;
	if (!post_to(fz, fd, v->size + 1 + rng_below(&fz->rng, v->size < 64 ? v->size : 64),
		     &pr))
		return;
	if (!sane_ring(fz, size, &hdr, &entries))
		return;
	ret = sys_asyncfd(fd, (struct asyncfd_uring *)hdr, 0);
	if (ret < 0) {
		if (!asyncfd_errno_documented(errno))
			fail(fz, "asyncfd swap", ret, errno);
		return;
	}
	if (ret != fd)
		fail(fz, "asyncfd swap", ret, 0);
	count(&fz->stats->swaps_waiting, pr.waited > 0);
	set_view(fz, slot, hdr, entries, size);
	if (rng_one_in(&fz->rng, 2))
		flush_fd(fz, fd);
}

/*
 * The words of a ring header that only the kernel writes, or iuser,
 * scribbled on: the kernel keeps its own copies of the former.
 */
static void op_scribble_header(struct fuzz *fz)
{
	struct ring_view *v = &fz->views[rng_below(&fz->rng, NR_SLOTS)];
	uint32_t val = rng_below(&fz->rng, 4) ? rng_below(&fz->rng, v->size + 2) :
						 rng_next(&fz->rng);

	if (!v->hdr)
		return;
	switch (rng_below(&fz->rng, 3)) {
	case 0:
		guarded_write(fz, &v->hdr->ikernel, &val, sizeof(val));
		break;
	case 1:
		val = rng_one_in(&fz->rng, 2) ? val : val ^ ASYNCFD_KF_WAITING;
		guarded_write(fz, &v->hdr->kflags, &val, sizeof(val));
		break;
	case 2:
		guarded_write(fz, &v->hdr->iuser, &val, sizeof(val));
		break;
	}
}

/*
 * read() flushes, and returns what the ring holds; it blocks while the
 * ring is empty and nothing waits.  Blocking asyncfds only get reads
 * too short to take, which fail before any wait.  The file is read-only.
 */
static void op_read(struct fuzz *fz)
{
	int fd = pick_asyncfd(fz), fl;
	uint64_t buf[2] = {};
	size_t len;
	ssize_t ret;

	if (!is_asyncfd(fd))
		return;
	fl = fcntl(fd, F_GETFL);
	if (fl < 0)
		return;
	if ((fl & O_ACCMODE) != O_RDONLY)
		fail(fz, "asyncfd F_GETFL", fl, 0);
	ret = write(fd, buf, sizeof(buf[0]));
	if (ret != -1 || errno != EBADF)
		fail(fz, "asyncfd write", ret, errno);
	len = rng_below(&fz->rng, fl & O_NONBLOCK ? sizeof(buf) + 1 : sizeof(buf[0]));
	ret = read(fd, buf, len);
	count(&fz->stats->reads, 1);
	if (len < sizeof(buf[0])) {
		if (ret != -1 || errno != EINVAL)
			fail(fz, "short asyncfd read", ret, errno);
	} else if (ret == -1 ? errno != EAGAIN :
		   ret != sizeof(buf[0]) || buf[0] >= ASYNCFD_MAX_ENTRIES) {
		fail(fz, "asyncfd read", ret, ret == -1 ? errno : 0);
	}
}

static void op_close(struct fuzz *fz)
{
	unsigned int slot = rng_below(&fz->rng, NR_SLOTS);

	if (fz->fds[slot] >= 0 && fz->fds[slot] < FIRST_PRIVATE_FD)
		close(fz->fds[slot]);
	fz->fds[slot] = -1;
	memset(&fz->views[slot], 0, sizeof(fz->views[slot]));
}

static void op_dup(struct fuzz *fz)
{
	unsigned int from = rng_below(&fz->rng, NR_SLOTS);
	int fd = fz->fds[from], ret;

	if (rng_one_in(&fz->rng, 2)) {
		ret = dup(fd);
	} else {
		int target = 3 + rng_below(&fz->rng, 40);

		ret = dup3(fd, target, rng_one_in(&fz->rng, 2) ? O_CLOEXEC : 0);
	}
	if (ret >= 0)
		fz->views[keep_fd(fz, ret)] = fz->views[from];
}

static void region_unmap(struct region *r)
{
	size_t page = getpagesize();

	if (r->addr)
		munmap(r->addr - page, r->len + 2 * page);
	r->addr = NULL;
}

static void op_mmap(struct fuzz *fz)
{
	struct region *r = pick_region(fz);
	size_t page = getpagesize();
	size_t len = (1 + rng_below(&fz->rng, MAX_REGION_PAGES)) * page;
	int flags = MAP_PRIVATE | MAP_ANONYMOUS, fd = -1;
	char *guarded;
	void *addr;

	region_unmap(r);
	guarded = mmap(NULL, len + 2 * page, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (guarded == MAP_FAILED) {
		fail(fz, "mmap", -1, errno);
		return;
	}
	switch (rng_below(&fz->rng, 4)) {
	case 0:
		flags = MAP_SHARED | MAP_ANONYMOUS;
		break;
	case 1:
		/* shmem pages, which a ring may pin like anonymous ones */
		fd = memfd_create("asyncfd-fuzz", MFD_CLOEXEC);
		if (fd < 0 || ftruncate(fd, len)) {
			fail(fz, "memfd", fd, errno);
			if (fd >= 0)
				close(fd);
			munmap(guarded, len + 2 * page);
			return;
		}
		flags = MAP_SHARED;
		break;
	}
	if (rng_one_in(&fz->rng, 4))
		flags |= MAP_POPULATE;
	addr = mmap(guarded + page, len, PROT_READ | PROT_WRITE,
		    flags | MAP_FIXED, fd, 0);
	if (fd >= 0)
		close(fd);
	if (addr == MAP_FAILED) {
		fail(fz, "mmap", -1, errno);
		munmap(guarded, len + 2 * page);
		return;
	}
	r->addr = addr;
	r->len = len;
}

/* Some pages of a region, whole or in part. */
static void pick_pages(struct fuzz *fz, struct region *r, char **start,
		       size_t *len)
{
	size_t page = getpagesize(), pages = r->len / page;
	size_t first = rng_below(&fz->rng, pages);

	*start = r->addr + first * page;
	*len = (1 + rng_below(&fz->rng, pages - first)) * page;
}

static void op_munmap(struct fuzz *fz)
{
	struct region *r = pick_region(fz);
	char *start;
	size_t len;

	if (!r->addr)
		return;
	if (rng_one_in(&fz->rng, 3)) {
		region_unmap(r);
		return;
	}
	pick_pages(fz, r, &start, &len);
	if (rng_one_in(&fz->rng, 2)) {
		/* Fresh pages where a ring was: the kernel keeps the old. */
		munmap(start, len);
		mmap(start, len, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	} else {
		madvise(start, len, MADV_DONTNEED);
	}
}

static void op_mprotect(struct fuzz *fz)
{
	static const int prots[] = { PROT_NONE, PROT_READ, PROT_READ | PROT_WRITE };
	struct region *r = pick_region(fz);
	char *start;
	size_t len;

	if (!r->addr)
		return;
	pick_pages(fz, r, &start, &len);
	mprotect(start, len, prots[rng_below(&fz->rng, ARRAY_SIZE(prots))]);
}

/* Random bytes into a region: a ring's header and entries included. */
static void op_scribble(struct fuzz *fz)
{
	uint64_t val = rng_next(&fz->rng);
	char *at = pick_addr(fz, sizeof(val));

	if (rng_one_in(&fz->rng, 2))
		val &= 0xff;
	guarded_write(fz, at, &val, sizeof(val));
}

static void op_io_setup(struct fuzz *fz)
{
	aio_context_t *ctx = &fz->aio[rng_below(&fz->rng, NR_AIO_CTXS)];

	if (*ctx)
		sys_io_destroy(*ctx);
	*ctx = 0;
	if (sys_io_setup(1 + rng_below(&fz->rng, 64), ctx))
		*ctx = 0;
}

static void op_io_destroy(struct fuzz *fz)
{
	aio_context_t *ctx = &fz->aio[rng_below(&fz->rng, NR_AIO_CTXS)];

	if (*ctx)
		sys_io_destroy(*ctx);
	*ctx = 0;
}

/* Mostly a live aio context, so that submissions get somewhere. */
static aio_context_t pick_aio(struct fuzz *fz)
{
	unsigned int first = rng_below(&fz->rng, NR_AIO_CTXS), i;

	if (rng_one_in(&fz->rng, 16))
		return rng_next(&fz->rng);
	for (i = 0; i < NR_AIO_CTXS; i++)
		if (fz->aio[(first + i) % NR_AIO_CTXS])
			return fz->aio[(first + i) % NR_AIO_CTXS];
	return 0;
}

static void fill_iocb(struct fuzz *fz, struct iocb *cb)
{
	static const uint16_t opcodes[] = {
		IOCB_CMD_PREAD, IOCB_CMD_PWRITE, IOCB_CMD_FSYNC,
		IOCB_CMD_FDSYNC, IOCB_CMD_POLL, IOCB_CMD_NOOP,
		IOCB_CMD_PREADV, IOCB_CMD_PWRITEV,
	};
	size_t nbytes = rng_below(&fz->rng, 4 * getpagesize());

	memset(cb, 0, sizeof(*cb));
	cb->aio_lio_opcode = opcodes[rng_below(&fz->rng, ARRAY_SIZE(opcodes))];
	cb->aio_fildes = rng_one_in(&fz->rng, 4) ? pick_fd(fz) : fz->file;
	cb->aio_data = rng_one_in(&fz->rng, 16) ? 0 : rng_next(&fz->rng);
	cb->aio_flags = IOCB_FLAG_ASYNCFD;
	if (rng_one_in(&fz->rng, 8))
		cb->aio_flags = rng_below(&fz->rng, 16);
	cb->aio_resfd = pick_asyncfd(fz);
	cb->aio_offset = rng_below(&fz->rng, 65536);
	if (cb->aio_lio_opcode == IOCB_CMD_POLL) {
		/* Polling an asyncfd completes under its own ring lock. */
		if (rng_one_in(&fz->rng, 2))
			cb->aio_fildes = pick_asyncfd(fz);
		cb->aio_buf = POLLIN | (rng_one_in(&fz->rng, 2) ? POLLOUT : 0);
	} else if (cb->aio_lio_opcode == IOCB_CMD_PREADV ||
		   cb->aio_lio_opcode == IOCB_CMD_PWRITEV) {
		cb->aio_buf = (uintptr_t)pick_addr(fz, 16);
		cb->aio_nbytes = rng_below(&fz->rng, 4);
	} else {
		cb->aio_buf = (uintptr_t)pick_addr(fz, nbytes);
		cb->aio_nbytes = nbytes;
	}
}

static void op_io_submit(struct fuzz *fz)
{
	struct iocb *list[4];
	unsigned int nr = 1 + rng_below(&fz->rng, ARRAY_SIZE(list)), i;
	long ret;

	for (i = 0; i < nr; i++) {
		list[i] = &fz->iocbs[fz->next_iocb++ % NR_IOCBS];
		fill_iocb(fz, list[i]);
	}
	ret = sys_io_submit(pick_aio(fz), nr, list);
	if (ret > (long)nr)
		fail(fz, "io_submit", ret, 0);
	if (ret > 0)
		count(&fz->stats->submitted, ret);
}

static void op_io_cancel(struct fuzz *fz)
{
	struct io_event ev;

	syscall(SYS_io_cancel, pick_aio(fz),
		&fz->iocbs[rng_below(&fz->rng, NR_IOCBS)],
		rng_one_in(&fz->rng, 8) ? (void *)pick_addr(fz, sizeof(ev)) : &ev);
}

static void op_io_getevents(struct fuzz *fz)
{
	struct io_event ev[16];
	struct timespec zero = {};

	sys_io_getevents(pick_aio(fz), 0, ARRAY_SIZE(ev), ev, &zero);
}

static void op_poll(struct fuzz *fz)
{
	struct pollfd pfd = { .fd = pick_fd(fz), .events = POLLIN };
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int ep;

	if (rng_one_in(&fz->rng, 2)) {
		poll(&pfd, 1, 0);
		return;
	}
	ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		return;
	epoll_ctl(ep, EPOLL_CTL_ADD, pfd.fd, &ev);
	epoll_wait(ep, &ev, 1, 0);
	close(ep);
}

static void op_fdinfo(struct fuzz *fz)
{
	char path[64], buf[512];
	int fd;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", pick_fd(fz));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (read(fd, buf, sizeof(buf)) < 0)
		fail(fz, "fdinfo read", -1, errno);
	close(fd);
}

static void op_memlock(struct fuzz *fz)
{
	set_memlock_pages(rng_below(&fz->rng, FUZZ_MEMLOCK_PAGES + 1));
}

static void fuzz_run(struct fuzz *fz, uint64_t max_ops, int64_t deadline);

/* Reap children that are done; with @wait, all of them, within time. */
static void reap_children(struct fuzz *fz, bool wait)
{
	int64_t deadline = mono_ns() + 2 * CHILD_SECONDS * NSEC_PER_SEC;
	unsigned int i;

	for (i = 0; i < NR_CHILDREN; i++) {
		int status;
		pid_t pid;

		if (!fz->children[i])
			continue;
		while (!(pid = waitpid(fz->children[i], &status, WNOHANG)) &&
		       wait && mono_ns() < deadline)
			usleep(1000);
		if (!pid && wait) {
			kill(fz->children[i], SIGKILL);
			pid = waitpid(fz->children[i], &status, 0);
			count(&fz->stats->child_failures, 1);
		}
		if (pid == fz->children[i]) {
			if (!WIFEXITED(status) || WEXITSTATUS(status))
				count(&fz->stats->child_failures, 1);
			fz->children[i] = 0;
		}
	}
}

/*
 * A child shares the asyncfds, rings pinned in its parent's memory and
 * the aio contexts' files; it runs a few operations of its own, then
 * exits, and its exit must clean up whatever it pinned.
 */
static void op_fork(struct fuzz *fz)
{
	unsigned int slot = rng_below(&fz->rng, NR_CHILDREN);
	uint64_t seed = rng_next(&fz->rng);
	pid_t pid;

	if (fz->children[slot])
		reap_children(fz, false);
	if (fz->children[slot])
		return;
	pid = fork();
	if (pid < 0) {
		fail(fz, "fork", pid, errno);
		return;
	}
	if (pid == 0) {
		/* Our own producer handle: its report is per open file. */
		int tp = test_producer_open();

		if (tp < 0 || dup2(tp, fz->tp) < 0)
			_exit(1);
		close(tp);
		fz->child = true;
		fz->rng = seed;
		fz->failures = 0;
		memset(fz->aio, 0, sizeof(fz->aio));
		memset(fz->children, 0, sizeof(fz->children));
		fz->ops = 0;
		fuzz_run(fz, CHILD_OPS, mono_ns() + CHILD_SECONDS * NSEC_PER_SEC);
		_exit(fz->failures ? 1 : 0);
	}
	fz->children[slot] = pid;
	count(&fz->stats->forks, 1);
}

struct fuzz_op {
	void (*run)(struct fuzz *fz);
	const char *name;
	unsigned int weight;
};

/*
 * Weights favour the calls under test.  Under TCG on the debug kernel,
 * fork, io_setup, io_destroy and mmap cost 50 to 150 ms each, so they
 * are rare: a few hundred of each per run still.
 */
static const struct fuzz_op fuzz_ops[] = {
	{ op_asyncfd,		"asyncfd",	40 },
	{ op_reap,		"reap",		20 },
	{ op_flush,		"flush",	8 },
	{ op_read,		"read",		4 },
	{ op_post,		"post",		6 },
	{ op_swap_waiting,	"swap_waiting",	3 },
	{ op_close,		"close",	14 },
	{ op_dup,		"dup",		12 },
	{ op_mmap,		"mmap",		2 },
	{ op_munmap,		"munmap",	3 },
	{ op_mprotect,		"mprotect",	3 },
	{ op_scribble,		"scribble",	20 },
	{ op_scribble_header,	"scribble_hdr",	6 },
	{ op_io_setup,		"io_setup",	1 },
	{ op_io_destroy,	"io_destroy",	1 },
	{ op_io_submit,		"io_submit",	40 },
	{ op_io_cancel,		"io_cancel",	12 },
	{ op_io_getevents,	"io_getevents",	12 },
	{ op_poll,		"poll",		8 },
	{ op_fdinfo,		"fdinfo",	2 },
	{ op_memlock,		"memlock",	4 },
	{ op_fork,		"fork",		1 },
};

static_assert(ARRAY_SIZE(fuzz_ops) <= MAX_OP_KINDS, "op_count too small");

/* A child counts its own operations; a worker counts everybody's. */
static uint64_t ops_done(const struct fuzz *fz)
{
	if (fz->child)
		return fz->ops;
	return __atomic_load_n(&fz->stats->ops, __ATOMIC_RELAXED);
}

/* Run until @max_ops operations are done, or until @deadline. */
static void fuzz_run(struct fuzz *fz, uint64_t max_ops, int64_t deadline)
{
	unsigned int total = 0, i;
	int64_t now = mono_ns();

	for (i = 0; i < ARRAY_SIZE(fuzz_ops); i++)
		total += fuzz_ops[i].weight;
	while (ops_done(fz) < max_ops && now < deadline) {
		unsigned int pick = rng_below(&fz->rng, total);
		int64_t then = now;

		for (i = 0; pick >= fuzz_ops[i].weight; i++)
			pick -= fuzz_ops[i].weight;
		/* Children do not fork: a tree of them would not end. */
		if (fz->child && fuzz_ops[i].run == op_fork)
			continue;
		fuzz_ops[i].run(fz);
		fz->ops++;
		now = mono_ns();
		count(&fz->stats->ops, 1);
		count(&fz->stats->op_count[i], 1);
		count(&fz->stats->op_ns[i], now - then);
	}
}

/* Where the time went: TAP comments, the slowest operations first. */
static void print_op_times(const struct fuzz_stats *st)
{
	bool shown[ARRAY_SIZE(fuzz_ops)] = {};
	unsigned int n, i;

	for (n = 0; n < ARRAY_SIZE(fuzz_ops); n++) {
		int worst = -1;

		for (i = 0; i < ARRAY_SIZE(fuzz_ops); i++)
			if (!shown[i] && (worst < 0 || st->op_ns[i] > st->op_ns[worst]))
				worst = i;
		shown[worst] = true;
		ksft_print_msg("op %-12s %7llu calls %8.3f s %8.1f us each\n",
			       fuzz_ops[worst].name,
			       (unsigned long long)st->op_count[worst],
			       st->op_ns[worst] / (double)NSEC_PER_SEC,
			       st->op_count[worst] ?
			       st->op_ns[worst] / 1000.0 / st->op_count[worst] : 0);
	}
}

/*
 * Undo everything the operations left, so that nothing stays pinned:
 * then this process must pin nothing.
 */
static void fuzz_cleanup(struct fuzz *fz, long long vmpin_base)
{
	unsigned int i;

	reap_children(fz, true);
	for (i = 0; i < NR_AIO_CTXS; i++)
		if (fz->aio[i])
			sys_io_destroy(fz->aio[i]);
	/* dup2() may have put files anywhere below the private ones. */
	for (i = 3; i < FIRST_PRIVATE_FD; i++)
		close(i);
	for (i = 0; i < NR_REGIONS; i++)
		region_unmap(&fz->regions[i]);
	close(fz->file);
	close(fz->tp);

	if (vmpin_settled(vmpin_base) != vmpin_base)
		fail(fz, "VmPin after cleanup", vmpin_now_kb(), 0);
}

/*
 * KAIO gives an iocb's address back as the obj of its result, and rings
 * and io_cancel() leave such results in the regions, where a later
 * operation may take any word for the ring pointer of a header, or for
 * the base of an iovec.  The kernel then writes where it was told: so
 * the iocbs live in pages of their own, between two that cannot be
 * pinned or written, and not in struct fuzz, on the stack, where a ring
 * laid over them ran on into the worker's own state.  An iocb may still
 * be rewritten before the kernel reads it, by a ring laid over it, or by
 * an IOCB_CMD_PREADV earlier in the same io_submit(): then KAIO gets
 * garbage to refuse, or a descriptor that the worker made harmless (see
 * fuzz_worker()).  The worker reads nothing back.
 */
static struct iocb *map_iocbs(void)
{
	size_t page = getpagesize();
	size_t len = (NR_IOCBS * sizeof(struct iocb) + page - 1) & ~(page - 1);
	char *guarded;

	guarded = mmap(NULL, len + 2 * page, PROT_NONE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (guarded == MAP_FAILED ||
	    mprotect(guarded + page, len, PROT_READ | PROT_WRITE))
		return NULL;
	return (struct iocb *)(guarded + page);
}

/* Move @fd out of dup2()'s reach, so that operations never close it. */
static int make_private(int fd, int at)
{
	int moved;

	if (fd < 0)
		return fd;
	moved = dup3(fd, at, O_CLOEXEC);
	close(fd);
	return moved;
}

/*
 * One worker process: its own descriptors, mappings and aio contexts,
 * and its own seed, so that it replays alone.  Workers share only the
 * kernel, and the user's locked_vm.  Exits 0, or 1 on a setup failure.
 */
static void fuzz_worker(struct fuzz_stats *stats, unsigned int worker,
			uint64_t seed, uint64_t max_ops, int64_t deadline)
{
	struct fuzz fz = {
		.stats = stats,
		.worker = worker,
		.rng = seed,
		.nr_cpus = get_nprocs(),
	};
	long long vmpin_base = vmpin_now_kb();
	char buf[4096] = { 1 };
	unsigned int i;
	int fd;

	/*
	 * No descriptor we inherit is ours to fuzz: the kselftest runner
	 * hands its terminal down as 0, 1, 2 and 4, and the harness runs
	 * the test in a process group in the background of that terminal,
	 * where a read of it, or a terminal ioctl, stops the whole group
	 * for good (SIGTTIN, SIGTTOU), and a write puts random bytes on the
	 * console.  The operations pick descriptors from 3 up, but an iocb
	 * rewritten before the kernel reads it (see map_iocbs()) may name
	 * any, 0 to 2 included: those become /dev/null.  Workers print
	 * nothing; the test reports what they counted.
	 */
	fd = open("/dev/null", O_RDWR);
	if (fd < 0 || dup2(fd, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
		_exit(1);
	for (fd = 3; fd < FIRST_PRIVATE_FD; fd++)
		close(fd);
	fz.tp = make_private(test_producer_open(), FIRST_PRIVATE_FD);
	fz.file = make_private(open("/tmp", O_TMPFILE | O_RDWR, 0600),
			       FIRST_PRIVATE_FD + 1);
	fz.iocbs = map_iocbs();
	if (fz.tp < 0 || fz.file < 0 || !fz.iocbs)
		_exit(1);
	for (i = 0; i < 16; i++)
		if (write(fz.file, buf, sizeof(buf)) != sizeof(buf))
			_exit(1);
	for (i = 0; i < NR_SLOTS; i++)
		fz.fds[i] = -1;
	fuzz_run(&fz, max_ops, deadline);
	fuzz_cleanup(&fz, vmpin_base);
	_exit(0);
}

FIXTURE(fuzz) {
	struct fuzz_stats *stats;
	long memlock_base;
	uint64_t seed;
	unsigned int nr_workers;
};

FIXTURE_SETUP(fuzz)
{
	struct sigaction sa = { .sa_handler = fault_handler };

	if (!test_producer_available())
		MISSING(return, "no " TEST_PRODUCER_PATH);
	self->seed = env_knob("ASYNCFD_FUZZ_SEED", mono_ns());
	self->nr_workers = env_knob("ASYNCFD_FUZZ_WORKERS", 4);
	ksft_print_msg("seed %llu workers %u\n", (unsigned long long)self->seed,
		       self->nr_workers);
	ksft_print_msg("replay: ASYNCFD_FUZZ_SEED=%llu ASYNCFD_FUZZ_WORKERS=%u\n",
		       (unsigned long long)self->seed, self->nr_workers);
	fflush(stdout);

	sigemptyset(&sa.sa_mask);
	ASSERT_EQ(0, sigaction(SIGSEGV, &sa, NULL));
	ASSERT_EQ(0, sigaction(SIGBUS, &sa, NULL));
	/* Rings are charged to locked_vm, which caps what a run pins. */
	ASSERT_EQ(0, set_ipc_lock(false));
	self->memlock_base = memlock_headroom(PROBE_MEMLOCK_PAGES);
	ASSERT_LT(0, self->memlock_base);
	ASSERT_EQ(0, set_memlock_pages(FUZZ_MEMLOCK_PAGES));
	self->stats = mmap(NULL, sizeof(*self->stats), PROT_READ | PROT_WRITE,
			   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->stats);
}

FIXTURE_TEARDOWN(fuzz)
{
	if (self->stats && self->stats != MAP_FAILED)
		munmap(self->stats, sizeof(*self->stats));
}

/* Reap all that @ring holds into @res, and check the cookies from @cookie on. */
static unsigned int reap_from(struct __test_metadata *_metadata,
			      struct asyncfd_ring *ring, struct asyncfd_result *res,
			      unsigned int max, uint64_t cookie)
{
	unsigned int n = asyncfd_reap(ring, res, max), i;

	for (i = 0; i < n; i++)
		EXPECT_EQ(cookie + i, res[i].cookie);
	return n;
}

/*
 * After all that, a fresh ring still gets every result, once and in
 * order, from cookie 0 on.  Scribbles on the words only the kernel
 * writes change nothing in it: the next store publishes ikernel again,
 * and a kflags bit set by hand makes nothing wait, nor EPOLLPRI.
 */
static void expect_asyncfd_works(struct __test_metadata *_metadata)
{
	struct asyncfd_result res[256];
	struct asyncfd_ring ring;
	struct post_result pr;
	struct pollfd pfd;

	ASSERT_EQ(0, asyncfd_ring_setup(&ring, 256, 0));
	pfd = (struct pollfd){ .fd = ring.fd, .events = POLLIN | POLLPRI };
	ring.hdr->ikernel = 77;
	ring.hdr->kflags = ~0U;
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	EXPECT_EQ(0, asyncfd_flush(&ring));
	ASSERT_EQ(0, test_producer_post(ring.fd, "hardirq", 0, 100, 8, &pr));
	EXPECT_EQ(100, pr.stored);
	EXPECT_EQ(100, __atomic_load_n(&ring.hdr->ikernel, __ATOMIC_ACQUIRE));
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN, pfd.revents);
	EXPECT_EQ(100, reap_from(_metadata, &ring, res, ARRAY_SIZE(res), 0));

	/* The ring holds 255 of 300: 45 wait, and now kflags says so. */
	ASSERT_EQ(0, test_producer_post(ring.fd, "process", 100, 300, 64, &pr));
	EXPECT_EQ(255, pr.stored);
	EXPECT_EQ(45, pr.waited);
	EXPECT_TRUE(asyncfd_waiting(&ring));
	EXPECT_EQ(1, poll(&pfd, 1, 0));
	EXPECT_EQ(POLLIN | POLLPRI, pfd.revents);
	EXPECT_EQ(255, reap_from(_metadata, &ring, res, ARRAY_SIZE(res), 100));
	EXPECT_EQ(0, asyncfd_flush(&ring));
	EXPECT_FALSE(asyncfd_waiting(&ring));
	EXPECT_EQ(45, reap_from(_metadata, &ring, res, ARRAY_SIZE(res), 355));
	EXPECT_EQ(0, poll(&pfd, 1, 0));
	asyncfd_ring_exit(&ring);
}

/* Exit status of @pid, which must end by @deadline, or -1. */
static int wait_worker(pid_t pid, int64_t deadline)
{
	int status;
	pid_t got;

	while (!(got = waitpid(pid, &status, WNOHANG)) && mono_ns() < deadline)
		usleep(10000);
	if (!got) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return -1;
	}
	return got == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F_TIMEOUT(fuzz, random_operations_keep_kernel_sane, 280)
{
	struct fuzz_stats *st = self->stats;
	uint64_t cap = env_knob("ASYNCFD_FUZZ_OPS", UINT64_MAX);
	int64_t start = mono_ns();
	int64_t deadline = start + env_knob("ASYNCFD_FUZZ_SECONDS", 100) * NSEC_PER_SEC;
	pid_t workers[64];
	unsigned int i;

	ASSERT_GE(ARRAY_SIZE(workers), self->nr_workers);
	for (i = 0; i < self->nr_workers; i++) {
		workers[i] = fork();
		ASSERT_LE(0, workers[i]);
		if (!workers[i])
			fuzz_worker(st, i, self->seed + i, cap, deadline);
	}
	/* Cleanup waits for children and aio: give it time to. */
	for (i = 0; i < self->nr_workers; i++)
		EXPECT_EQ(0, wait_worker(workers[i], deadline + 20 * NSEC_PER_SEC))
			TH_LOG("worker %u", i);

	print_op_times(st);
	ksft_print_msg("ops %llu asyncfd-ok %llu submitted %llu posted %llu\n",
		       (unsigned long long)st->ops,
		       (unsigned long long)st->asyncfd_ok,
		       (unsigned long long)st->submitted,
		       (unsigned long long)st->posted);
	ksft_print_msg("waited %llu unposted %llu swaps-while-waiting %llu\n",
		       (unsigned long long)st->waited,
		       (unsigned long long)st->unposted,
		       (unsigned long long)st->swaps_waiting);
	ksft_print_msg("reaped %llu flushes %llu reads %llu forks %llu seconds %.1f\n",
		       (unsigned long long)st->reaped,
		       (unsigned long long)st->flushes,
		       (unsigned long long)st->reads,
		       (unsigned long long)st->forks,
		       (mono_ns() - start) / (double)NSEC_PER_SEC);
	fflush(stdout);
	EXPECT_EQ(0, st->failures) TH_LOG("%s", st->failure);
	EXPECT_EQ(0, st->child_failures);
	EXPECT_LE(cap < FUZZ_MIN_OPS ? cap : FUZZ_MIN_OPS, st->ops)
		TH_LOG("too few operations: seed %llu", (unsigned long long)self->seed);
	EXPECT_LT(0, st->asyncfd_ok);

	/* Every worker is gone: the user's locked_vm is back too. */
	EXPECT_EQ(self->memlock_base, memlock_headroom(PROBE_MEMLOCK_PAGES));
	ASSERT_EQ(0, set_memlock_pages(FUZZ_MEMLOCK_PAGES));
	expect_asyncfd_works(_metadata);
}

TEST_HARNESS_MAIN
