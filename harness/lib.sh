# SPDX-License-Identifier: GPL-2.0
#
# Paths, knobs and helpers shared by the harness scripts. Sourced, not run.
# The knobs (KSRC ARCH ACCEL JOBS FLAVOUR TIMEOUT V CCACHE_DIR) come from
# the environment; the top-level Makefile exports them.

export LC_ALL=C
# The kernel's make gets its own -j; do not inherit the caller's jobserver.
unset MAKEFLAGS MFLAGS MAKELEVEL

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=$ROOT/harness
BUILD=$ROOT/build
SRC=$BUILD/src
TREE=$BUILD/linux

FLAVOUR=${FLAVOUR:-debug}
JOBS=${JOBS:-$(nproc)}

# The guest's architecture (ARCH): x86_64 builds with the host's
# compiler, arm64 with Debian's cross compiler and the arm64 builds of
# busybox, libaio and liburing, unpacked into SYSROOT (deps). The kernel's
# makes see ARCH as the kernel names the source directory, x86 or arm64,
# so that an x86 tinyconfig comes out as it always has. x86_64 keeps the
# plain directory names.
GUEST=${ARCH:-x86_64}
case $GUEST in
x86|x86_64)
	GUEST=x86_64 ARCH=x86 CROSS_COMPILE= SUFFIX=
	KIMAGE=arch/x86/boot/bzImage ;;
arm64)	CROSS_COMPILE=aarch64-linux-gnu- SUFFIX=-arm64
	KIMAGE=arch/arm64/boot/Image ;;
*)	echo "ARCH must be x86_64 or arm64" >&2; exit 1 ;;
esac
export GUEST ARCH CROSS_COMPILE
SYSROOT=$BUILD/sysroot$SUFFIX
LOGS=$BUILD/logs$SUFFIX
OBJ=$BUILD/obj-$FLAVOUR$SUFFIX
USR=$BUILD/user-$FLAVOUR$SUFFIX
INITRAMFS=$BUILD/initramfs-$FLAVOUR$SUFFIX.cpio.gz
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
	local cc=${CROSS_COMPILE}gcc hostcc=gcc

	if command -v ccache >/dev/null; then
		cc="ccache $cc"
		hostcc="ccache $hostcc"
	fi
	make -C "$TREE" O="$OBJ" CC="$cc" HOSTCC="$hostcc" "$@"
}
