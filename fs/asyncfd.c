// SPDX-License-Identifier: GPL-2.0-only
/*
 * A file descriptor that delivers results of asynchronous kernel work
 * into a ring supplied by userspace.  The ring is pinned, so producers
 * may post from any context, and the kernel keeps its own copy of the
 * ring geometry and producer index.  A result that finds no room waits
 * in the kernel, in order, until the consumer has made room.
 */

#include <linux/anon_inodes.h>
#include <linux/asyncfd.h>
#include <linux/cacheinfo.h>
#include <linux/cred.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kref.h>
#include <linux/mm.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/sched/user.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/syscalls.h>
#include <linux/vmalloc.h>

/*
 * A registered ring.  @size, @tail and @kflags are the kernel's own
 * copies: userspace can rewrite the header at any time, so the kernel
 * never reads back a word it writes there, and nothing read from the
 * header ever selects the slot the kernel stores to.
 */
struct asyncfd_ring {
	struct asyncfd_uring *hdr;
	struct asyncfd_result *entries;
	u32 size;
	u32 tail;
	u32 kflags;
	unsigned int nr_hdr_pages;
	unsigned int nr_entry_pages;
	struct page **hdr_pages;
	struct page **entry_pages;
	struct user_struct *user;	/* charged for the pages, or NULL */
	struct mm_struct *mm;		/* its pinned_vm counts the pages */
};

struct asyncfd_ctx {
	struct kref kref;
	/* wqh.lock protects the rest; @ring.entries is NULL once released */
	wait_queue_head_t wqh;
	struct asyncfd_ring ring;
	struct list_head waiting;	/* struct asyncfd_wait, oldest first */
	u32 nr_waiting;
	u32 nr_copied;		/* of those, in asyncfd_copy */
	u32 waiting_peak;
	u64 waited_total;
};

/* Results of asyncfd_ctx_add_results() that had to wait, copied. */
struct asyncfd_copy {
	struct asyncfd_wait wait;
	struct asyncfd_result results[];
};

static void asyncfd_copy_done(struct asyncfd_wait *wait, bool stored)
{
	kfree(container_of(wait, struct asyncfd_copy, wait));
}

/*
 * Free slots from our tail up to the one before iuser, which stays empty
 * so that a full ring never looks empty.  A hostile iuser at or past
 * size gives no room; below size it can only make us overwrite results
 * that the consumer has not taken yet, its own loss.
 */
static u32 asyncfd_room(const struct asyncfd_ring *ring)
{
	/*
	 * Pairs with the consumer's release of iuser once it has copied
	 * the slots out: our stores into them come after its loads.
	 */
	u32 iuser = smp_load_acquire(&ring->hdr->iuser);
	u32 tail = ring->tail;

	if (iuser >= ring->size)
		return 0;
	return iuser > tail ? iuser - tail - 1 : ring->size - 1 - (tail - iuser);
}

/*
 * Store the first of @n results that fit in @room; returns how many.
 * Inline: a post of one result costs little more than the call would.
 */
static __always_inline u32
asyncfd_store(struct asyncfd_ring *ring, u32 room,
	      const struct asyncfd_result *results, u32 n)
{
	/*
	 * Locals: the compiler must assume that the stores into the entries
	 * may change *ring, and would reload it for every result.
	 */
	struct asyncfd_result *entries = ring->entries;
	u32 size = ring->size, tail = ring->tail, i;

	n = min(n, room);
	for (i = 0; i < n; i++) {
		entries[tail] = results[i];
		if (++tail == size)
			tail = 0;
	}
	ring->tail = tail;
	return n;
}

/*
 * asyncfd_room() and asyncfd_store() for a single result, as KAIO posts
 * them, with no loop: store it if the slot at our tail is not the one
 * that stays empty before iuser.
 */
static __always_inline bool asyncfd_store_one(struct asyncfd_ring *ring,
					      const struct asyncfd_result *result)
{
	/* Pairs with the consumer's release of iuser, as in asyncfd_room(). */
	u32 iuser = smp_load_acquire(&ring->hdr->iuser);
	u32 tail = ring->tail;
	u32 next = tail + 1 == ring->size ? 0 : tail + 1;

	if (unlikely(next == iuser || iuser >= ring->size))
		return false;
	ring->entries[tail] = *result;
	ring->tail = next;
	return true;
}

