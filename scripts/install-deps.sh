#!/bin/sh
# Install the Debian packages kite needs to build, test and boot its default
# guest. Safe to run again; does nothing when everything is there.
set -eu
PKGS="build-essential make pkg-config libzydis-dev libcriterion-dev liburing-dev libslirp-dev
libjson-c-dev python3 python3-pytest python3-pexpect acpica-tools qemu-system-x86 kmod
busybox-static cpio xz-utils zstd e2fsprogs curl clang iperf3 iproute2"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "kite: installing:$missing" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
