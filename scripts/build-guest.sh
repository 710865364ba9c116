#!/bin/sh
# Build kite's default guest from Debian packages: the stock kernel
# (linux-image-amd64's dependency), the modules the guest needs with their
# dependencies resolved from modules.dep, and busybox-static, packed into an
# initramfs. Everything lands in the cache folder ($KITE_CACHE, default
# .cache/ in the repository), never in git. Prints the kernel and initramfs
# paths on its last two lines. Safe to run again: cached parts are reused.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cache=${KITE_CACHE:-$top/.cache}
out=$cache/guest
mkdir -p "$out/debs"

# Modules the default guest loads at boot (virtio over PCI, ext4 for disks).
MODULES="virtio_pci virtio_blk virtio_net virtio_console virtio_rng ext4"
# ext4's metadata_csum needs crc32c, a module here (modules.softdep: ext4 pre: crypto-crc32c).
MODULES="$MODULES crc32c_generic"

need() { command -v "$1" >/dev/null 2>&1 || { echo "build-guest: '$1' missing: run scripts/install-deps.sh" >&2; exit 1; }; }
need apt-get; need dpkg-deb; need depmod; need cpio; need gzip

download() { # package -> path of its .deb in the cache
	pkg=$1
	deb=$(ls "$out/debs/${pkg}_"*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$deb" ]; then
		(cd "$out/debs" && apt-get download "$pkg" >/dev/null 2>&1) ||
		{ apt-get update -qq >/dev/null 2>&1 && (cd "$out/debs" && apt-get download "$pkg" >/dev/null); } ||
		{ echo "build-guest: cannot download Debian package '$pkg'" >&2; exit 1; }
		deb=$(ls "$out/debs/${pkg}_"*.deb | head -n1)
	fi
	echo "$deb"
}

kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
if [ -z "$kpkg" ]; then
	apt-get update -qq >/dev/null 2>&1 || true
	kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -n1)
fi
[ -n "$kpkg" ] || { echo "build-guest: cannot resolve linux-image-amd64" >&2; exit 1; }
kdeb=$(download "$kpkg")
bdeb=$(download busybox-static)

kroot=$out/kernel-root
stamp=$kroot/.from
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$(basename "$kdeb")" ]; then
	rm -rf "$kroot"
	mkdir -p "$kroot"
	dpkg-deb -x "$kdeb" "$kroot"
	basename "$kdeb" > "$stamp"
fi
kver=$(ls "$kroot/lib/modules" | head -n1)
[ -f "$kroot/lib/modules/$kver/modules.dep" ] || depmod -b "$kroot" "$kver"
cp "$kroot/boot/vmlinuz-$kver" "$out/vmlinuz"

# Modules in load order: each module's dependencies (deepest first) before it.
moddir=$kroot/lib/modules/$kver
order=$out/modules.order
: > "$order"
# modules.dep lists every module's full dependency set; print deps (in the
# file's order, which lists deeper dependencies last) reversed, then the module.
awk -v want="$MODULES" '
	function norm(p,  f) { f = p; sub(".*/", "", f); sub("\\.ko.*$", "", f); gsub("-", "_", f); return f }
	{ line[norm($1)] = $0 }
	function emit(p) { if (!(p in seen)) { seen[p] = 1; print p } }
	END {
		n = split(want, w, " ")
		for (i = 1; i <= n; i++) {
			name = w[i]; gsub("-", "_", name)
			if (!(name in line)) { print "build-guest: module " name " not found (built in?)" > "/dev/stderr"; continue }
			split(line[name], parts, ":")
			path = parts[1]
			m = split(parts[2], deps, " ")
			for (j = m; j >= 1; j--) emit(deps[j])
			emit(path)
		}
	}' "$moddir/modules.dep" > "$order"

# The initramfs tree.
root=$out/initramfs-root
rm -rf "$root"
mkdir -p "$root/bin" "$root/sbin" "$root/proc" "$root/sys" "$root/dev" "$root/tmp" \
	"$root/etc" "$root/root" "$root/mnt" "$root/lib/modules/$kver" "$root/usr/bin" "$root/usr/sbin"
bbtmp=$out/busybox-root
rm -rf "$bbtmp"; mkdir -p "$bbtmp"
dpkg-deb -x "$bdeb" "$bbtmp"
cp "$bbtmp/bin/busybox" "$root/bin/busybox"
rm -rf "$bbtmp"
for applet in $("$root/bin/busybox" --list); do
	[ "$applet" = busybox ] || ln -sf /bin/busybox "$root/bin/$applet"
done
while read -r rel; do
	mkdir -p "$root/lib/modules/$kver/$(dirname "$rel")"
	cp "$moddir/$rel" "$root/lib/modules/$kver/$rel"
done < "$order"
sed "s|^|/lib/modules/$kver/|" "$order" > "$root/etc/modules.load"

