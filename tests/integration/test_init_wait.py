"""INIT and SIPI while timers run (guests/sys_init.c), on every engine.

A vCPU that waits for a SIPI must cost the host nothing, whatever the PIT
does: the test reads kite's CPU time (utime + stime of the process, from
/proc) at the guest's "waiting" line and at its "sipi" line 1.5 s later.
That is a behaviour (a waiting vCPU sleeps), not a speed target: a vCPU
spinning in kite's run loop costs a whole host core over that time.

INIT on the BSP restarts it at the reset vector (it does not wait for a
SIPI); kite has no firmware there, so both engines end the VM as a reset
request (exit status 0), promptly and without spinning."""
import os
import subprocess
import time

import pytest

from conftest import GUEST_OK

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def sys_init_guest(guests):
    path = guests / "sys_init.elf"
    if not path.is_file():
        pytest.skip(f"test guest not built: {path} (run make guests)")
    return path


def kite_cmd(kite, guest, engine, cmdline):
    return [kite, "run", "--engine", engine, "--cpus", "2", "--debug-exit", "--serial",
            "stdio", "--kernel", str(guest), "--cmdline", cmdline]


def test_sipi_wait_sleeps_while_pit_runs(kite, guests, engine):
    guest = sys_init_guest(guests)
    p = subprocess.Popen(kite_cmd(kite, guest, engine, "skip=bsp_init"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    lines, marks = [], {}
    deadline = time.monotonic() + 120
    try:
        for line in p.stdout:
            line = line.rstrip("\r\n")
            lines.append(line)
            if line in ("sys_init: waiting", "sys_init: sipi"):
                marks[line] = (time.monotonic(), cpu_seconds(p.pid))
            if time.monotonic() > deadline:
                pytest.fail("sys_init did not finish in 120 s:\n" + "\n".join(lines[-10:]))
        status = p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read()
    out = "\n".join(lines)
    fails = [l for l in lines if l.startswith("sys_init: FAIL")]
    assert not fails, "\n".join(fails) + "\n" + err
    assert "sys_init: PASS: a SIPI from the BSP restarted the AP" in lines, out + err
    assert status == GUEST_OK, f"exit status {status}\n{out}\n{err}"
    assert len(marks) == 2, f"the guest's waiting/sipi lines are missing:\n{out}"
    (t0, c0), (t1, c1) = marks["sys_init: waiting"], marks["sys_init: sipi"]
    wall, cpu = t1 - t0, c1 - c0
    assert wall >= 1.0, f"the guest waited only {wall:.2f} s"
    # a spinning vCPU would cost about `wall` seconds; the BSP's own timer
    # ticks (~100 per second) cost a few percent
    assert cpu < 0.25 * wall, f"kite used {cpu:.2f} s of CPU in {wall:.2f} s while the AP " \
                              "waited for SIPI"


def test_init_on_bsp_is_a_reset(kite, guests, engine):
    guest = sys_init_guest(guests)
    t0 = time.monotonic()
    p = subprocess.Popen(kite_cmd(kite, guest, engine, "only=bsp_init"),
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        cpu = cpu_seconds(p.pid)
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"kite did not end after the BSP's INIT (60 s, {cpu:.1f} s of CPU):\n"
                    + out[-2000:])
    assert "sys_init: BSP sends itself INIT" in out, out + err
    assert "sys_init: FAIL" not in out, out + err
    assert p.returncode == 0, f"exit status {p.returncode}\n{out}\n{err}"
    assert time.monotonic() - t0 < 30
