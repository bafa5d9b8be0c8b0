// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test producer for asyncfd: posts results into an asyncfd from the
 * execution contexts real producers complete in, which userspace cannot
 * reach by itself.
 *
 * Driven through /sys/kernel/debug/test_asyncfd.  Writing
 *
 *	post <fd> <context> <cookie> <count> <batch> [all] [retry] [cpu=<cpu>]
 *
 * posts @count results into the asyncfd @fd of the writer, from
 * @context (process, kthread, workqueue, softirq or hardirq), @batch
 * results per asyncfd_ctx_add_results() call.  Result i carries cookie
 * @cookie + i, obj i, the context bits the producer saw in res and the
 * CPU in res2.  The write returns once all are posted; reading the same
 * open file then gives
 *
 *	stored <n> waited <n> unposted <n> retries <n> error <errno> ns <ns> call_ns <ns>
 *
 * where stored counts the results that went straight into the ring,
 * waited those that wait in the kernel for room, unposted those never
 * handed over because a call failed, retries the calls that failed for
 * lack of room for copies and were made again, ns the time from the
 * write to the last post, and call_ns the time spent inside
 * asyncfd_ctx_add_results() alone.
 *
 * A call that fails with -ENOSPC or -ENOMEM took nothing.  Without
 * "retry", the job stops there; with it, the job makes the same call
 * again later, until the consumer has made room, or until a signal
 * interrupts the writer, which stops the job with -EINTR.
 *
 * With "all", every online CPU runs a producer of its own at the same
 * time, so that they contend for the ring lock: the k-th online CPU posts
 * cookies @cookie + k * @count up to @cookie + (k + 1) * @count - 1, and
 * the report gives the totals over all CPUs.  The process context runs
 * only in the writer, so it does not take "all".
 *
 * With "cpu=<cpu>", the job runs on that CPU, which must be online: a
 * kthread bound there, work queued there, an hrtimer pinned there.
 * Without it, the scheduler, the workqueue or the timer code chooses,
 * and may choose the CPU of the consumer a test wants woken from
 * elsewhere.  The process context runs on the writer's CPU, which the
 * writer chooses itself, so it does not take "cpu=", nor does "all".
 *
 *	limit <count> <batch>
 *
 * prepares @count results as a process context post does, @batch at a
 * time, and copies each batch into a plain kernel buffer with the
 * simplest loop instead: the physical limit that delivery is measured
 * against.  call_ns times the copies exactly as it times the calls of a
 * post, clock reads included, so the two differ by what asyncfd does.
 * It reads back as a post of @count that stored all.
 */

#include <linux/asyncfd.h>
#include <linux/completion.h>
#include <linux/cpu.h>
#include <linux/debugfs.h>
#include <linux/hrtimer.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>
#include <linux/workqueue.h>

#define TEST_ASYNCFD_MAX_BATCH	256

/* The limit's buffer: like a ring of 4096 entries, 128 KiB. */
#define TEST_ASYNCFD_LIMIT_ENTRIES	4096

/* How long a hard interrupt job waits before it retries. */
#define TEST_ASYNCFD_RETRY_NS		(20 * NSEC_PER_USEC)

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
	int cpu;			/* to run on, or -1 for any */
	struct task_struct *task;	/* a kthread created ahead, or NULL */
	struct task_struct *writer;	/* who wrote the command */
	u64 cookie;
	u32 count;
	u32 batch;
	bool retry;
	bool cancel;		/* the writer gave up waiting */
	u32 posted;
	u32 stored;
	u32 waited;
	u32 unposted;
	u32 retries;
	int error;
	u64 call_ns;		/* inside asyncfd_ctx_add_results() */
	struct completion done;
	struct work_struct work;
	struct hrtimer timer;
	struct asyncfd_result results[TEST_ASYNCFD_MAX_BATCH];
};

/*
 * Per open file.  The lock runs the file's commands one at a time, so
 * that a read never sees the totals of one command mixed with another's.
 */