/*
 * Move waiting results into @room, oldest first; those whose last result
 * went in move to @done, for their producers.  Returns the room left,
 * which is 0 whenever some still wait.
 */
static u32 asyncfd_drain(struct asyncfd_ctx *ctx, u32 room,
			 struct list_head *done)
{
	struct asyncfd_wait *wait, *next;

	list_for_each_entry_safe(wait, next, &ctx->waiting, list) {
		u32 n = asyncfd_store(&ctx->ring, room, wait->results, wait->nr);

		room -= n;
		ctx->nr_waiting -= n;
		if (wait->done == asyncfd_copy_done)
			ctx->nr_copied -= n;
		if (n < wait->nr) {
			wait->results += n;
			wait->nr -= n;
			break;
		}
		list_move_tail(&wait->list, done);
	}
	return room;
}

static void asyncfd_wait_add(struct asyncfd_ctx *ctx, struct asyncfd_wait *wait)
{
	list_add_tail(&wait->list, &ctx->waiting);
	ctx->nr_waiting += wait->nr;
	ctx->waited_total += wait->nr;
	ctx->waiting_peak = max(ctx->waiting_peak, ctx->nr_waiting);
}

/* Publish our tail, and whether results wait, to the consumer. */
static void asyncfd_publish(struct asyncfd_ring *ring, bool waiting)
{
	u32 kflags = waiting ? ASYNCFD_KF_WAITING : 0;

	/* Pairs with its acquire: it sees the results before the index. */
	smp_store_release(&ring->hdr->ikernel, ring->tail);
	if (kflags != ring->kflags) {
		ring->kflags = kflags;
		/* Pairs with its acquire: the flag comes after the index. */
		smp_store_release(&ring->hdr->kflags, kflags);
	}
}

static void asyncfd_finish(struct list_head *done, bool stored)
{
	struct asyncfd_wait *wait, *next;

	if (likely(list_empty(done)))
		return;
	list_for_each_entry_safe(wait, next, done, list)
		wait->done(wait, stored);
}

/*
 * What poll reports.  Results that wait in the kernel make the file
 * readable too, so that a consumer waiting only for EPOLLIN makes room
 * for them; EPOLLPRI tells them apart.
 */
