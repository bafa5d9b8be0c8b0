// SPDX-License-Identifier: GPL-2.0-only
/*
 * A file descriptor that delivers results of asynchronous kernel work
 * into a ring supplied by userspace.  The ring is pinned, so producers
 * may post from any context, and the kernel keeps its own copy of the
 * ring geometry and producer index.
 */

#include <linux/anon_inodes.h>
#include <linux/asyncfd.h>
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
 * A registered ring.  @size and @tail are the kernel's own copies:
 * userspace can rewrite the header at any time, so nothing read back
 * from it ever selects the slot the kernel stores to.
 */
struct asyncfd_ring {
	struct asyncfd_uring *hdr;
	struct asyncfd_result *entries;
	u32 size;
	u32 tail;
	unsigned int nr_hdr_pages;
	unsigned int nr_entry_pages;
	struct page **hdr_pages;
	struct page **entry_pages;
	struct user_struct *user;	/* charged for the pages, or NULL */
	struct mm_struct *mm;		/* its pinned_vm counts the pages */
};

struct asyncfd_ctx {
	struct kref kref;
	/* wqh.lock protects @ring, whose @entries is NULL once released */
	wait_queue_head_t wqh;
	struct asyncfd_ring ring;
	/* results refused since the file was created, for fdinfo */
	u64 refused;
};

/**
 * asyncfd_ctx_add_results - Store results in an asyncfd ring
 * @ctx: the asyncfd context
 * @results: the results to store; none may have a zero cookie
 * @n: number of results
 *
 * Stores as many of @results as the ring has room for, in order, and
 * wakes pollers.  Results that do not fit are added to the overflow
 * count in the ring's header, which wakes pollers too: the caller must
 * deliver those results some other way, where the consumer collects
 * them once it has claimed the count.  Never sleeps: callable from any
 * context, hard interrupts included.
 *
 * Return: the number of results stored, -EINVAL if @n is negative or a
 * cookie is zero (then nothing is stored), or -EBADFD once userspace
 * has released the asyncfd file.
 */
int asyncfd_ctx_add_results(struct asyncfd_ctx *ctx,
			    const struct asyncfd_result *results, int n)
{
	struct asyncfd_ring *ring = &ctx->ring;
	struct asyncfd_result *entries, *slot;
	u32 size, tail, iuser, room;
	__poll_t events = 0;
	unsigned long flags;
	int i, want, stored = 0;

	if (n < 0)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (!results[i].cookie)
			return -EINVAL;

	spin_lock_irqsave(&ctx->wqh.lock, flags);
	entries = ring->entries;
	if (unlikely(!entries)) {
		stored = -EBADFD;
		goto out;
	}
	/*
	 * Local copies: the compiler must assume that the stores into the
	 * entries below may change *ring, and reload it every time.  iuser
	 * is read once a call: userspace only moves it towards our tail,
	 * so an older value only means less room.  The slot before iuser
	 * stays empty; a hostile iuser at or past size gives at most
	 * size - 1 slots, and the cookies still guard each one.
	 */
	size = ring->size;
	tail = ring->tail;
	iuser = READ_ONCE(ring->hdr->iuser);
	room = min(iuser > tail ? iuser - tail - 1 : size - 1 - (tail - iuser),
		   size - 1);
	want = min_t(u32, n, room);
	slot = &entries[tail];
	for (; stored < want; stored++) {
		const struct asyncfd_result *res = &results[stored];

		/*
		 * The consumer clears a cookie with release semantics once it
		 * has copied the slot out.  The stores below depend on seeing
		 * it cleared, and that control dependency keeps them after
		 * the consumer's copy, as in the perf ring buffer.
		 */
		if (READ_ONCE(slot->cookie))
			break;
		WRITE_ONCE(slot->obj, res->obj);
		WRITE_ONCE(slot->res, res->res);
		WRITE_ONCE(slot->res2, res->res2);
		WRITE_ONCE(slot->cookie, res->cookie);
		if (++tail == size) {
			tail = 0;
			slot = entries;
		} else {
			slot++;
		}
	}
	if (stored) {
		ring->tail = tail;
		/* Pairs with the consumer's acquire of ikernel. */
		smp_store_release(&ring->hdr->ikernel, tail);
		events = EPOLLIN | EPOLLRDNORM;
	}
	if (stored < n) {
		/*
		 * The consumer claims the count by exchanging it with 0, so
		 * it must be a single atomic add: a plain store of our own
		 * total would bring back refusals that were claimed already.
		 * Only this slow path pays for the atomic.
		 */
		BUILD_BUG_ON(sizeof_field(struct asyncfd_uring, overflow) !=
			     sizeof(atomic_t) ||
			     offsetof(struct asyncfd_uring, overflow) %
			     sizeof(atomic_t));
		atomic_add(n - stored, (atomic_t *)&ring->hdr->overflow);
		ctx->refused += n - stored;
		events = EPOLLIN | EPOLLRDNORM | EPOLLPRI;
	}
	/*
	 * Every store or refusal wakes, even waiters that were woken and
	 * have not looked since: an io_uring multishot poll takes the events
	 * from the wake and never polls again, and an EPOLLEXCLUSIVE waiter
	 * that was woken may be busy with other files, while another sleeps.
	 */
	if (events && waitqueue_active(&ctx->wqh))
		wake_up_locked_poll(&ctx->wqh, events);
out:
	spin_unlock_irqrestore(&ctx->wqh.lock, flags);
	return stored;
}
EXPORT_SYMBOL_GPL(asyncfd_ctx_add_results);