struct test_asyncfd_report {
	struct mutex lock;	/* held by each read() and write() */
	u32 stored;
	u32 waited;
	u32 unposted;
	u32 retries;
	int error;
	u64 elapsed_ns;
	u64 call_ns;
};

static long test_asyncfd_context_bits(void)
{
	if (in_hardirq())
		return TEST_ASYNCFD_IN_HARDIRQ;
	if (in_serving_softirq())
		return TEST_ASYNCFD_IN_SOFTIRQ;
	return in_task() ? TEST_ASYNCFD_IN_TASK : 0;
}

/* Fill in the next batch of results; returns how many. */
static u32 test_asyncfd_prepare(struct test_asyncfd_job *job)
{
	u32 n = min(job->batch, job->count - job->posted);
	u32 i;

	for (i = 0; i < n; i++) {
		job->results[i].cookie = job->cookie + job->posted + i;
		job->results[i].obj = job->posted + i;
		job->results[i].res = test_asyncfd_context_bits();
		job->results[i].res2 = raw_smp_processor_id();
	}
	return n;
}

/*
 * Post the next batch; returns true once the whole job is done.  A batch
 * that found no room for copies is made again at the next call.
 */
static bool test_asyncfd_post_batch(struct test_asyncfd_job *job)
{
	u32 n = test_asyncfd_prepare(job);
	u64 start = ktime_get_ns();
	bool no_room;
	int ret;

	ret = asyncfd_ctx_add_results(job->ctx, job->results, n);
	job->call_ns += ktime_get_ns() - start;
	if (ret >= 0) {
		job->stored += ret;
		job->waited += n - ret;
		job->posted += n;
		return job->posted == job->count;
	}
	no_room = ret == -ENOSPC || ret == -ENOMEM;
	if (no_room && job->retry && !READ_ONCE(job->cancel)) {
		job->retries++;
		return false;
	}
	job->error = no_room && job->retry ? -EINTR : ret;
	job->unposted += job->count - job->posted;
	job->posted = job->count;
	return true;
}

static void test_asyncfd_post_all(struct test_asyncfd_job *job)
{
	while (!test_asyncfd_post_batch(job)) {
		/* Only the process context runs in the writer. */
		if (current == job->writer && signal_pending(current))
			WRITE_ONCE(job->cancel, true);
		cond_resched();
	}
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

	u32 retries = job->retries;

	if (test_asyncfd_post_batch(job)) {
		complete(&job->done);
		return HRTIMER_NORESTART;
	}
	hrtimer_forward_now(timer, ns_to_ktime(job->retries == retries ?
					       NSEC_PER_USEC :
					       TEST_ASYNCFD_RETRY_NS));
	return HRTIMER_RESTART;
}

/* Runs on the job's CPU, so that the pinned timer fires there. */
static void test_asyncfd_start_timer(void *data)
{
	struct test_asyncfd_job *job = data;

	hrtimer_start(&job->timer, 0, HRTIMER_MODE_REL_PINNED);
}

/*
 * Start @job in @context, on job->cpu unless that is -1.  The process
 * context posts right here, in the writer.  Once this returns 0, the
 * job completes job->done.
 */
static int test_asyncfd_start(struct test_asyncfd_job *job,
			      enum test_asyncfd_context context)
{
	struct task_struct *task;

