"""Shared by the Linux guest benchmarks (linux_boot.py, blk_guest.py,
net_iperf.py): the default guest, the kite and QEMU TCG command lines for
the same kernel and initramfs, spawning them, and timing between two
markers the guest prints (the host's clock; the guest's is not trusted)."""
import os
import subprocess
import time

import pexpect

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KITE = os.environ.get("KITE", os.path.join(TOP, "build", "kite"))


def guest_paths(iperf3=False):
    """(kernel, initrd) from scripts/build-guest.sh; iperf3: the variant
    with iperf3 in the initramfs."""
    env = dict(os.environ, KITE_GUEST_IPERF3="1") if iperf3 else None
    out = subprocess.run(["sh", os.path.join(TOP, "scripts", "build-guest.sh")], env=env,
                         capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    return lines[-2], lines[-1]


def run_cmdline(script):
    """A serial-console command line whose kite.run= the guest's init runs
    (encoded: '+' for spaces, %-escapes for '%' and '+')."""
    encoded = script.replace("%", "%25").replace("+", "%2B").replace(" ", "+")
    return "console=ttyS0 panic=-1 kite.run=" + encoded


def command(which, kernel, initrd, cmdline, cpus=None, kite_args=(), qemu_args=()):
    """(program, args) booting the guest with 512M on kite's soft engine
    (which == "kite") or QEMU TCG (which == "qemu"); cpus None: each
    VMM's default (one)."""
    if which == "qemu":
        smp = ["-smp", str(cpus)] if cpus is not None else []
        return "qemu-system-x86_64", ["-M", "pc", "-accel", "tcg", *smp,
                                      "-m", "512", "-nographic", "-no-reboot",
                                      "-kernel", kernel, "-initrd", initrd,
                                      "-append", cmdline, *qemu_args]
    ncpus = ["--cpus", str(cpus)] if cpus is not None else []
    return KITE, ["run", "--engine", "soft", *ncpus, "--memory", "512M",
                  "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline, *kite_args]


def spawn(prog, args, timeout, prefix=()):
    """pexpect child for prog args; prefix: a command to run it under
    (ip netns exec NS)."""
    if prefix:
        prog, args = prefix[0], [*prefix[1:], prog, *args]
    return pexpect.spawn(prog, list(args), encoding="utf-8", codec_errors="replace",
                         timeout=timeout)


def time_between(child, start, end):
    """Seconds between the guest's start and end marker lines; the output
    between them stays in child.before."""
    child.expect(start + "\r")
    t0 = time.monotonic()
    child.expect(end + "\r")
    return time.monotonic() - t0


def wait_exit(child, which):
    """Wait for the VMM to exit; it must exit 0. Returns the host's
    time.monotonic() when its output ended."""
    child.expect(pexpect.EOF)
    ended = time.monotonic()
    child.close()
    if child.exitstatus != 0:
        raise RuntimeError(f"{which} exited with {child.exitstatus}")
    return ended