# --- disk tools (virtio-blk tests): the host's real mkfs.ext4 (e2fsprogs),
# with the shared libraries ldd names, so the guest makes the same ext4 a
# Debian system would. Skipped with a note when the host has no e2fsprogs.
mke2fs_bin=$(command -v mke2fs 2>/dev/null || ls /usr/sbin/mke2fs /sbin/mke2fs 2>/dev/null | head -n1 || true)
if [ -n "$mke2fs_bin" ] && command -v ldd >/dev/null 2>&1; then
	rm -f "$root/bin/mke2fs" "$root/bin/mkfs.ext4"
	cp "$mke2fs_bin" "$root/sbin/mke2fs"
	ln -sf mke2fs "$root/sbin/mkfs.ext4"
	[ -f /etc/mke2fs.conf ] && cp /etc/mke2fs.conf "$root/etc/mke2fs.conf"
	for lib in $(ldd "$mke2fs_bin" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
else
	echo "build-guest: no mke2fs/ldd on the host: the guest gets busybox's mke2fs only" >&2
fi
# --- end disk tools

# busybox init runs /etc/init.d/rcS, then a shell on the console; `poweroff`
# and `reboot` signal it, and it syncs and stops everything before the
# kernel powers off.
ln -sf bin/busybox "$root/init"
ln -sf ../bin/busybox "$root/sbin/init"
mkdir -p "$root/etc/init.d"
cat > "$root/etc/inittab" <<'INITTAB'
::sysinit:/etc/init.d/rcS
::respawn:-/bin/cttyhack /bin/sh -l
::ctrlaltdel:/bin/poweroff
::shutdown:/bin/sync
INITTAB
cat > "$root/etc/init.d/rcS" <<'RCS'
#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
while read -r m; do
	insmod "$m" 2>/dev/null
done < /etc/modules.load
# --- console=hvc0: the kernel found no console for init (virtio_console is a
# module, loaded just above), so init and this script write to /dev/null;
# now that hvc0 exists, send the rest of this script's output there.
# (Opened in a subshell first: a failed exec redirection would end the script.)
if [ ! -t 1 ] && (: </dev/console >/dev/console) 2>/dev/null; then
	exec </dev/console >/dev/console 2>&1
fi
# --- end console=hvc0
hostname kite-guest
ip link set lo up 2>/dev/null
# Networking: every ethN comes up; eth0 is then configured by kite.net= on
# the kernel command line: "dhcp" (the default: right for --net user),
# "none", or a static "ADDR/PREFIX" with an optional ",GATEWAY".
if [ -d /sys/class/net/eth0 ]; then
	for i in /sys/class/net/eth*; do ip link set "${i##*/}" up; done
	net=$(sed -n 's/.*kite\.net=\([^ ]*\).*/\1/p' /proc/cmdline)
	case "${net:-dhcp}" in
	none) ;;
	dhcp) udhcpc -i eth0 -q -n -t 5 -T 2 -s /usr/share/udhcpc/default.script >/dev/null 2>&1 &&
		echo "kite-guest: eth0 $(ip -4 -o addr show eth0 | awk '{print $4}') by DHCP" ||
		echo "kite-guest: eth0: no DHCP answer" ;;
	*) ip addr add "${net%%,*}" dev eth0 &&
		{ [ "${net#*,}" = "$net" ] || ip route add default via "${net#*,}"; } &&
		echo "kite-guest: eth0 ${net%%,*}" ;;
	esac
fi
echo "kite-guest: init reached ($(uname -r), $(grep -c ^processor /proc/cpuinfo) cpu)"
# kite.run=CMD on the kernel command line runs CMD, then powers off, instead
# of giving the console a shell. CMD is form-encoded: '+' for a space, %2B
# for '+', %25 for '%'.
run=$(sed -n 's/.*kite\.run=\([^ ]*\).*/\1/p' /proc/cmdline | sed 's/+/ /g; s/%2B/+/g; s/%25/%/g')
if [ -n "$run" ]; then
	sh -c "$run"
	echo "kite-guest: powering off"
	sync
	poweroff -f
fi
RCS
chmod +x "$root/etc/init.d/rcS"
# udhcpc's hook: apply the lease (address, routes, DNS).
mkdir -p "$root/usr/share/udhcpc"
cat > "$root/usr/share/udhcpc/default.script" <<'DHCP'
#!/bin/sh
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound|renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do ip route add default via "$r" dev "$interface"; break; done
	: > /etc/resolv.conf
	[ -n "$domain" ] && echo "search $domain" >> /etc/resolv.conf
	for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done ;;
esac
exit 0
DHCP
chmod +x "$root/usr/share/udhcpc/default.script"
# Optional extra tools (bench/): KITE_GUEST_IPERF3=1 adds Debian's iperf3 with
# the shared libraries it needs.
if [ "${KITE_GUEST_IPERF3:-0}" = 1 ]; then
	itmp=$out/iperf3-root
	rm -rf "$itmp"; mkdir -p "$itmp"
	for p in iperf3 libiperf0 libsctp1; do dpkg-deb -x "$(download $p)" "$itmp"; done
	cp "$itmp/usr/bin/iperf3" "$root/usr/bin/iperf3"
	LD_LIBRARY_PATH=$itmp/usr/lib/x86_64-linux-gnu ldd "$itmp/usr/bin/iperf3" |
	awk '/=> \// {print $3} /^\t\/lib64/ {print $1}' | while read -r lib; do
		mkdir -p "$root$(dirname "${lib#$itmp}")"
		cp -L "$lib" "$root${lib#$itmp}"
	done
	mkdir -p "$root/lib64" "$root/lib/x86_64-linux-gnu"
	rm -rf "$itmp"
fi
cat > "$root/etc/profile" <<'PROFILE'
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PS1='kite# '
PROFILE

img=initramfs.cpio.gz
[ "${KITE_GUEST_IPERF3:-0}" = 1 ] && img=initramfs-iperf3.cpio.gz
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet | gzip -9) > "$out/$img.tmp"
mv "$out/$img.tmp" "$out/$img"
echo "$out/vmlinuz"
echo "$out/$img"