	switch (context) {
	case TEST_ASYNCFD_PROCESS:
		test_asyncfd_post_all(job);
		complete(&job->done);
		break;
	case TEST_ASYNCFD_KTHREAD:
		task = job->task;
		if (!task && job->cpu >= 0)
			task = kthread_create_on_cpu(test_asyncfd_kthread, job,
						     job->cpu, "test_asyncfd/%u");
		else if (!task)
			task = kthread_create(test_asyncfd_kthread, job,
					      "test_asyncfd");
		if (IS_ERR(task))
			return PTR_ERR(task);
		wake_up_process(task);
		break;
	case TEST_ASYNCFD_WORKQUEUE:
		INIT_WORK(&job->work, test_asyncfd_work);
		if (job->cpu < 0)
			queue_work(system_unbound_wq, &job->work);
		else
			queue_work_on(job->cpu, system_wq, &job->work);
		break;
	case TEST_ASYNCFD_SOFTIRQ:
		/* A BH work item requeues itself on the CPU it runs on. */
		INIT_WORK(&job->work, test_asyncfd_bh_work);
		if (job->cpu < 0)
			queue_work(system_bh_wq, &job->work);
		else
			queue_work_on(job->cpu, system_bh_wq, &job->work);
		break;
	case TEST_ASYNCFD_HARDIRQ:
		/*
		 * Not a _HARD mode: asyncfd's lock sleeps on PREEMPT_RT, where
		 * these timers expire in a soft interrupt instead.
		 */
		hrtimer_init(&job->timer, CLOCK_MONOTONIC,
			     job->cpu < 0 ? HRTIMER_MODE_REL :
					    HRTIMER_MODE_REL_PINNED);
		job->timer.function = test_asyncfd_timer;
		if (job->cpu < 0)
			hrtimer_start(&job->timer, 0, HRTIMER_MODE_REL);
		else
			smp_call_function_single(job->cpu,
						 test_asyncfd_start_timer,
						 job, true);
		break;
	}
	return 0;
}

/*
 * Wait for @nr_jobs jobs.  A job that retries waits for the consumer,
 * which may never come: a signal to the writer stops them all.
 */
static void test_asyncfd_wait(struct test_asyncfd_job *jobs,
			      unsigned int nr_jobs,
			      enum test_asyncfd_context context)
{
	unsigned int i, j;

	for (i = 0; i < nr_jobs; i++) {
		if (wait_for_completion_interruptible(&jobs[i].done)) {
			for (j = i; j < nr_jobs; j++)
				WRITE_ONCE(jobs[j].cancel, true);
			wait_for_completion(&jobs[i].done);
		}
		/* The timer callback may still be returning from complete(). */
		if (context == TEST_ASYNCFD_HARDIRQ)
			hrtimer_cancel(&jobs[i].timer);
	}
}

/*
 * Threads are all a job of test_asyncfd_run_all() needs that can fail
 * to come by: create them before any job starts, so that a failure
 * posts nothing.  A thread stopped before it was ever woken does not
 * run its function.
 */
static int test_asyncfd_create_threads(struct test_asyncfd_job *jobs,
				       unsigned int nr_jobs)
{
	unsigned int i;

	for (i = 0; i < nr_jobs; i++) {
		jobs[i].task = kthread_create_on_cpu(test_asyncfd_kthread,
						     &jobs[i], jobs[i].cpu,
						     "test_asyncfd/%u");
		if (IS_ERR(jobs[i].task)) {
			int err = PTR_ERR(jobs[i].task);

			while (i--)
				kthread_stop(jobs[i].task);
			return err;
		}
	}
	return 0;
}

static void test_asyncfd_report_jobs(struct test_asyncfd_report *report,
				     const struct test_asyncfd_job *jobs,
				     unsigned int nr_jobs)
{
	unsigned int i;

	report->stored = 0;
	report->waited = 0;
	report->unposted = 0;
	report->retries = 0;
	report->error = 0;
	report->call_ns = 0;
	for (i = 0; i < nr_jobs; i++) {
		report->stored += jobs[i].stored;
		report->waited += jobs[i].waited;
		report->unposted += jobs[i].unposted;
		report->retries += jobs[i].retries;
		report->call_ns += jobs[i].call_ns;
		if (!report->error)
			report->error = jobs[i].error;
	}
}

/*
 * Post from every online CPU at once: start a job on each, then wait
 * for them all.  CPU hotplug stays off meanwhile, so that no job is
 * left on a CPU that went away.
 */
