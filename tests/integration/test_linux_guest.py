"""Debian's stock kernel with kite's default initramfs, booted on the soft
engine (issue 4). One boot per vCPU count; several checks in each boot."""
import hashlib
import os
import re
import subprocess
import time

import pexpect
import pytest

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KITE = os.environ.get("KITE", os.path.join(TOP, "build", "kite"))
# Generous: correctness, not speed, is asserted here (bench/ measures speed).
BOOT_TIMEOUT = int(os.environ.get("KITE_BOOT_TIMEOUT", "600"))
BAD_LOG = re.compile(r"Oops|BUG:|Kernel panic|clocksource .* unstable|"
                     r"rcu_sched self-detected stall|soft lockup|hard LOCKUP|"
                     r"CPU\d+: stuck|WARNING: CPU")
PROMPT = "kite# "


def soft_engine_available():
    out = subprocess.run([KITE, "run", "--engine", "soft", "--kernel", "/dev/null"],
                         capture_output=True, text=True)
    return "engine unavailable" not in out.stderr, out.stderr.strip()


@pytest.fixture(scope="module")
def guest_image():
    try:
        out = subprocess.run(["sh", os.path.join(TOP, "scripts", "build-guest.sh")],
                             capture_output=True, text=True, check=True, timeout=900)
    except subprocess.CalledProcessError as e:
        pytest.skip("cannot build the default guest (Debian packages unreachable?): "
                    + e.stderr.strip()[-300:])
    lines = out.stdout.strip().splitlines()
    return lines[-2], lines[-1]


def boot(kernel, initrd, cpus, extra_cmdline=""):
    ok, why = soft_engine_available()
    if not ok:
        pytest.skip("soft engine not available: " + why)
    cmdline = "console=ttyS0 panic=-1 " + extra_cmdline
    child = pexpect.spawn(KITE, ["run", "--engine", "soft", "--cpus", str(cpus),
                                 "--memory", "512M", "--kernel", kernel,
                                 "--initrd", initrd, "--cmdline", cmdline],
                          encoding="utf-8", codec_errors="replace", timeout=BOOT_TIMEOUT)
    child.logfile_read = open(os.path.join(TOP, "build", f"linux-guest-{cpus}cpu.log"), "w")
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


@pytest.mark.parametrize("cpus", [1, 2])
def test_debian_kernel_boots_to_a_shell(guest_image, cpus):
    kernel, initrd = guest_image
    child = boot(kernel, initrd, cpus, extra_cmdline="kite.test=hello-from-cmdline")
    child.expect("kite-guest: init reached")
    child.expect_exact(PROMPT)

    status, cmdline = run(child, "cat /proc/cmdline")
    assert status == 0 and "kite.test=hello-from-cmdline" in cmdline

    status, n = run(child, "grep -c ^processor /proc/cpuinfo")
    assert status == 0 and int(n.strip()) == cpus

    # A CPU-bound job whose result the host checks: 256 KiB of generated data.
    status, out = run(child, "i=0; while [ $i -lt 4096 ]; do printf '%063d\\n' $i; "
                             "i=$((i+1)); done | sha256sum", timeout=600)
    data = b"".join(b"%063d\n" % i for i in range(4096))
    assert status == 0 and out.split()[0] == hashlib.sha256(data).hexdigest()

    status, dmesg = run(child, "dmesg")
    assert status == 0
    bad = [line for line in dmesg.splitlines() if BAD_LOG.search(line)]
    assert not bad, "kernel log shows trouble:\n" + "\n".join(bad)

    child.sendline("poweroff")
    child.expect(pexpect.EOF, timeout=120)
    child.close()
    assert child.exitstatus == 0
