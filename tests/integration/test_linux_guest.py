"""Debian's stock kernel with kite's default initramfs, booted on the soft
engine (issue 4). One boot per vCPU count; several checks in each boot."""
import hashlib

import pytest

from linux_guest import PROMPT, assert_clean_dmesg, bad_log, poweroff, run
import linux_guest

BAD_LOG = bad_log(r"clocksource .* unstable", r"rcu_sched self-detected stall",
                  r"CPU\d+: stuck")


def boot(kernel, initrd, cpus, extra_cmdline=""):
    return linux_guest.boot(kernel, initrd, f"linux-guest-{cpus}cpu", ["--cpus", str(cpus)],
                            cmdline=extra_cmdline)


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

    assert_clean_dmesg(child, BAD_LOG)

    assert poweroff(child) == 0
