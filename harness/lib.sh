# SPDX-License-Identifier: GPL-2.0
#
# Paths, knobs and helpers shared by the harness scripts. Sourced, not run.
# The knobs (KSRC ACCEL JOBS FLAVOUR TIMEOUT V CCACHE_DIR) come from the
# environment; the top-level Makefile exports them.

export LC_ALL=C
# The kernel's make gets its own -j; do not inherit the caller's jobserver.
unset MAKEFLAGS MFLAGS MAKELEVEL

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$ROOT/harness
BUILD=$ROOT/build
LOGS=$BUILD/logs
SRC=$BUILD/src
TREE=$BUILD/linux

FLAVOUR=${FLAVOUR:-debug}
JOBS=${JOBS:-$(nproc)}
OBJ=$BUILD/obj-$FLAVOUR
USR=$BUILD/user-$FLAVOUR
INITRAMFS=$BUILD/initramfs-$FLAVOUR.cpio.gz
SELFTESTS=$TREE/tools/testing/selftests/asyncfd

# The cache lives outside the clone; paths are hashed relative to the
# clone, so a fresh clone elsewhere (as CI makes) still hits.
CACHE_HOME=${XDG_CACHE_HOME:-${HOME:-/root}/.cache}
export CCACHE_DIR=${CCACHE_DIR:-$CACHE_HOME/asyncfd-ccache}
export CCACHE_BASEDIR=$ROOT CCACHE_NOHASHDIR=1
export KBUILD_BUILD_TIMESTAMP='Wed Jan  1 00:00:00 UTC 2025'
export KBUILD_BUILD_USER=asyncfd KBUILD_BUILD_HOST=harness

# Stages talk to the terminal on fd 3 (see harness/stage).
{ true >&3; } 2>/dev/null || exec 3>&1

say()
{
	echo "$@" >&3
}

die()
{
	echo "$@" >&3
	exit 1
}

# kmake ARGS...: the kernel's make on build/linux, objects in build/obj-*
kmake()
{
	local cc=gcc

	command -v ccache >/dev/null && cc="ccache gcc"
	make -C "$TREE" O="$OBJ" CC="$cc" HOSTCC="$cc" "$@"
}
