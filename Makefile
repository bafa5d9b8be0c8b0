# SPDX-License-Identifier: GPL-2.0
#
# Build a 6.12 kernel with asyncfd, boot it in QEMU and run the selftests.
# Each target is one script in harness/; see README.md for the knobs.

export KSRC ARCH ACCEL JOBS FLAVOUR TIMEOUT SILENCE V CCACHE_DIR BENCH PROFILE

STAGE := harness/stage
ARCH ?= x86_64
LOGS := build/logs$(if $(filter arm64,$(ARCH)),-arm64)

.PHONY: all run check check-all race shell lint bench deps source tree \
	config build userspace selftest clean distclean

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
	@harness/verdict $(LOGS)/run.log

# The harness first proves on itself that a broken kernel fails fast. On
# x86_64 the lint comes first and the KCSAN boot last; the verdict
# counts both boots. The lint and the KCSAN boot do not depend on the
# guest's architecture, so an arm64 check skips them.
ifeq ($(ARCH),arm64)
check: userspace
	@$(STAGE) selftest
	@$(STAGE) boot check
	@harness/verdict $(LOGS)/check.log
else
check: lint userspace
	@$(STAGE) selftest
	@$(STAGE) boot check
	@$(MAKE) --no-print-directory race-boot
	@harness/verdict --ours build/obj-race $(LOGS)/check.log \
		$(LOGS)/race.log
endif

# Both architectures, one after the other.
check-all:
	@$(MAKE) --no-print-directory check ARCH=x86_64
	@$(MAKE) --no-print-directory check ARCH=arm64

# The KCSAN boot alone, judged alone.
race: race-boot
	@harness/verdict --ours build/obj-race $(LOGS)/race.log

.PHONY: race-boot
race-boot:
	@$(MAKE) --no-print-directory userspace FLAVOUR=race
	@FLAVOUR=race $(STAGE) boot race

shell: userspace
	@harness/boot shell

selftest: userspace
	@$(STAGE) selftest

# Always the bench flavour, whose objects live beside the debug ones: the
# figures land in build/bench/ as a markdown table and a plot. PROFILE=1
# also counts the instructions of each profiled run by function, in
# build/bench/profile.md.
bench:
	@$(MAKE) --no-print-directory userspace FLAVOUR=bench
	@FLAVOUR=bench $(STAGE) boot bench
	@FLAVOUR=bench harness/verdict build/logs/bench.log
	@$(STAGE) bench-report
	@if [ "$(PROFILE)" = 1 ]; then $(STAGE) profile-report; fi

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
