# SPDX-License-Identifier: GPL-2.0
#
# Build a 6.12 kernel with asyncfd, boot it in QEMU and run the selftests.
# Each target is one script in harness/; see README.md for the knobs.

export KSRC ACCEL JOBS FLAVOUR TIMEOUT SILENCE V CCACHE_DIR

STAGE := harness/stage

.PHONY: all run check shell lint bench deps source tree config build \
	userspace selftest clean distclean

all: run

deps:
	@$(STAGE) deps
source: deps
	@$(STAGE) source
tree: source
	@$(STAGE) tree
config: tree
	@$(STAGE) config
build: config
	@$(STAGE) build
userspace: build
	@$(STAGE) userspace

run: userspace
	@$(STAGE) boot run
	@harness/verdict build/logs/run.log

# The harness first proves on itself that a broken kernel fails fast.
check: lint userspace
	@$(STAGE) selftest
	@$(STAGE) boot check
	@harness/verdict build/logs/check.log

shell: userspace
	@harness/boot shell

selftest: userspace
	@$(STAGE) selftest

# Always the bench flavour, whose objects live beside the debug ones: the
# figures land in build/bench/ as a markdown table and a plot.
bench:
	@$(MAKE) --no-print-directory userspace FLAVOUR=bench
	@FLAVOUR=bench $(STAGE) boot bench
	@FLAVOUR=bench harness/verdict build/logs/bench.log
	@$(STAGE) bench-report

# checkpatch, kernel-doc, sparse and W=1 on what the series adds.
lint: config
	@$(STAGE) lint

# build/series: the patch series as posted, checked and built patch by
# patch.
.PHONY: series
series: tree
	@$(STAGE) series

# Keep the unpacked source and the tree; drop what is built from them.
clean:
	rm -rf build/obj-* build/user-* build/initramfs-* build/logs

distclean:
	rm -rf build