static int test_asyncfd_run_all(struct test_asyncfd_job *proto,
				enum test_asyncfd_context context,
				struct test_asyncfd_report *report)
{
	struct test_asyncfd_job *jobs;
	unsigned int nr_jobs, started = 0, i;
	int cpu, ret = 0;

	if (context == TEST_ASYNCFD_PROCESS)
		return -EINVAL;
	cpus_read_lock();
	nr_jobs = num_online_cpus();
	if ((u64)proto->count * nr_jobs > U32_MAX ||
	    (u64)proto->count * nr_jobs - 1 > U64_MAX - proto->cookie) {
		ret = -EINVAL;
		goto unlock;
	}
	jobs = kvcalloc(nr_jobs, sizeof(*jobs), GFP_KERNEL);
	if (!jobs) {
		ret = -ENOMEM;
		goto unlock;
	}
	i = 0;
	for_each_online_cpu(cpu) {
		struct test_asyncfd_job *job = &jobs[i];

		job->ctx = proto->ctx;
		job->cpu = cpu;
		job->cookie = proto->cookie + (u64)i * proto->count;
		job->count = proto->count;
		job->batch = proto->batch;
		job->retry = proto->retry;
		job->writer = current;
		init_completion(&job->done);
		i++;
	}
	if (context == TEST_ASYNCFD_KTHREAD)
		ret = test_asyncfd_create_threads(jobs, nr_jobs);
	/* With the threads made, starting a job cannot fail. */
	while (!ret && started < nr_jobs) {
		ret = test_asyncfd_start(&jobs[started], context);
		if (!ret)
			started++;
	}
	test_asyncfd_wait(jobs, started, context);
	test_asyncfd_report_jobs(report, jobs, started);
	kvfree(jobs);
unlock:
	cpus_read_unlock();
	return ret;
}

/*
 * Run one job.  A CPU chosen for it stays online until the job is done,
 * as in test_asyncfd_run_all(); a job that may run anywhere does not
 * hold CPU hotplug off.
 */
static int test_asyncfd_run_one(struct test_asyncfd_job *job,
				enum test_asyncfd_context context,
				struct test_asyncfd_report *report)
{
	bool pinned = job->cpu >= 0;
	int ret = -EINVAL;

	if (pinned)
		cpus_read_lock();
	if (!pinned || cpu_online(job->cpu))
		ret = test_asyncfd_start(job, context);
	if (!ret) {
		test_asyncfd_wait(job, 1, context);
		test_asyncfd_report_jobs(report, job, 1);
	}
	if (pinned)
		cpus_read_unlock();
	return ret;
}

static int test_asyncfd_limit(struct test_asyncfd_report *report,
			      struct test_asyncfd_job *job)
{
	struct asyncfd_result *buf;
	u32 i, n, slot = 0;
	u64 start;

