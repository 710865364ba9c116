"""Debian's stock kernel drives kite's virtio devices over PCI (issue 5), on
the soft engine: virtio-blk (an ext4 filesystem the host then checks, a
read-only disk, data synced before a SIGKILL), virtio-rng and
virtio-console. One boot per configuration, several checks per boot."""
import hashlib
import os
import shutil
import signal
import subprocess

import pexpect
import pytest

import linux_guest
from linux_guest import PROMPT, bad_log, poweroff, run

BAD_LOG = bad_log(r"rcu_sched self-detected stall", r"virtio.*(error|fail)",
                  r"I/O error, dev vda", r"EXT4-fs error")
DISK_MIB = 64

# Content the host knows: 20000 numbered lines (~230 KiB) the guest makes
# with seq, so a mismatch in any block shows.
LINES = 20000
LINES_DATA = b"".join(b"line %d\n" % i for i in range(1, LINES + 1))


def tool(name):
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/sbin/{name}")
                                       if os.path.exists(p)), None)
    if not path:
        pytest.skip(f"host tool '{name}' missing (e2fsprogs)")
    return path


def boot(kernel, initrd, name, args, console="ttyS0", extra_cmdline=""):
    child = linux_guest.boot(kernel, initrd, f"virtio-linux-{name}", args, console=console,
                             cmdline=extra_cmdline)
    child.expect("kite-guest: init reached")
    child.expect_exact(PROMPT)
    # Kernel messages on the console would land between the markers.
    run(child, "dmesg -n 1")
    return child


def ok(child, cmd, timeout=120):
    status, out = run(child, cmd, timeout)
    assert status == 0, f"guest: {cmd!r} exited {status}:\n{out}"
    return out


def check_dmesg(child):
    return linux_guest.check_dmesg(child, BAD_LOG)


