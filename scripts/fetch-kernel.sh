#!/bin/sh
# Fetch Debian's stock amd64 kernel into .cache/kernel/ (for the loader unit
# tests and as a default guest kernel) and print the path of the vmlinuz.
# Idempotent: a cached kernel is reused. Works as root or as a user (apt-get
# download needs no privileges; apt-get update does, and runs only when the
# package is unknown).
set -eu
cd "$(dirname "$0")/.."
dir=.cache/kernel
if [ -s "$dir/vmlinuz" ]; then
	echo "$PWD/$dir/vmlinuz"
	exit 0
fi
for t in apt-get apt-cache dpkg-deb; do
	command -v "$t" >/dev/null || { echo "fetch-kernel: $t not found (needs Debian/Ubuntu)" >&2; exit 1; }
done

# The metapackage linux-image-amd64 depends on the current versioned image.
resolve() {
	apt-cache depends linux-image-amd64 2>/dev/null |
		sed -n 's/^ *Depends: *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1
}
pkg=$(resolve || true)
if [ -z "$pkg" ]; then
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "fetch-kernel: running apt-get update" >&2
	$SUDO apt-get update -qq
	pkg=$(resolve || true)
fi
[ -n "$pkg" ] || { echo "fetch-kernel: cannot resolve linux-image-amd64's kernel package" >&2; exit 1; }
# The -unsigned image is the same kernel without the Secure Boot signature.
if apt-cache show "$pkg-unsigned" >/dev/null 2>&1; then
	pkg="$pkg-unsigned"
fi

mkdir -p "$dir"
tmp=$(mktemp -d "$dir/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
download() { (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>&1); }
if ! download; then
	# Stale package lists name a version the mirror no longer has: refresh once.
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO="sudo"
	echo "fetch-kernel: download of $pkg failed; running apt-get update and retrying" >&2
	$SUDO apt-get update -qq || true
	(cd "$tmp" && apt-get download "$pkg" >&2) ||
		{ echo "fetch-kernel: apt-get download $pkg failed" >&2; exit 1; }
fi
deb=$(ls "$tmp"/*.deb | head -n1)
# Only boot/ is needed: stream the package's tar and take that, which is much
# faster than dpkg-deb -x of every module; fall back to -x if tar balks.
mkdir -p "$tmp/x"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp/x" --wildcards './boot/vmlinuz-*' 2>/dev/null ||
	dpkg-deb -x "$deb" "$tmp/x"
img=$(ls "$tmp"/x/boot/vmlinuz-* 2>/dev/null | head -n1)
[ -n "$img" ] || { echo "fetch-kernel: no boot/vmlinuz-* in $deb" >&2; exit 1; }
echo "$(basename "$img")" >"$dir/VERSION"
# Atomic publish: a concurrent run sees either nothing or the whole file.
cp "$img" "$dir/vmlinuz.tmp.$$"
mv "$dir/vmlinuz.tmp.$$" "$dir/vmlinuz"
echo "$PWD/$dir/vmlinuz"