	buf = kvcalloc(TEST_ASYNCFD_LIMIT_ENTRIES, sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	start = ktime_get_ns();
	while (job->posted < job->count) {
		u64 copy_start;

		n = test_asyncfd_prepare(job);
		copy_start = ktime_get_ns();
		for (i = 0; i < n; i++) {
			buf[slot] = job->results[i];
			if (++slot == TEST_ASYNCFD_LIMIT_ENTRIES)
				slot = 0;
		}
		job->call_ns += ktime_get_ns() - copy_start;
		job->posted += n;
		cond_resched();
	}
	job->stored = job->count;
	test_asyncfd_report_jobs(report, job, 1);
	report->elapsed_ns = ktime_get_ns() - start;
	kvfree(buf);
	return 0;
}

static int test_asyncfd_open(struct inode *inode, struct file *file)
{
	struct test_asyncfd_report *report;

	report = kzalloc(sizeof(*report), GFP_KERNEL);
	if (!report)
		return -ENOMEM;
	mutex_init(&report->lock);
	file->private_data = report;
	return 0;
}

static int test_asyncfd_release(struct inode *inode, struct file *file)
{
	struct test_asyncfd_report *report = file->private_data;

	mutex_destroy(&report->lock);
	kfree(report);
	return 0;
}

static ssize_t test_asyncfd_read(struct file *file, char __user *buf,
				 size_t count, loff_t *ppos)
{
	struct test_asyncfd_report *report = file->private_data;
	char text[160];
	int len;

	mutex_lock(&report->lock);
	len = scnprintf(text, sizeof(text),
			"stored %u waited %u unposted %u retries %u error %d ns %llu call_ns %llu\n",
			report->stored, report->waited, report->unposted,
			report->retries, report->error, report->elapsed_ns,
			report->call_ns);
	mutex_unlock(&report->lock);
	return simple_read_from_buffer(buf, count, ppos, text, len);
}

static ssize_t test_asyncfd_write(struct file *file, const char __user *buf,
				  size_t count, loff_t *ppos)
{
	struct test_asyncfd_report *report = file->private_data;
	struct test_asyncfd_job *job;
	char context_name[16], opts[3][12];
	unsigned int cpu;
	char *cmd;
	int context, fd, nr_words, i, ret;
	bool all = false;
	u64 start;

	cmd = memdup_user_nul(buf, min_t(size_t, count, 128));
	if (IS_ERR(cmd))
		return PTR_ERR(cmd);
	mutex_lock(&report->lock);
	job = kzalloc(sizeof(*job), GFP_KERNEL);
	if (!job) {
		ret = -ENOMEM;
		goto free_cmd;
	}
	init_completion(&job->done);
	job->cpu = -1;
	job->writer = current;

	ret = -EINVAL;
	if (sscanf(cmd, "limit %u %u", &job->count, &job->batch) == 2) {
		if (!job->count || !job->batch ||
		    job->batch > TEST_ASYNCFD_MAX_BATCH)
			goto free_job;
		job->cookie = 1;
		ret = test_asyncfd_limit(report, job);
		if (!ret)
			ret = count;
		goto free_job;
	}
	nr_words = sscanf(cmd, "post %d %15s %llu %u %u %11s %11s %11s", &fd,
			  context_name, &job->cookie, &job->count, &job->batch,
			  opts[0], opts[1], opts[2]);
	if (nr_words < 5 || !job->count || !job->batch ||
	    job->batch > TEST_ASYNCFD_MAX_BATCH ||
	    job->count - 1 > U64_MAX - job->cookie)
		goto free_job;
	for (i = 0; i < nr_words - 5; i++) {
		if (!strcmp(opts[i], "all") && !all)
			all = true;
		else if (!strcmp(opts[i], "retry") && !job->retry)
			job->retry = true;
		else if (str_has_prefix(opts[i], "cpu=") && job->cpu < 0 &&
			 !kstrtouint(opts[i] + 4, 10, &cpu) && cpu < nr_cpu_ids)
			job->cpu = cpu;
		else
			goto free_job;
	}
	context = match_string(test_asyncfd_context_names,
			       ARRAY_SIZE(test_asyncfd_context_names),
			       context_name);
	if (context < 0 ||
	    (job->cpu >= 0 && (all || context == TEST_ASYNCFD_PROCESS)))
		goto free_job;

	job->ctx = asyncfd_ctx_fdget(fd);
	if (IS_ERR(job->ctx)) {
		ret = PTR_ERR(job->ctx);
		goto free_job;
	}
	start = ktime_get_ns();
	if (all)
		ret = test_asyncfd_run_all(job, context, report);
	else
		ret = test_asyncfd_run_one(job, context, report);
	if (!ret)
		report->elapsed_ns = ktime_get_ns() - start;
	asyncfd_ctx_put(job->ctx);
	if (!ret)
		ret = count;
free_job:
	kfree(job);
free_cmd:
	mutex_unlock(&report->lock);
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
