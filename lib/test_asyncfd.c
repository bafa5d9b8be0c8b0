// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test producer for asyncfd: posts results into an asyncfd from the
 * execution contexts real producers complete in, which userspace cannot
 * reach by itself.
 *
 * Driven through /sys/kernel/debug/test_asyncfd.  Writing
 *
 *	post <fd> <context> <cookie> <count> <batch>
 *
 * posts @count results into the asyncfd @fd of the writer, from
 * @context (process, kthread, workqueue, softirq or hardirq), @batch
 * results per asyncfd_ctx_add_results() call.  Result i carries cookie
 * @cookie + i, obj i, the context bits the producer saw in res and the
 * CPU in res2.  The write returns once all are posted; reading the same
 * open file then gives "stored <n> refused <n> error <errno> ns <ns>",
 * where ns is the time from the write to the last post.
 *
 *	limit <count>
 *
 * stores @count such results into a plain kernel buffer instead, with
 * nothing else around the stores: the physical limit that delivery is
 * measured against.  It reads back as a post of @count that stored all.
 */

#include <linux/asyncfd.h>
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/workqueue.h>

#define TEST_ASYNCFD_MAX_BATCH	256

/* The limit's buffer: like a ring of 4096 entries, 128 KiB. */
#define TEST_ASYNCFD_LIMIT_ENTRIES	4096

/* Reported in res, so tests can check where a result was produced. */
#define TEST_ASYNCFD_IN_HARDIRQ	1
#define TEST_ASYNCFD_IN_SOFTIRQ	2
#define TEST_ASYNCFD_IN_TASK	4

enum test_asyncfd_context {
	TEST_ASYNCFD_PROCESS,
	TEST_ASYNCFD_KTHREAD,
	TEST_ASYNCFD_WORKQUEUE,
	TEST_ASYNCFD_SOFTIRQ,
	TEST_ASYNCFD_HARDIRQ,
};

static const char * const test_asyncfd_context_names[] = {
	[TEST_ASYNCFD_PROCESS]		= "process",
	[TEST_ASYNCFD_KTHREAD]		= "kthread",
	[TEST_ASYNCFD_WORKQUEUE]	= "workqueue",
	[TEST_ASYNCFD_SOFTIRQ]		= "softirq",
	[TEST_ASYNCFD_HARDIRQ]		= "hardirq",
};

struct test_asyncfd_job {
	struct asyncfd_ctx *ctx;
	u64 cookie;
	u32 count;
	u32 batch;
	u32 posted;
	u32 stored;
	u32 refused;
	int error;
	struct completion done;
	struct work_struct work;
	struct hrtimer timer;
	struct asyncfd_result results[TEST_ASYNCFD_MAX_BATCH];
};

static long test_asyncfd_context_bits(void)
{
	if (in_hardirq())
		return TEST_ASYNCFD_IN_HARDIRQ;
	if (in_serving_softirq())
		return TEST_ASYNCFD_IN_SOFTIRQ;
	return in_task() ? TEST_ASYNCFD_IN_TASK : 0;
}

/* Post the next batch; returns true once the whole job is posted. */
static bool test_asyncfd_post_batch(struct test_asyncfd_job *job)
{
	u32 n = min(job->batch, job->count - job->posted);
	u32 i;
	int ret;

	for (i = 0; i < n; i++) {
		job->results[i].cookie = job->cookie + job->posted + i;
		job->results[i].obj = job->posted + i;
		job->results[i].res = test_asyncfd_context_bits();
		job->results[i].res2 = raw_smp_processor_id();
	}
	ret = asyncfd_ctx_add_results(job->ctx, job->results, n);
	if (ret < 0) {
		/* Only a released asyncfd fails a post: so will every retry. */
		job->error = ret;
		job->refused += job->count - job->posted;
		job->posted = job->count;
	} else {
		job->stored += ret;
		job->refused += n - ret;
		job->posted += n;
	}
	return job->posted == job->count;
}

