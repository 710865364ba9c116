"""Shared fixtures for kite's integration tests: where kite and the test
guests are, which engines are usable here, and a helper to run a guest."""
import errno
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KITE = Path(os.environ.get("KITE", ROOT / "build" / "kite"))
GUESTS = Path(os.environ.get("KITE_GUESTS", ROOT / "build" / "guests"))

# kite's exit status for a guest that writes v to the debug-exit port
def debug_exit_status(v):
    return ((v << 1) | 1) & 0xFF

GUEST_OK = debug_exit_status(0x10)      # 33
GUEST_FAIL = debug_exit_status(0x7E)    # 253
HELLO_STATUS = debug_exit_status(0x2A)  # 85


def kvm_unusable_reason():
    """None when /dev/kvm can be opened read-write, else why not."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return "no /dev/kvm on this host"
        if e.errno in (errno.EACCES, errno.EPERM):
            return "/dev/kvm: permission denied"
        return f"/dev/kvm: {e.strerror}"
    os.close(fd)
    return None


@pytest.fixture(scope="session")
def kite():
    if not KITE.is_file():
        pytest.skip(f"kite binary not built: {KITE} (run make)")
    return str(KITE)


@pytest.fixture(scope="session")
def guests():
    if not (GUESTS / "hello.elf").is_file():
        pytest.skip(f"test guests not built: {GUESTS} (run make guests)")
    return GUESTS


@pytest.fixture(scope="session")
def soft_unavailable(kite, guests):
    """The soft engine's own message while it cannot run guests, else None."""
    r = subprocess.run([kite, "run", "--engine", "soft", "--debug-exit", "--serial", "none",
                        "--kernel", str(guests / "hello.elf")],
                       capture_output=True, text=True, timeout=120)
    if r.returncode == HELLO_STATUS:
        return None
    msg = r.stderr.strip().splitlines()
    return msg[0] if msg else f"kite --engine soft exited {r.returncode}"


@pytest.fixture(scope="session")
def kvm_unavailable(kite, guests):
    """Why the kvm engine cannot run guests here (kite's own message: no
    /dev/kvm, permission, a missing capability), or None."""
    reason = kvm_unusable_reason()
    if reason:
        return reason
    r = subprocess.run([kite, "run", "--engine", "kvm", "--debug-exit", "--serial", "none",
                        "--kernel", str(guests / "hello.elf")],
                       capture_output=True, text=True, timeout=120)
    if "kvm engine unavailable" in r.stderr:
        return r.stderr.strip().splitlines()[0]
    return None


@pytest.fixture
def require_kvm(request):
    reason = request.getfixturevalue("kvm_unavailable")
    if reason:
        pytest.skip(f"kvm engine: {reason}")


@pytest.fixture(params=["kvm", "soft"])
def engine(request, kite, guests):
    """Each engine that can run guests here; the others skip, saying why."""
    if request.param == "kvm":
        reason = request.getfixturevalue("kvm_unavailable")
        if reason:
            pytest.skip(f"kvm engine: {reason}")
    else:
        msg = request.getfixturevalue("soft_unavailable")
        if msg:
            pytest.skip(f"soft engine: {msg}")
    return request.param


def run_guest(kite, guest, engine, *args, timeout=60):
    """Run a guest to completion with output on a pipe; returns the
    CompletedProcess (stdout: the guest's serial output)."""
    cmd = [kite, "run", "--engine", engine, "--debug-exit", "--serial", "stdio",
           "--kernel", str(guest), *args]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def guest_image():
    """(kernel, initrd) of the default Linux guest (scripts/build-guest.sh)."""
    import linux_guest
    return linux_guest.guest_image()
