"""kite running its test guests (guests/) as a user would: output on the
serial console, result in the exit status. Also the command line's error
handling and how kite stops (Ctrl-A x, SIGTERM)."""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile

import pexpect
import pytest

from conftest import (GUEST_OK, HELLO_STATUS, debug_exit_status, kvm_unusable_reason,
                      run_guest)


# ---- the guests, on every engine that can run them here -----------------

def test_hello(kite, guests, engine):
    r = run_guest(kite, guests / "hello.elf", engine, "--cmdline", "answer=42 kite")
    assert "hello from kite guest: cmdline='answer=42 kite'" in r.stdout, r.stderr
    # the multiboot info reports 256 MiB (default) as 640K low + the rest from 1 MiB
    m = re.search(r"mem_lower=(\d+)K mem_upper=(\d+)K", r.stdout)
    assert m, r.stdout
    assert 600 <= int(m.group(1)) <= 640
    assert 250 * 1024 <= int(m.group(2)) < 256 * 1024
    assert r.returncode == HELLO_STATUS, r.stderr


def test_hello_smp_and_memory(kite, guests, engine):
    r = run_guest(kite, guests / "hello.elf", engine, "--cpus", "4", "--memory", "64M")
    assert "hello from kite guest" in r.stdout, r.stderr
    m = re.search(r"mem_upper=(\d+)K", r.stdout)
    assert m and 60 * 1024 <= int(m.group(1)) < 64 * 1024, r.stdout
    assert r.returncode == HELLO_STATUS, r.stderr


def test_echo(kite, guests, engine):
    r = run_guest(kite, guests / "echo.elf", engine)
    assert "echo: all passed (0 failures)" in r.stdout, r.stdout + r.stderr
    assert "FAILED" not in r.stdout
    for check in ("pio rep outsb count ok", "pio rep insl ok", "mmio dword ok",
                  "mmio crossing access ok"):
        assert f"echo: {check}" in r.stdout
    assert r.returncode == GUEST_OK, r.stderr


def test_longmode(kite, guests, engine):
    r = run_guest(kite, guests / "longmode.elf", engine)
    assert "longmode: hello from 64-bit mode" in r.stdout, r.stdout + r.stderr
    m = re.search(r"EFER=0x([0-9a-f]{16})", r.stdout)
    assert m and int(m.group(1), 16) & 0x500 == 0x500, "EFER.LME and EFER.LMA"
    assert "64-bit rotate gives 0x9abcdef012345678" in r.stdout
    assert "longmode: 5 LAPIC timer interrupts in 64-bit mode (IRETQ)" in r.stdout
    assert r.returncode == GUEST_OK, r.stderr


def test_interrupts(kite, guests, engine):
    r = run_guest(kite, guests / "interrupts.elf", engine)
    assert "interrupts: lapic timer: 5 ticks" in r.stdout, r.stdout + r.stderr
    assert "interrupts: pit via ioapic: 5 ticks" in r.stdout, r.stdout + r.stderr
    assert r.returncode == GUEST_OK, r.stderr


def test_cpuid(kite, guests, engine):
    r = run_guest(kite, guests / "cpuid.elf", engine, "--cpus", "6")
    assert r.returncode == GUEST_OK, r.stdout + r.stderr
    assert "hypervisor=1" in r.stdout
    # kvm shows KVM's signature (kvmclock and the PV features come from the
    # host kernel); the soft engine shows kite's own
    sig = "KVMKVMKVM..." if engine == "kvm" else "KiteKiteKite"
    assert f"signature={sig}" in r.stdout, r.stdout
    assert "apic_id=0 cpus=6 longmode=1" in r.stdout


@pytest.mark.parametrize("cpus", [1, 2, 4])
def test_smp(kite, guests, engine, cpus):
    """The APs wait for INIT-SIPI-SIPI and come up with their own APIC IDs."""
    r = run_guest(kite, guests / "smp.elf", engine, "--cpus", str(cpus))
    assert re.search(rf"smp: {cpus - 1} of {cpus - 1} APs online$", r.stdout, re.M), \
        r.stdout + r.stderr
    ids = sorted(int(m) for m in re.findall(r"AP \d+ up, apic id (\d+)", r.stdout))
    assert ids == list(range(1, cpus))
    assert r.returncode == GUEST_OK, r.stderr