static void test_asyncfd_post_all(struct test_asyncfd_job *job)
{
	while (!test_asyncfd_post_batch(job))
		cond_resched();
}

static int test_asyncfd_kthread(void *data)
{
	struct test_asyncfd_job *job = data;

	test_asyncfd_post_all(job);
	complete(&job->done);
	return 0;
}

static void test_asyncfd_work(struct work_struct *work)
{
	struct test_asyncfd_job *job = container_of(work, struct test_asyncfd_job, work);

	test_asyncfd_post_all(job);
	complete(&job->done);
}

/* Softirq and hardirq jobs post a batch per run, as interrupts would. */
static void test_asyncfd_bh_work(struct work_struct *work)
{
	struct test_asyncfd_job *job = container_of(work, struct test_asyncfd_job, work);

	if (test_asyncfd_post_batch(job))
		complete(&job->done);
	else
		queue_work(system_bh_wq, &job->work);
}

static enum hrtimer_restart test_asyncfd_timer(struct hrtimer *timer)
{
	struct test_asyncfd_job *job = container_of(timer, struct test_asyncfd_job, timer);

	if (test_asyncfd_post_batch(job)) {
		complete(&job->done);
		return HRTIMER_NORESTART;
	}
	hrtimer_forward_now(timer, ns_to_ktime(NSEC_PER_USEC));
	return HRTIMER_RESTART;
}

static int test_asyncfd_run(struct test_asyncfd_job *job,
			    enum test_asyncfd_context context)
{
	struct task_struct *task;

	switch (context) {
	case TEST_ASYNCFD_PROCESS:
		test_asyncfd_post_all(job);
		return 0;
	case TEST_ASYNCFD_KTHREAD:
		task = kthread_run(test_asyncfd_kthread, job, "test_asyncfd");
		if (IS_ERR(task))
			return PTR_ERR(task);
		break;
	case TEST_ASYNCFD_WORKQUEUE:
		INIT_WORK(&job->work, test_asyncfd_work);
		queue_work(system_unbound_wq, &job->work);
		break;
	case TEST_ASYNCFD_SOFTIRQ:
		INIT_WORK(&job->work, test_asyncfd_bh_work);
		queue_work(system_bh_wq, &job->work);
		break;
	case TEST_ASYNCFD_HARDIRQ:
		hrtimer_init(&job->timer, CLOCK_MONOTONIC, HRTIMER_MODE_REL_HARD);
		job->timer.function = test_asyncfd_timer;
		hrtimer_start(&job->timer, 0, HRTIMER_MODE_REL_HARD);
		break;
	}
	wait_for_completion(&job->done);
	/* The timer callback may still be returning from complete(). */
	if (context == TEST_ASYNCFD_HARDIRQ)
		hrtimer_cancel(&job->timer);
	return 0;
}

struct test_asyncfd_report {
	u32 stored;
	u32 refused;
	int error;
	u64 elapsed_ns;
};

/*
 * The stores are WRITE_ONCE() because those of a real producer go to
 * memory that userspace reads: the compiler may not merge or drop them.
 */
