"""Shared helpers for the tests that boot Linux (scripts/build-guest.sh's
default guest: Debian's kernel and kite's initramfs) on the soft engine and
drive its shell over the console. conftest.py exposes guest_image() as a
fixture; each test file keeps its own checks, timeouts and log patterns."""
import os
import re
import subprocess

import pexpect
import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KITE = os.environ.get("KITE", os.path.join(TOP, "build", "kite"))
# Generous: Linux on the soft engine takes a minute or more to reach init on
# a loaded host; correctness, not speed, is asserted here (bench/ measures speed).
BOOT_TIMEOUT = int(os.environ.get("KITE_BOOT_TIMEOUT", "600"))
PROMPT = "kite# "
# Kernel log lines that mean trouble in any boot; each test adds its own.
BAD_LOG_COMMON = (r"Oops", r"BUG:", r"Kernel panic", r"soft lockup", r"hard LOCKUP",
                  r"WARNING: CPU")


def bad_log(*extra):
    """A pattern matching the common trouble lines and the given ones."""
    return re.compile("|".join((*BAD_LOG_COMMON, *extra)))


def soft_engine_available():
    out = subprocess.run([KITE, "run", "--engine", "soft", "--kernel", "/dev/null"],
                         capture_output=True, text=True)
    return "engine unavailable" not in out.stderr, out.stderr.strip()


def guest_image():
    """(kernel, initrd) of the default guest, built (or reused) by
    scripts/build-guest.sh; skips when kite, the soft engine or the guest's
    Debian packages are missing."""
    if not os.path.isfile(KITE):
        pytest.skip(f"kite binary not built: {KITE} (run make)")
    ok, why = soft_engine_available()
    if not ok:
        pytest.skip("soft engine not available: " + why)
    try:
        out = subprocess.run(["sh", os.path.join(TOP, "scripts", "build-guest.sh")],
                             capture_output=True, text=True, check=True, timeout=900)
    except subprocess.CalledProcessError as e:
        pytest.skip("cannot build the default guest (Debian packages unreachable?): "
                    + e.stderr.strip()[-300:])
    lines = out.stdout.strip().splitlines()
    return lines[-2], lines[-1]


def boot(kernel, initrd, log_name, args=(), console="ttyS0", cmdline="", prefix=()):
    """Start kite on the soft engine with 512M; the console goes to
    build/<log_name>.log. prefix: a command kite runs under (ip netns exec)."""
    kargs = ["run", "--engine", "soft", "--memory", "512M", "--kernel", kernel,
             "--initrd", initrd, "--cmdline", f"console={console} panic=-1 " + cmdline,
             *args]
    if prefix:
        child = pexpect.spawn(prefix[0], [*prefix[1:], KITE, *kargs], encoding="utf-8",
                              codec_errors="replace", timeout=BOOT_TIMEOUT)
    else:
        child = pexpect.spawn(KITE, kargs, encoding="utf-8", codec_errors="replace",
                              timeout=BOOT_TIMEOUT)
    os.makedirs(os.path.join(TOP, "build"), exist_ok=True)
    child.logfile_read = open(os.path.join(TOP, "build", f"{log_name}.log"), "w")
    return child


def run(child, cmd, timeout=120):
    """Run one shell command in the guest; return (status, output). The
    markers are split by '' so the echoed command line never matches."""
    child.sendline(f"echo KITE_BE''GIN; {cmd}; echo KITE_E''ND $?")
    child.expect(r"KITE_BEGIN\r*\n", timeout=timeout)
    child.expect(r"KITE_END (\d+)", timeout=timeout)
    out, status = child.before, int(child.match.group(1))
    child.expect_exact(PROMPT)
    return status, out.replace("\r", "")


def check_dmesg(child, pattern, timeout=120):
    """The kernel log and its lines matching pattern."""
    status, dmesg = run(child, "dmesg", timeout)
    assert status == 0, f"guest: 'dmesg' exited {status}:\n{dmesg}"
    bad = [line for line in dmesg.splitlines() if pattern.search(line)]
    return dmesg, bad


def assert_clean_dmesg(child, pattern, timeout=120):
    dmesg, bad = check_dmesg(child, pattern, timeout)
    assert not bad, "kernel log shows trouble:\n" + "\n".join(bad)
    return dmesg


def poweroff(child):
    """Power the guest off from its shell; kite's exit status."""
    child.sendline("poweroff")
    child.expect(pexpect.EOF, timeout=120)
    child.close()
    return child.exitstatus