def test_triple_fault(kite, guests, engine):
    r = run_guest(kite, guests / "triple.elf", engine)
    assert "triple: faulting" in r.stdout
    assert "still running" not in r.stdout
    assert r.returncode == 2, r.stderr
    assert "triple fault" in r.stderr


@contextlib.contextmanager
def spawned(*args, **kw):
    """pexpect.spawn that never leaves the process behind."""
    p = pexpect.spawn(*args, **kw)
    try:
        yield p
    finally:
        if p.isalive():
            p.close(force=True)


def test_debug_exit_off_by_default(kite, guests, engine):
    """Without --debug-exit port 0xf4 is nothing: hello's exit write is
    dropped and the guest halts (blocked in HLT); SIGTERM ends kite."""
    with spawned(kite, ["run", "--engine", engine, "--serial", "stdio",
                        "--kernel", str(guests / "hello.elf")], timeout=30) as p:
        p.expect("hello from kite guest")
        p.kill(signal.SIGTERM)
        p.expect(pexpect.EOF)
        p.close()
        assert p.exitstatus == 0


# ---- stopping kite ------------------------------------------------------

def test_sigterm_while_guest_spins(kite, guests, engine):
    with spawned(kite, ["run", "--engine", engine, "--serial", "stdio",
                        "--kernel", str(guests / "spin.elf")], timeout=30) as p:
        p.expect("spin: spinning")
        p.kill(signal.SIGTERM)
        p.expect(pexpect.EOF, timeout=10)
        p.close()
        assert p.exitstatus == 0, (p.exitstatus, p.signalstatus)


def test_ctrl_a_x_quits_and_restores_terminal(kite, guests, engine):
    """Ctrl-A x on the console ends kite; the terminal settings (raw mode
    while kite ran) are back as they were."""
    with tempfile.TemporaryDirectory() as d:
        before, after = os.path.join(d, "before"), os.path.join(d, "after")
        script = (f"stty -a > {before}; "
                  f"'{kite}' run --engine {engine} --serial stdio "
                  f"--kernel '{guests / 'spin.elf'}'; "
                  f"echo KITE_STATUS=$?; stty -a > {after}")
        with spawned("/bin/sh", ["-c", script], timeout=30) as p:
            p.expect("spin: spinning")
            p.send("\x01x")
            p.expect(r"KITE_STATUS=(\d+)", timeout=10)
            status = int(p.match.group(1))
            p.expect(pexpect.EOF)
        assert status == 0
        with open(before) as b, open(after) as a:
            assert b.read() == a.read()


# ---- engine auto ---------------------------------------------------------

def test_engine_auto(kite, guests):
    """auto calibrates kvm: where guest kernel code runs emulated it says
    so in one line and takes the soft engine (not available yet: exit 1)."""
    r = subprocess.run([kite, "run", "--debug-exit", "--serial", "stdio",
                        "--kernel", str(guests / "hello.elf")],
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    lines = r.stderr.splitlines()
    if any("emulated here" in l for l in lines):
        chosen = [l for l in lines if "using the soft engine" in l]
        assert len(chosen) == 1, r.stderr
        assert re.search(r"kvm runs guest kernel code emulated here \([\d.]+ MIPS\); "
                         r"using the soft engine", chosen[0])
        if "not available yet" in r.stderr:
            assert r.returncode == 1
            assert len(lines) == 2, r.stderr
        else:
            assert r.returncode == HELLO_STATUS
    elif kvm_unusable_reason() is None:
        assert r.returncode == HELLO_STATUS, r.stderr
        assert "hello from kite guest" in r.stdout
    else:
        assert "kvm unusable" in r.stderr


def test_engine_kvm_unavailable_message(kite, guests):
    reason = kvm_unusable_reason()
    if reason is None:
        pytest.skip("/dev/kvm is usable here: nothing to complain about")
    r = subprocess.run([kite, "run", "--engine", "kvm", "--kernel", str(guests / "hello.elf")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1
    assert "/dev/kvm" in r.stderr


def _as_root_helper(tool):
    if os.geteuid() != 0:
        pytest.skip(f"needs root to run {tool}")
    if not shutil.which(tool):
        pytest.skip(f"{tool} not installed")


def test_no_dev_kvm(kite, guests):
    """A mount namespace with an empty /dev: the kvm engine says what is
    missing and what to try instead."""
    _as_root_helper("unshare")
    script = (f"mount -t tmpfs none /dev || exit 99; "
              f"exec '{kite}' run --engine kvm --kernel '{guests / 'hello.elf'}'")
    r = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True,
                       timeout=30)
    if r.returncode == 99:
        pytest.skip(f"cannot hide /dev here: {r.stderr.strip()}")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "kite: kvm engine unavailable: no /dev/kvm: the kvm engine needs KVM (try --engine soft)"]


def test_dev_kvm_permission_denied(kite, guests):
    _as_root_helper("setpriv")
    if not os.path.exists("/dev/kvm"):
        pytest.skip("this host has no /dev/kvm: nothing to deny")
    if os.stat("/dev/kvm").st_mode & 0o006:
        pytest.skip("/dev/kvm is open to everyone here")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        kite, "run", "--engine", "kvm", "--kernel", str(guests / "hello.elf")],
                       capture_output=True, text=True, timeout=30)
    if "Permission denied" in r.stderr and "/dev/kvm" not in r.stderr:
        pytest.skip(f"user nobody cannot run kite from here: {r.stderr.strip()}")
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "kite: kvm engine unavailable: /dev/kvm: Permission denied (add your user to group kvm)"]