static int test_asyncfd_limit(struct test_asyncfd_report *report, u32 count)
{
	struct asyncfd_result *buf;
	u32 i, slot = 0;
	u64 start;

	buf = kvcalloc(TEST_ASYNCFD_LIMIT_ENTRIES, sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	start = ktime_get_ns();
	for (i = 0; i < count; i++) {
		WRITE_ONCE(buf[slot].obj, i);
		WRITE_ONCE(buf[slot].res, TEST_ASYNCFD_IN_TASK);
		WRITE_ONCE(buf[slot].res2, 0);
		WRITE_ONCE(buf[slot].cookie, i + 1ULL);
		if (++slot == TEST_ASYNCFD_LIMIT_ENTRIES) {
			slot = 0;
			cond_resched();
		}
	}
	report->elapsed_ns = ktime_get_ns() - start;
	report->stored = count;
	report->refused = 0;
	report->error = 0;
	kvfree(buf);
	return 0;
}

static int test_asyncfd_open(struct inode *inode, struct file *file)
{
	struct test_asyncfd_report *report;

	report = kzalloc(sizeof(*report), GFP_KERNEL);
	file->private_data = report;
	return report ? 0 : -ENOMEM;
}

static int test_asyncfd_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static ssize_t test_asyncfd_read(struct file *file, char __user *buf,
				 size_t count, loff_t *ppos)
{
	struct test_asyncfd_report *report = file->private_data;
	char text[96];
	int len;

	len = scnprintf(text, sizeof(text),
			"stored %u refused %u error %d ns %llu\n",
			report->stored, report->refused, report->error,
			report->elapsed_ns);
	return simple_read_from_buffer(buf, count, ppos, text, len);
}

static ssize_t test_asyncfd_write(struct file *file, const char __user *buf,
				  size_t count, loff_t *ppos)
{
	struct test_asyncfd_report *report = file->private_data;
	struct test_asyncfd_job *job;
	char context_name[16];
	char *cmd;
	int context, fd, ret;
	u32 limit_count;
	u64 start;

	cmd = memdup_user_nul(buf, min_t(size_t, count, 128));
	if (IS_ERR(cmd))
		return PTR_ERR(cmd);
	if (sscanf(cmd, "limit %u", &limit_count) == 1) {
		ret = test_asyncfd_limit(report, limit_count);
		if (!ret)
			ret = count;
		goto free_cmd;
	}
	job = kzalloc(sizeof(*job), GFP_KERNEL);
	if (!job) {
		ret = -ENOMEM;
		goto free_cmd;
	}
	init_completion(&job->done);

	ret = -EINVAL;
	if (sscanf(cmd, "post %d %15s %llu %u %u", &fd, context_name,
		   &job->cookie, &job->count, &job->batch) != 5 ||
	    !job->cookie || !job->count || !job->batch ||
	    job->batch > TEST_ASYNCFD_MAX_BATCH ||
	    job->count - 1 > U64_MAX - job->cookie)
		goto free_job;
	context = match_string(test_asyncfd_context_names,
			       ARRAY_SIZE(test_asyncfd_context_names),
			       context_name);
	if (context < 0)
		goto free_job;

	job->ctx = asyncfd_ctx_fdget(fd);
	if (IS_ERR(job->ctx)) {
		ret = PTR_ERR(job->ctx);
		goto free_job;
	}
	start = ktime_get_ns();
	ret = test_asyncfd_run(job, context);
	asyncfd_ctx_put(job->ctx);
	if (!ret) {
		report->elapsed_ns = ktime_get_ns() - start;
		report->stored = job->stored;
		report->refused = job->refused;
		report->error = job->error;
		ret = count;
	}
free_job:
	kfree(job);
free_cmd:
	kfree(cmd);
	return ret;
}

static const struct file_operations test_asyncfd_fops = {
	.owner		= THIS_MODULE,
	.open		= test_asyncfd_open,
	.release	= test_asyncfd_release,
	.read		= test_asyncfd_read,
	.write		= test_asyncfd_write,
	.llseek		= default_llseek,
};

static struct dentry *test_asyncfd_dentry;

static int __init test_asyncfd_init(void)
{
	test_asyncfd_dentry = debugfs_create_file("test_asyncfd", 0600, NULL,
						  NULL, &test_asyncfd_fops);
	return 0;
}

static void __exit test_asyncfd_exit(void)
{
	debugfs_remove(test_asyncfd_dentry);
}

module_init(test_asyncfd_init);
module_exit(test_asyncfd_exit);
MODULE_DESCRIPTION("Test producer for asyncfd");
MODULE_LICENSE("GPL");