/*
 * Pinned pages count against RLIMIT_MEMLOCK of the user, like io_uring
 * rings do, and show up as VmPin of the process that pinned them.
 */
static int asyncfd_account(struct asyncfd_ring *ring, unsigned long nr_pages)
{
	if (!capable(CAP_IPC_LOCK)) {
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

	pages = kvmalloc_array(nr_pages, sizeof(*pages), GFP_KERNEL);
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

	if (!IS_ALIGNED(hdr_addr, sizeof(u64)))
		return -EINVAL;
	if (copy_from_user(&uring, urng, sizeof(uring)))
		return -EFAULT;
	if (uring.size < 2 || uring.size > ASYNCFD_MAX_ENTRIES ||
	    !IS_ALIGNED(uring.ptr, sizeof(u64)) ||
	    uring.ikernel >= uring.size || uring.iuser != uring.ikernel ||
	    uring.overflow)
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
 * @ctx: the context, from asyncfd_ctx_fdget() or asyncfd_ctx_fileget()
 *
 * Callable from any context.
 */
void asyncfd_ctx_put(struct asyncfd_ctx *ctx)
{
	kref_put(&ctx->kref, asyncfd_free);
}
EXPORT_SYMBOL_GPL(asyncfd_ctx_put);

/*
 * Producers may still hold the context: from now on they get -EBADFD
 * and deliver elsewhere, while the ring goes back to userspace.
 */
static int asyncfd_release(struct inode *inode, struct file *file)
{
	struct asyncfd_ctx *ctx = file->private_data;
	struct asyncfd_ring ring;

	spin_lock_irq(&ctx->wqh.lock);
	ring = ctx->ring;
	ctx->ring.entries = NULL;
	spin_unlock_irq(&ctx->wqh.lock);

	asyncfd_ring_release(&ring);
	wake_up_poll(&ctx->wqh, EPOLLHUP);
	asyncfd_ctx_put(ctx);
	return 0;
}

/*
 * Called under wqh.lock, which keeps a concurrent swap from unmapping the
 * header, and orders us with producers: a result stored or refused after
 * this check wakes us.  Unclaimed refusals make the file readable too, so
 * that a consumer waiting only for EPOLLIN learns of them; EPOLLPRI tells
 * them apart.
 */
static __poll_t asyncfd_events(struct asyncfd_ctx *ctx)
{
	if (READ_ONCE(ctx->ring.hdr->overflow))
		return EPOLLIN | EPOLLRDNORM | EPOLLPRI;
	if (ctx->ring.tail != READ_ONCE(ctx->ring.hdr->iuser))
		return EPOLLIN | EPOLLRDNORM;
	return 0;
}

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
 * no poll table to set up and tear down.  Blocks until poll() would
 * report the file readable, then returns the number of results waiting
 * in the ring, which may be 0 when only refusals wait to be claimed.
 */
static ssize_t asyncfd_read(struct file *file, char __user *buf, size_t count,
			    loff_t *ppos)
{
	struct asyncfd_ctx *ctx = file->private_data;
	struct asyncfd_ring *ring = &ctx->ring;
	u32 iuser;
	u64 waiting;
	int err = 0;

	if (count < sizeof(waiting))
		return -EINVAL;
	spin_lock_irq(&ctx->wqh.lock);
	if (!asyncfd_events(ctx) && (file->f_flags & O_NONBLOCK))
		err = -EAGAIN;
	else
		err = wait_event_interruptible_locked_irq(ctx->wqh,
							  asyncfd_events(ctx));
	/* A hostile iuser at or past size reads as an empty ring. */
	iuser = READ_ONCE(ring->hdr->iuser);
	waiting = iuser >= ring->size ? 0 :
		  ring->tail >= iuser ? ring->tail - iuser :
		  ring->tail + ring->size - iuser;
	spin_unlock_irq(&ctx->wqh.lock);
	if (err)
		return err;
	if (put_user(waiting, (u64 __user *)buf))
		return -EFAULT;
	return sizeof(waiting);
}

#ifdef CONFIG_PROC_FS
static void asyncfd_show_fdinfo(struct seq_file *m, struct file *file)
{
	struct asyncfd_ctx *ctx = file->private_data;
	u32 size, tail, iuser, overflow;
	unsigned int nr_pages;
	u64 refused;

	spin_lock_irq(&ctx->wqh.lock);
	size = ctx->ring.size;
	tail = ctx->ring.tail;
	iuser = READ_ONCE(ctx->ring.hdr->iuser);
	overflow = READ_ONCE(ctx->ring.hdr->overflow);
	refused = ctx->refused;
	nr_pages = ctx->ring.nr_hdr_pages + ctx->ring.nr_entry_pages;
	spin_unlock_irq(&ctx->wqh.lock);

	seq_printf(m,
		   "asyncfd-size:\t%u\n"
		   "asyncfd-tail:\t%u\n"
		   "asyncfd-iuser:\t%u\n"
		   "asyncfd-unclaimed:\t%u\n"
		   "asyncfd-overflow:\t%llu\n"
		   "asyncfd-pinned-pages:\t%u\n",
		   size, tail, iuser, overflow, refused, nr_pages);
}
#endif

static const struct file_operations asyncfd_fops = {
#ifdef CONFIG_PROC_FS
	.show_fdinfo	= asyncfd_show_fdinfo,
#endif
	.release	= asyncfd_release,
	.poll		= asyncfd_poll,
	.read		= asyncfd_read,
	.llseek		= noop_llseek,
};

/**
 * asyncfd_fget - Acquire a reference to an asyncfd file
 * @fd: the file descriptor
 *
 * The reference keeps the ring registered until fput().  Producers that
 * must notice when userspace closes the descriptor hold a context
 * reference from asyncfd_ctx_fdget() instead.
 *
 * Return: the file, or ERR_PTR(-EBADF) if @fd is not open, or
 * ERR_PTR(-EINVAL) if it is not an asyncfd.
 */
struct file *asyncfd_fget(int fd)
{
	struct file *file = fget(fd);

	if (!file)
		return ERR_PTR(-EBADF);
	if (file->f_op != &asyncfd_fops) {
		fput(file);
		return ERR_PTR(-EINVAL);
	}
	return file;
}
EXPORT_SYMBOL_GPL(asyncfd_fget);

/**
 * asyncfd_add_results - Store results in the ring of an asyncfd file
 * @file: a file from asyncfd_fget()
 * @results: the results to store; none may have a zero cookie
 * @n: number of results
 *
 * Same as asyncfd_ctx_add_results(), for producers holding the file.
 *
 * Return: the number of results stored, or -EINVAL as for
 * asyncfd_ctx_add_results().
 */
int asyncfd_add_results(struct file *file, const struct asyncfd_result *results,
			int n)
{
	return asyncfd_ctx_add_results(file->private_data, results, n);
}
EXPORT_SYMBOL_GPL(asyncfd_add_results);

/**
 * asyncfd_ctx_fileget - Acquire a reference to the context of an asyncfd
 * @file: the file
 *
 * The reference outlives the file: once userspace releases the file,
 * asyncfd_ctx_add_results() returns -EBADFD.  Drop it with
 * asyncfd_ctx_put().
 *
 * Return: the context, or ERR_PTR(-EINVAL) if @file is not an asyncfd.
 */
struct asyncfd_ctx *asyncfd_ctx_fileget(struct file *file)
{
	struct asyncfd_ctx *ctx;

	if (file->f_op != &asyncfd_fops)
		return ERR_PTR(-EINVAL);
	ctx = file->private_data;
	kref_get(&ctx->kref);
	return ctx;
}
EXPORT_SYMBOL_GPL(asyncfd_ctx_fileget);

/**
 * asyncfd_ctx_fdget - Acquire a reference to the context of an asyncfd
 * @fd: the file descriptor
 *
 * Return: the context, or ERR_PTR(-EBADF) if @fd is not open, or
 * ERR_PTR(-EINVAL) if it is not an asyncfd.
 */
struct asyncfd_ctx *asyncfd_ctx_fdget(int fd)
{
	CLASS(fd, f)(fd);

	if (fd_empty(f))
		return ERR_PTR(-EBADF);
	return asyncfd_ctx_fileget(fd_file(f));
}
EXPORT_SYMBOL_GPL(asyncfd_ctx_fdget);

/*
 * The new ring is ready before the lock is taken, so a failure leaves
 * the old one in place.  Results already in the old ring stay there for
 * userspace to consume.  Pollers need no wakeup: the new ring starts
 * empty, so the file cannot have become readable.
 */
static int asyncfd_swap(int ufd, struct asyncfd_uring __user *urng)
{
	struct asyncfd_ring ring;
	struct asyncfd_ctx *ctx;
	int err;

	CLASS(fd, f)(ufd);
	if (fd_empty(f))
		return -EBADF;
	if (fd_file(f)->f_op != &asyncfd_fops)
		return -EINVAL;
	ctx = fd_file(f)->private_data;

	err = asyncfd_ring_init(&ring, urng);
	if (err)
		return err;
	spin_lock_irq(&ctx->wqh.lock);
	swap(ctx->ring, ring);
	spin_unlock_irq(&ctx->wqh.lock);

	asyncfd_ring_release(&ring);
	return ufd;
}

static int asyncfd_create(struct asyncfd_uring __user *urng,
			  unsigned int flags)
{
	struct asyncfd_ctx *ctx;
	struct file *file;
	int fd, err;

	ctx = kmalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	kref_init(&ctx->kref);
	init_waitqueue_head(&ctx->wqh);
	ctx->refused = 0;
	err = asyncfd_ring_init(&ctx->ring, urng);
	if (err)
		goto free_ctx;

	fd = get_unused_fd_flags(flags & ASYNCFD_CLOEXEC ? O_CLOEXEC : 0);
	if (fd < 0) {
		err = fd;
		goto release_ring;
	}
	file = anon_inode_getfile("[asyncfd]", &asyncfd_fops, ctx, O_RDWR);
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
	return asyncfd_swap(ufd, urng);
}