# ---- the command line ----------------------------------------------------

def test_help(kite):
    r = subprocess.run([kite, "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    assert "usage: kite" in r.stdout and "run" in r.stdout
    r = subprocess.run([kite, "run", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for flag in ("--kernel", "--initrd", "--cmdline", "--memory", "--cpus", "--engine",
                 "--serial", "--debug-exit"):
        assert flag in r.stdout, flag


def test_version(kite):
    for args in (["version"], ["--version"]):
        r = subprocess.run([kite, *args], capture_output=True, text=True)
        assert r.returncode == 0
        assert re.fullmatch(r"kite \d+\.\d+\.\d+\s*", r.stdout)


def one_line_error(kite, *args):
    r = subprocess.run([kite, *args], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1, (args, r.returncode, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1, (args, r.stderr)
    assert lines[0].startswith("kite: ")
    assert r.stdout == ""
    return lines[0]


@pytest.mark.parametrize("args, says", [
    (["--kernel", "/nonexistent/vmlinuz"], "/nonexistent/vmlinuz"),
    (["--memory", "8M"], "too small"),
    (["--memory", "1000000G"], "more than this host has"),
    (["--memory", "lots"], "lots"),
    (["--cpus", "0"], "1..255"),
    (["--cpus", "256"], "1..255"),
    (["--engine", "xen"], "xen"),
    (["--bogus"], "--bogus"),
    ([], "--kernel"),
])
def test_bad_input(kite, guests, args, says):
    if args and "--kernel" not in args:
        args = ["--kernel", str(guests / "hello.elf"), *args]
    line = one_line_error(kite, "run", *args)
    assert says in line, line


def test_not_a_kernel(kite, require_kvm):
    """A file that is no kernel: the error names it and the formats kite
    accepts. (Engine kvm: the file is read after the engine is chosen.)"""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.write("this is not a kernel\n" * 100)
        f.flush()
        line = one_line_error(kite, "run", "--engine", "kvm", "--kernel", f.name)
    assert f.name in line
    assert "multiboot" in line.lower() and "bzimage" in line.lower()


def test_unknown_command(kite):
    one_line_error(kite, "frobnicate")


def test_reset_ends_kite_or_restarts(kite, guests, engine):
    """A guest reset request ends kite with status 0; with --on-reboot
    restart the VM boots again from scratch (until SIGTERM ends it)."""
    r = run_guest(kite, guests / "reset.elf", engine)
    assert r.stdout.count("reset guest: booted") == 1, r.stdout
    assert r.returncode == 0, r.stderr

    child = pexpect.spawn(kite, ["run", "--engine", engine, "--on-reboot", "restart",
                                 "--kernel", str(guests / "reset.elf")],
                          encoding="utf-8", timeout=30)
    for _ in range(3):  # three boots prove the restart loops
        child.expect_exact("reset guest: booted")
    child.kill(signal.SIGTERM)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