static __poll_t asyncfd_events(struct asyncfd_ctx *ctx)
{
	if (!list_empty(&ctx->waiting))
		return EPOLLIN | EPOLLRDNORM | EPOLLPRI;
	if (ctx->ring.tail != READ_ONCE(ctx->ring.hdr->iuser))
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

/*
 * Every result that is stored, or has to wait, wakes, even waiters that
 * were woken and have not looked since: an io_uring multishot poll takes
 * the events from the wake and never polls again, and an EPOLLEXCLUSIVE
 * waiter that was woken may be busy with other files, while another
 * sleeps.  The file is readable then: the ring holds the results, or
 * results wait.
 */
static void asyncfd_wake_locked(struct asyncfd_ctx *ctx, bool waiting)
{
	/* Waiters are added under wqh.lock, which we hold. */
	if (waitqueue_active(&ctx->wqh))
		wake_up_locked_poll(&ctx->wqh, EPOLLIN | EPOLLRDNORM |
				    (waiting ? EPOLLPRI : 0));
}

/**
 * asyncfd_ctx_add_results - Post results to an asyncfd
 * @ctx: the asyncfd context
 * @results: the results
 * @n: number of results
 *
 * Stores @results in the ring, in order, behind any results that wait;
 * what finds no room is copied, and waits in the kernel until the
 * consumer has made room.  At most as many results as the ring has
 * entries may wait in such copies at once.  Wakes pollers.  Never
 * sleeps: callable from any context, hard interrupts included, except on
 * PREEMPT_RT, where the lock sleeps and a hard interrupt may not post.
 *
 * Return: the number of results stored at once (the rest wait), or a
 * negative errno, and then none of @results was taken: -EINVAL if @n is
 * negative, -EBADFD once userspace has released the asyncfd, -ENOSPC if
 * the copies would exceed their bound and -ENOMEM if they cannot be
 * allocated, both until the consumer makes room, and -E2BIG if @n is
 * more than the ring and the copies can ever take at once, twice its
 * size less one.
 */
int asyncfd_ctx_add_results(struct asyncfd_ctx *ctx,
			    const struct asyncfd_result *results, int n)
{
	struct asyncfd_copy *copy = NULL;
	unsigned long flags;
	LIST_HEAD(done);
	u32 room, wait, tail;
	bool waiting;
	int stored;

	if (n < 0)
		return -EINVAL;
	spin_lock_irqsave(&ctx->wqh.lock, flags);
	if (unlikely(!ctx->ring.entries)) {
		spin_unlock_irqrestore(&ctx->wqh.lock, flags);
		return -EBADFD;
	}
	tail = ctx->ring.tail;
	room = asyncfd_room(&ctx->ring);
	if (unlikely(!list_empty(&ctx->waiting)))
		room = asyncfd_drain(ctx, room, &done);
	wait = n - min_t(u32, n, room);
	if (unlikely(wait)) {
		stored = -E2BIG;
		if (n > 2 * (u64)ctx->ring.size - 1)
			goto publish;
		/* A swap to a smaller ring may leave more copies than its size. */
		stored = -ENOSPC;
		if (wait > ctx->ring.size ||
		    ctx->nr_copied > ctx->ring.size - wait)
			goto publish;
		stored = -ENOMEM;
		copy = kmalloc(struct_size(copy, results, wait),
			       GFP_ATOMIC | __GFP_NOWARN);
		if (!copy)
			goto publish;
		memcpy(copy->results, results + n - wait,
		       wait * sizeof(*results));
		copy->wait.results = copy->results;
		copy->wait.nr = wait;
		copy->wait.done = asyncfd_copy_done;
		asyncfd_wait_add(ctx, &copy->wait);
		ctx->nr_copied += wait;
	}
	stored = asyncfd_store(&ctx->ring, room, results, n);
publish:
	waiting = !list_empty(&ctx->waiting);
	asyncfd_publish(&ctx->ring, waiting);
	/* A failed post took nothing, but its drain may have stored. */
	if ((n && stored >= 0) || ctx->ring.tail != tail)
		asyncfd_wake_locked(ctx, waiting);
	spin_unlock_irqrestore(&ctx->wqh.lock, flags);
	asyncfd_finish(&done, true);
	return stored;
}
EXPORT_SYMBOL_GPL(asyncfd_ctx_add_results);

/*
 * asyncfd_ctx_add_wait() once the asyncfd is released, behind results
 * that wait, which go first, or into a ring without room for all: apart,
 * so that a post into a ring with room sets up no list of finished waits.
 */
static noinline int asyncfd_add_wait_behind(struct asyncfd_ctx *ctx,
					    struct asyncfd_wait *wait,
					    unsigned long flags)
	__releases(&ctx->wqh.lock)
{
	LIST_HEAD(done);
	bool waiting;
	u32 room, n;
	int ret;

	if (!ctx->ring.entries) {
		spin_unlock_irqrestore(&ctx->wqh.lock, flags);
		return -EBADFD;
	}
	room = asyncfd_drain(ctx, asyncfd_room(&ctx->ring), &done);
	n = asyncfd_store(&ctx->ring, room, wait->results, wait->nr);
	ret = n < wait->nr;
	if (ret) {
		wait->results += n;
		wait->nr -= n;
		asyncfd_wait_add(ctx, wait);
	}
	waiting = !list_empty(&ctx->waiting);
	asyncfd_publish(&ctx->ring, waiting);
	asyncfd_wake_locked(ctx, waiting);
	spin_unlock_irqrestore(&ctx->wqh.lock, flags);
	asyncfd_finish(&done, true);
	return ret;
}

/**
 * asyncfd_ctx_add_wait - Post results whose storage the producer supplies
 * @ctx: the asyncfd context
 * @wait: the results, and the storage they wait in if they find no room
 *
 * Stores the results in the ring, in order, behind any that wait; if
 * they do not all fit, the rest wait in @wait until the consumer has
 * made room, and @wait->done tells the producer once they are stored, or
 * that the asyncfd was released first.  Wakes pollers.  Never sleeps,
 * never fails for lack of memory: callable from any context, as
 * asyncfd_ctx_add_results().
 *
 * Return: 0 if all results are in the ring, 1 if some wait (@wait->done
 * will be called), or -EBADFD once userspace has released the asyncfd,
 * and then none was stored.
 */
int asyncfd_ctx_add_wait(struct asyncfd_ctx *ctx, struct asyncfd_wait *wait)
{
	struct asyncfd_ring *ring = &ctx->ring;
	unsigned long flags;
	u32 room;

	spin_lock_irqsave(&ctx->wqh.lock, flags);
	if (unlikely(!ring->entries || !list_empty(&ctx->waiting)))
		return asyncfd_add_wait_behind(ctx, wait, flags);
	if (likely(wait->nr == 1)) {
		if (unlikely(!asyncfd_store_one(ring, wait->results)))
			return asyncfd_add_wait_behind(ctx, wait, flags);
	} else {
		room = asyncfd_room(ring);
		if (unlikely(room < wait->nr))
			return asyncfd_add_wait_behind(ctx, wait, flags);
		asyncfd_store(ring, room, wait->results, wait->nr);
	}
	asyncfd_publish(ring, false);
	asyncfd_wake_locked(ctx, false);
	spin_unlock_irqrestore(&ctx->wqh.lock, flags);
	return 0;
}

/*
 * The consumer's request to move waiting results into the room it has
 * made, without a post.  Nothing becomes readable that was not, so
 * nobody is woken.
 */
static void asyncfd_flush_locked(struct asyncfd_ctx *ctx, struct list_head *done)
{
	if (list_empty(&ctx->waiting))
		return;
	asyncfd_drain(ctx, asyncfd_room(&ctx->ring), done);
	asyncfd_publish(&ctx->ring, !list_empty(&ctx->waiting));
}

/*
 * Pinned pages count against RLIMIT_MEMLOCK of the user, like io_uring
 * rings do, and show up as VmPin of the process that pinned them.  Most
 * callers lack CAP_IPC_LOCK, and are charged as they should be: the
 * check is no denial worth an audit record.
 */
static int asyncfd_account(struct asyncfd_ring *ring, unsigned long nr_pages)
{
	if (!ns_capable_noaudit(&init_user_ns, CAP_IPC_LOCK)) {
		unsigned long limit = rlimit(RLIMIT_MEMLOCK) >> PAGE_SHIFT;
		struct user_struct *user = current_user();
		unsigned long cur = atomic_long_read(&user->locked_vm);

		do {
			if (nr_pages > limit || cur > limit - nr_pages)
				return -ENOMEM;
		} while (!atomic_long_try_cmpxchg(&user->locked_vm, &cur,
						  cur + nr_pages));
		ring->user = get_uid(user);
	}
	ring->mm = current->mm;
	mmgrab(ring->mm);
	atomic64_add(nr_pages, &ring->mm->pinned_vm);
	return 0;
}

static void asyncfd_unaccount(struct asyncfd_ring *ring, unsigned long nr_pages)
{
	if (ring->user) {
		atomic_long_sub(nr_pages, &ring->user->locked_vm);
		free_uid(ring->user);
	}
	atomic64_sub(nr_pages, &ring->mm->pinned_vm);
	mmdrop(ring->mm);
}

static unsigned int asyncfd_nr_pages(unsigned long uaddr, size_t len)
{
	return (PAGE_ALIGN(uaddr + len) - (uaddr & PAGE_MASK)) >> PAGE_SHIFT;
}

/* Pin @len bytes at @uaddr for writing and map them contiguously. */
static void *asyncfd_map(unsigned long uaddr, size_t len,
			 struct page ***pagesp, unsigned int *nr_pagesp)
{
	unsigned int nr_pages = asyncfd_nr_pages(uaddr, len);
	struct page **pages;
	void *vaddr;
	int pinned;

	pages = kvmalloc_array(nr_pages, sizeof(*pages), GFP_KERNEL_ACCOUNT);
	if (!pages)
		return ERR_PTR(-ENOMEM);
	pinned = pin_user_pages_fast(uaddr & PAGE_MASK, nr_pages,
				     FOLL_WRITE | FOLL_LONGTERM, pages);
	if (pinned == nr_pages) {
		vaddr = vmap(pages, nr_pages, VM_MAP, PAGE_KERNEL);
		if (vaddr) {
			*pagesp = pages;
			*nr_pagesp = nr_pages;
			return vaddr + offset_in_page(uaddr);
		}
		vaddr = ERR_PTR(-ENOMEM);
	} else {
		vaddr = ERR_PTR(pinned < 0 ? pinned : -EFAULT);
	}
	if (pinned > 0)
		unpin_user_pages(pages, pinned);
	kvfree(pages);
	return vaddr;
}

static void asyncfd_unmap(void *vaddr, struct page **pages,
			  unsigned int nr_pages)
{
	vunmap((void *)((unsigned long)vaddr & PAGE_MASK));
	unpin_user_pages_dirty_lock(pages, nr_pages, true);
	kvfree(pages);
}

static void asyncfd_ring_release(struct asyncfd_ring *ring)
{
	asyncfd_unmap(ring->entries, ring->entry_pages, ring->nr_entry_pages);
	asyncfd_unmap(ring->hdr, ring->hdr_pages, ring->nr_hdr_pages);
	asyncfd_unaccount(ring, ring->nr_hdr_pages + ring->nr_entry_pages);
}

/*
 * Validate the ring userspace describes at @urng, then charge, pin and
 * map it.  On failure nothing is held.
 */
static int asyncfd_ring_init(struct asyncfd_ring *ring,
			     struct asyncfd_uring __user *urng)
{
	unsigned long hdr_addr = (unsigned long)urng;
	unsigned long entries_addr, nr_pages;
	struct asyncfd_uring uring;
	size_t entries_len;
	void *vaddr;
	int err;

	/*
	 * We store through a kernel mapping of the user's pages without
	 * flushing it: where the data cache aliases, the consumer would
	 * read stale lines.
	 */
	if (cpu_dcache_is_aliasing())
		return -EOPNOTSUPP;
	if (!IS_ALIGNED(hdr_addr, sizeof(u64)))
		return -EINVAL;
	if (copy_from_user(&uring, urng, sizeof(uring)))
		return -EFAULT;
	if (uring.size < 2 || uring.size > ASYNCFD_MAX_ENTRIES ||
	    !IS_ALIGNED(uring.ptr, sizeof(u64)) ||
	    uring.ikernel >= uring.size || uring.iuser != uring.ikernel ||
	    uring.kflags)
		return -EINVAL;
	entries_addr = uring.ptr;
	entries_len = uring.size * sizeof(struct asyncfd_result);
	if (entries_addr != uring.ptr ||
	    entries_addr + entries_len < entries_addr)
		return -EFAULT;

	memset(ring, 0, sizeof(*ring));
	nr_pages = asyncfd_nr_pages(hdr_addr, sizeof(uring)) +
		   asyncfd_nr_pages(entries_addr, entries_len);
	err = asyncfd_account(ring, nr_pages);
	if (err)
		return err;

	vaddr = asyncfd_map(hdr_addr, sizeof(uring), &ring->hdr_pages,
			    &ring->nr_hdr_pages);
	if (IS_ERR(vaddr))
		goto unaccount;
	ring->hdr = vaddr;
	vaddr = asyncfd_map(entries_addr, entries_len, &ring->entry_pages,
			    &ring->nr_entry_pages);
	if (IS_ERR(vaddr)) {
		asyncfd_unmap(ring->hdr, ring->hdr_pages, ring->nr_hdr_pages);
		goto unaccount;
	}
	ring->entries = vaddr;
	ring->size = uring.size;
	ring->tail = uring.ikernel;
	return 0;

unaccount:
	asyncfd_unaccount(ring, nr_pages);
	return PTR_ERR(vaddr);
}

static void asyncfd_free(struct kref *kref)
{
	kfree(container_of(kref, struct asyncfd_ctx, kref));
}

/**
 * asyncfd_ctx_put - Release a reference to an asyncfd context
 * @ctx: the context, from asyncfd_ctx_fdget() or asyncfd_ctx_get()
 *
 * Callable from any context.
 */
void asyncfd_ctx_put(struct asyncfd_ctx *ctx)
{
	kref_put(&ctx->kref, asyncfd_free);
}
EXPORT_SYMBOL_GPL(asyncfd_ctx_put);

/*
 * Producers may still hold the context: from now on they get -EBADFD,
 * results that wait go back to theirs, and the ring goes back to
 * userspace.
 */
static int asyncfd_release(struct inode *inode, struct file *file)
{
	struct asyncfd_ctx *ctx = file->private_data;
	struct asyncfd_ring ring;
	LIST_HEAD(unstored);

	spin_lock_irq(&ctx->wqh.lock);
	ring = ctx->ring;
	ctx->ring.entries = NULL;
	ctx->ring.hdr = NULL;
	list_splice_init(&ctx->waiting, &unstored);
	ctx->nr_waiting = 0;
	ctx->nr_copied = 0;
	spin_unlock_irq(&ctx->wqh.lock);

	asyncfd_finish(&unstored, false);
	asyncfd_ring_release(&ring);
	asyncfd_ctx_put(ctx);
	return 0;
}

/*
 * poll_wait() before the check under wqh.lock: a result stored, or made
 * to wait, after the check wakes us.  The lock also keeps a concurrent
 * swap from unmapping the header.
 */
static __poll_t asyncfd_poll(struct file *file, poll_table *wait)
{
	struct asyncfd_ctx *ctx = file->private_data;
	__poll_t events;

	poll_wait(file, &ctx->wqh, wait);
	spin_lock_irq(&ctx->wqh.lock);
	events = asyncfd_events(ctx);
	spin_unlock_irq(&ctx->wqh.lock);
	return events;
}

/*
 * The cheapest way to wait for one asyncfd: no epoll item to call back,
 * no poll table to set up and tear down.  Moves waiting results into
 * the room the consumer made, blocks until poll() would report the file
 * readable, and returns the number of results in the ring.  It consumes
 * nothing: the consumer does, by moving iuser, which only it writes.
 */
static ssize_t asyncfd_read(struct file *file, char __user *buf, size_t count,
			    loff_t *ppos)
{
	struct asyncfd_ctx *ctx = file->private_data;
	struct asyncfd_ring *ring = &ctx->ring;
	LIST_HEAD(done);
	u64 ready;
	u32 iuser;
	int err = 0;

	if (count < sizeof(ready))
		return -EINVAL;
	spin_lock_irq(&ctx->wqh.lock);
	asyncfd_flush_locked(ctx, &done);
	if (!asyncfd_events(ctx)) {
		if (file->f_flags & O_NONBLOCK)
			err = -EAGAIN;
		else
			err = wait_event_interruptible_locked_irq(ctx->wqh,
								  asyncfd_events(ctx));
		if (!err)
			asyncfd_flush_locked(ctx, &done);
	}
	/* A hostile iuser at or past size reads as an empty ring. */
	iuser = READ_ONCE(ring->hdr->iuser);
	ready = iuser >= ring->size ? 0 :
		ring->tail >= iuser ? ring->tail - iuser :
		ring->tail + ring->size - iuser;
	spin_unlock_irq(&ctx->wqh.lock);
	asyncfd_finish(&done, true);
	if (err)
		return err;
	if (put_user(ready, (u64 __user *)buf))
		return -EFAULT;
	return sizeof(ready);
}

#ifdef CONFIG_PROC_FS
static void asyncfd_show_fdinfo(struct seq_file *m, struct file *file)
{
	struct asyncfd_ctx *ctx = file->private_data;
	u32 size, tail, iuser, waiting, copied, peak;
	unsigned int nr_pages;
	u64 waited;

	spin_lock_irq(&ctx->wqh.lock);
	size = ctx->ring.size;
	tail = ctx->ring.tail;
	iuser = READ_ONCE(ctx->ring.hdr->iuser);
	waiting = ctx->nr_waiting;
	copied = ctx->nr_copied;
	peak = ctx->waiting_peak;
	waited = ctx->waited_total;
	nr_pages = ctx->ring.nr_hdr_pages + ctx->ring.nr_entry_pages;
	spin_unlock_irq(&ctx->wqh.lock);

	seq_printf(m,
		   "asyncfd-size:\t%u\n"
		   "asyncfd-tail:\t%u\n"
		   "asyncfd-iuser:\t%u\n"
		   "asyncfd-waiting:\t%u\n"
		   "asyncfd-waiting-copied:\t%u\n"
		   "asyncfd-copy-limit:\t%u\n"
		   "asyncfd-waiting-peak:\t%u\n"
		   "asyncfd-waited-total:\t%llu\n"
		   "asyncfd-pinned-pages:\t%u\n",
		   size, tail, iuser, waiting, copied, size, peak, waited,
		   nr_pages);
}
#endif

const struct file_operations asyncfd_fops = {
#ifdef CONFIG_PROC_FS
	.show_fdinfo	= asyncfd_show_fdinfo,
#endif
	.release	= asyncfd_release,
	.poll		= asyncfd_poll,
	.read		= asyncfd_read,
	.llseek		= noop_llseek,
};

/**
 * asyncfd_ctx_get - Acquire a reference to an asyncfd context
 * @ctx: the context, borrowed from asyncfd_file_ctx() or held
 *
 * Drop the reference with asyncfd_ctx_put().
 */
void asyncfd_ctx_get(struct asyncfd_ctx *ctx)
{
	kref_get(&ctx->kref);
}

/**
 * asyncfd_ctx_fdget - Acquire a reference to the context of an asyncfd
 * @fd: the file descriptor
 *
 * Return: the context, or ERR_PTR(-EBADF) if @fd is not open, or
 * ERR_PTR(-EINVAL) if it is not an asyncfd.
 */
struct asyncfd_ctx *asyncfd_ctx_fdget(int fd)
{
	struct asyncfd_ctx *ctx;

	CLASS(fd, f)(fd);
	if (fd_empty(f))
		return ERR_PTR(-EBADF);
	ctx = asyncfd_file_ctx(fd_file(f));
	if (!IS_ERR(ctx))
		asyncfd_ctx_get(ctx);
	return ctx;
}
EXPORT_SYMBOL_GPL(asyncfd_ctx_fdget);

/*
 * Swap in the ring at @urng, or with @urng NULL move waiting results into
 * the room the consumer made, which never blocks.
 *
 * The new ring is ready before the lock is taken, so a failure leaves the
 * old one in place.  Results already in the old ring stay there for
 * userspace to consume; results that wait move into the new one.  No
 * one needs a wakeup: the file cannot have become readable.
 */
static int asyncfd_update(int ufd, struct asyncfd_uring __user *urng,
			  unsigned int flags)
{
	struct asyncfd_ring ring;
	struct asyncfd_ctx *ctx;
	LIST_HEAD(done);
	int ret;

	CLASS(fd, f)(ufd);
	if (fd_empty(f))
		return -EBADF;
	if (fd_file(f)->f_op != &asyncfd_fops)
		return -EINVAL;
	ctx = fd_file(f)->private_data;

	/* ASYNCFD_CLOEXEC is for creation: refused here, it stays free. */
	if (flags)
		return -EINVAL;
	if (!urng) {
		spin_lock_irq(&ctx->wqh.lock);
		asyncfd_flush_locked(ctx, &done);
		ret = min_t(u32, ctx->nr_waiting, INT_MAX);
		spin_unlock_irq(&ctx->wqh.lock);
		asyncfd_finish(&done, true);
		return ret;
	}

	ret = asyncfd_ring_init(&ring, urng);
	if (ret)
		return ret;
	spin_lock_irq(&ctx->wqh.lock);
	swap(ctx->ring, ring);
	asyncfd_flush_locked(ctx, &done);
	spin_unlock_irq(&ctx->wqh.lock);
	asyncfd_finish(&done, true);

	asyncfd_ring_release(&ring);
	return ufd;
}

static int asyncfd_create(struct asyncfd_uring __user *urng,
			  unsigned int flags)
{
	struct asyncfd_ctx *ctx;
	struct file *file;
	int fd, err;

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL_ACCOUNT);
	if (!ctx)
		return -ENOMEM;
	kref_init(&ctx->kref);
	init_waitqueue_head(&ctx->wqh);
	INIT_LIST_HEAD(&ctx->waiting);
	err = asyncfd_ring_init(&ctx->ring, urng);
	if (err)
		goto free_ctx;

	fd = get_unused_fd_flags(flags & ASYNCFD_CLOEXEC ? O_CLOEXEC : 0);
	if (fd < 0) {
		err = fd;
		goto release_ring;
	}
	/* Results are read from the ring: the file itself takes no writes. */
	file = anon_inode_getfile("[asyncfd]", &asyncfd_fops, ctx, O_RDONLY);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		err = PTR_ERR(file);
		goto release_ring;
	}
	fd_install(fd, file);
	return fd;

release_ring:
	asyncfd_ring_release(&ctx->ring);
free_ctx:
	kfree(ctx);
	return err;
}

SYSCALL_DEFINE3(asyncfd, int, ufd, struct asyncfd_uring __user *, urng,
		unsigned int, flags)
{
	if (flags & ~ASYNCFD_CLOEXEC)
		return -EINVAL;
	if (ufd == -1)
		return asyncfd_create(urng, flags);
	return asyncfd_update(ufd, urng, flags);
}