def debugfs_cat(image, path):
    r = subprocess.run([tool("debugfs"), "-R", f"cat {path}", image],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def make_image(path, mib, data=None):
    with open(path, "wb") as f:
        if data is not None:
            f.write(data)
        f.truncate(mib << 20)


# --- one boot: a read-write disk, a read-only disk and the rng ---------------

@pytest.fixture(scope="module")
def disks(guest_image, tmp_path_factory):
    tool("e2fsck"), tool("debugfs")
    d = tmp_path_factory.mktemp("virtio-linux")
    rw, ro = str(d / "rw.img"), str(d / "ro.img")
    make_image(rw, DISK_MIB)
    ro_data = os.urandom(4 << 20)
    make_image(ro, 4, ro_data)
    kernel, initrd = guest_image
    child = boot(kernel, initrd, "disks",
                 ["--disk", rw, "--disk", f"{ro},readonly,id=kite-ro", "--rng"])
    state = {"child": child, "rw": rw, "ro": ro,
             "ro_sha": hashlib.sha256(open(ro, "rb").read()).hexdigest()}
    yield state
    child.close(force=True)


def test_guest_sees_both_disks(disks):
    child = disks["child"]
    assert ok(child, "cat /sys/block/vda/size").strip() == str(DISK_MIB << 11)
    assert ok(child, "cat /sys/block/vdb/size").strip() == str(4 << 11)
    assert ok(child, "cat /sys/block/vda/ro").strip() == "0"
    assert ok(child, "cat /sys/block/vdb/serial").strip() == "kite-ro"


def test_rng_feeds_hwrng(disks):
    child = disks["child"]
    assert "virtio_rng" in ok(child, "cat /sys/class/misc/hw_random/rng_current")
    assert ok(child, "head -c 64 /dev/hwrng | wc -c").strip() == "64"
    # 4 KiB of it: not constant (all zeros or a repeated byte would show)
    distinct = ok(child, "head -c 4096 /dev/hwrng | od -An -v -tx1 | tr -s ' ' '\\n' "
                         "| sort -u | grep -c .")
    assert int(distinct.strip()) > 200


def test_readonly_disk_rejects_writes(disks):
    child = disks["child"]
    assert ok(child, "cat /sys/block/vdb/ro").strip() == "1"
    # reads work and see the host's bytes
    assert ok(child, "sha256sum /dev/vdb").split()[0] == disks["ro_sha"]
    # the guest kernel refuses writes to a read-only disk...
    status, _ = run(child, "dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct")
    assert status != 0
    # ...also after clearing the block device's flag: Linux keeps the disk's
    # own read-only state (the device offered VIRTIO_BLK_F_RO), so kite's
    # own refusal (an I/O error status) is covered by the unit tests
    ok(child, "blockdev --setrw /dev/vdb")
    status, out = run(child, "dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct "
                             "conv=fsync 2>&1")
    assert status != 0, out
    status, _ = run(child, "mkfs.ext4 -q -F /dev/vdb")
    assert status != 0
    ok(child, "blockdev --setro /dev/vdb")
    # the host file is untouched
    assert hashlib.sha256(open(disks["ro"], "rb").read()).hexdigest() == disks["ro_sha"]


def test_ext4_on_vda_checked_on_host(disks):
    child = disks["child"]
    ok(child, "mkfs.ext4 -q -F -L kite-test /dev/vda", timeout=300)
    ok(child, "mount -t ext4 /dev/vda /mnt")
    ok(child, "mkdir -p /mnt/dir/sub && seq 1 %d | sed 's/^/line /' > /mnt/dir/sub/lines"
       % LINES, timeout=300)
    ok(child, "head -c 2000000 /dev/urandom > /mnt/random && echo hello > /mnt/hello")
    random_sha = ok(child, "sha256sum /mnt/random").split()[0]
    lines_sha = ok(child, "sha256sum /mnt/dir/sub/lines").split()[0]
    assert lines_sha == hashlib.sha256(LINES_DATA).hexdigest()
    ok(child, "sync && umount /mnt", timeout=300)
    # mount again: the guest reads back what it wrote, through a cold cache
    ok(child, "echo 3 > /proc/sys/vm/drop_caches; mount -t ext4 -o ro /dev/vda /mnt")
    assert ok(child, "sha256sum /mnt/random").split()[0] == random_sha
    ok(child, "umount /mnt")
    dmesg, bad = check_dmesg(child)
    assert "vda" in dmesg
    assert not bad, "kernel log shows trouble:\n" + "\n".join(bad)
    assert poweroff(child) == 0

    image = disks["rw"]
    assert os.path.getsize(image) == DISK_MIB << 20
    r = subprocess.run([tool("e2fsck"), "-fn", image], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert debugfs_cat(image, "/hello") == b"hello\n"
    assert debugfs_cat(image, "/dir/sub/lines") == LINES_DATA
    assert hashlib.sha256(debugfs_cat(image, "/random")).hexdigest() == random_sha


# --- one boot: SIGKILL right after sync returned --------------------------------

def test_synced_data_survives_sigkill(guest_image, tmp_path):
    tool("e2fsck"), tool("debugfs")
    image = str(tmp_path / "dur.img")
    make_image(image, 32)
    # made on the host, so the guest only mounts, writes and syncs
    subprocess.run([tool("mkfs.ext4"), "-q", "-F", image], check=True, timeout=60)
    kernel, initrd = guest_image
    child = boot(kernel, initrd, "sigkill", ["--disk", image])
    try:
        ok(child, "mount -t ext4 /dev/vda /mnt")
        ok(child, "seq 1 %d | sed 's/^/line /' > /mnt/lines; "
                  "head -c 1000000 /dev/urandom > /mnt/random" % LINES, timeout=300)
        random_sha = ok(child, "sha256sum /mnt/random").split()[0]
        child.sendline("sync; echo KITE_SY''NCED $?")
        child.expect(r"KITE_SYNCED (\d+)", timeout=300)
        assert child.match.group(1) == "0"
        child.kill(signal.SIGKILL)
        child.expect(pexpect.EOF, timeout=30)
    finally:
        child.close(force=True)
    assert child.signalstatus == signal.SIGKILL
    # the journal may need replaying: check a repaired copy, leave the image
    copy = str(tmp_path / "dur-copy.img")
    shutil.copyfile(image, copy)
    r = subprocess.run([tool("e2fsck"), "-fy", copy], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    r = subprocess.run([tool("e2fsck"), "-fn", copy], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert debugfs_cat(copy, "/lines") == LINES_DATA
    assert hashlib.sha256(debugfs_cat(copy, "/random")).hexdigest() == random_sha


# --- one boot: the console on hvc0 --------------------------------------------

def test_shell_on_hvc0(guest_image):
    kernel, initrd = guest_image
    child = boot(kernel, initrd, "hvc0", ["--console", "virtio"], console="hvc0",
                 extra_cmdline="kite.test=over-hvc0")
    try:
        assert "kite.test=over-hvc0" in ok(child, "cat /proc/cmdline")
        assert "hvc0" in ok(child, "cat /sys/class/tty/console/active")
        assert ok(child, "tty").strip() == "/dev/hvc0"
        # long lines both ways: more than one receive buffer's worth in (the
        # shell's line editor takes up to 1023 characters), 3000 out
        line = "x" * 900
        assert ok(child, f"echo {line} | wc -c").strip() == str(len(line) + 1)
        assert ok(child, f"printf '%03000d' 0 | tr 0 y").strip() == "y" * 3000
        dmesg, bad = check_dmesg(child)
        assert not bad, "kernel log shows trouble:\n" + "\n".join(bad)
        assert poweroff(child) == 0
    finally:
        child.close(force=True)
