// SPDX-License-Identifier: GPL-2.0
/*
 * insncount - a QEMU TCG plugin that counts the guest instructions each
 * translation block executes, and writes them out in windows that the
 * guest opens and closes itself.
 *
 *	-plugin insncount.so,mark=<guest address>,out=<file>
 *
 * Every time the guest executes the block at @mark (the entry of a
 * kernel function the guest calls on purpose, such as the getppid()
 * system call), the plugin appends to @out
 *
 *	window <n>
 *	<block address> <instructions executed since the last mark>
 *	...
 *
 * for every block that ran since the previous mark; window 1 covers the
 * boot up to the first mark.  The guest pays nothing for the counting:
 * the counters are inline adds in the host code of each block, so under
 * -icount an instrumented run takes as many guest ns as a plain one.
 *
 * QEMU's plugin API is a C ABI of its own (QEMU_PLUGIN_VERSION 1 in
 * QEMU 7.2).  The few declarations used are written out here, as Debian
 * ships the QEMU binary but not its plugin header.
 */

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;

typedef struct {
	const char *target_name;
	struct {
		int min;
		int cur;
	} version;
	bool system_emulation;
	union {
		struct {
			int smp_vcpus;
			int max_vcpus;
		} system;
	};
} qemu_info_t;

enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };

typedef void (*qemu_plugin_tb_trans_cb)(qemu_plugin_id_t id,
					struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_vcpu_cb)(unsigned int vcpu_index, void *userdata);
typedef void (*qemu_plugin_exit_cb)(qemu_plugin_id_t id, void *userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id,
					   qemu_plugin_tb_trans_cb cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb *tb,
					  qemu_plugin_vcpu_cb cb,
					  enum qemu_plugin_cb_flags flags,
					  void *userdata);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb,
					      enum qemu_plugin_op op,
					      void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id,
				    qemu_plugin_exit_cb cb, void *userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *tb);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/*
 * One per translation.  A block translated again (after a flush, or cut
 * short at an I/O instruction under icount) gets a new one; the windows
 * add them up by address.
 */
struct block {
	uint64_t vaddr;
	uint64_t insns;		/* per execution */
	uint64_t execs;		/* bumped by the block's own host code */
	uint64_t execs_seen;	/* at the last mark */
	struct block *next;
};

static struct block *blocks;
static uint64_t mark;
static FILE *out;
static unsigned int windows;

static int by_vaddr(const void *a, const void *b)
{
	const struct block *x = *(struct block * const *)a;
	const struct block *y = *(struct block * const *)b;

	return x->vaddr < y->vaddr ? -1 : x->vaddr > y->vaddr;
}

/*
 * Translation is serialised, and with -icount (single-threaded TCG) so
 * is execution: the list needs no lock.
 */
static void write_window(void)
{
	struct block **sorted, *b;
	size_t n = 0, i;

	for (b = blocks; b; b = b->next)
		n += b->execs != b->execs_seen;
	sorted = malloc((n ? n : 1) * sizeof(*sorted));
	if (!sorted)
		abort();
	n = 0;
	for (b = blocks; b; b = b->next)
		if (b->execs != b->execs_seen)
			sorted[n++] = b;
	qsort(sorted, n, sizeof(*sorted), by_vaddr);
	fprintf(out, "window %u\n", ++windows);
	for (i = 0; i < n; ) {
		uint64_t vaddr = sorted[i]->vaddr, insns = 0;

		for (; i < n && sorted[i]->vaddr == vaddr; i++) {
			b = sorted[i];
			insns += (b->execs - b->execs_seen) * b->insns;
			b->execs_seen = b->execs;
		}
		fprintf(out, "%" PRIx64 " %" PRIu64 "\n", vaddr, insns);
	}
	fflush(out);
	free(sorted);
}

static void at_mark(unsigned int vcpu_index, void *userdata)
{
	write_window();
}

static void translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	struct block *b = calloc(1, sizeof(*b));

	if (!b)
		abort();
	b->vaddr = qemu_plugin_tb_vaddr(tb);
	b->insns = qemu_plugin_tb_n_insns(tb);
	b->next = blocks;
	blocks = b;
	qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64,
						 &b->execs, 1);
	/* Counted first: the marker's own block belongs to the window. */
	if (b->vaddr == mark)
		qemu_plugin_register_vcpu_tb_exec_cb(tb, at_mark,
						     QEMU_PLUGIN_CB_NO_REGS,
						     NULL);
}

static void at_exit(qemu_plugin_id_t id, void *userdata)
{
	fclose(out);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
			int argc, char **argv)
{
	const char *path = NULL;
	int i;

	for (i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "mark=", 5))
			mark = strtoull(argv[i] + 5, NULL, 16);
		else if (!strncmp(argv[i], "out=", 4))
			path = argv[i] + 4;
	}
	if (!mark || !path) {
		fprintf(stderr, "insncount: needs mark=<hex address>,out=<file>\n");
		return -1;
	}
	out = fopen(path, "w");
	if (!out) {
		perror(path);
		return -1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, at_exit, NULL);
	return 0;
}
