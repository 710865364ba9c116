"""ivshmem (--shm, kite shm-server): shared memory between VMs through the
shared file itself, doorbells between peers, interoperation with QEMU's
ivshmem-doorbell, and hostile input that must not hurt kite or other peers."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from conftest import GUEST_OK, run_guest


def pattern(seed, n):
    """The bytes guests/ivshmem.c writes for seed (its LCG)."""
    out = bytearray(n)
    st = seed
    for i in range(n):
        st = (st * 1103515245 + 12345) & 0xFFFFFFFF
        out[i] = (st >> 16) & 0xFF
    return bytes(out)


@pytest.fixture
def server(kite, tmp_path):
    """A kite shm-server on a fresh socket (1 MiB, 1 vector)."""
    sock = str(tmp_path / "ivshmem.sock")
    p = subprocess.Popen([kite, "shm-server", sock, "--size", "1M", "-v"],
                         stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if os.path.exists(sock):
            break
        time.sleep(0.05)
    yield sock, p
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=10)


def test_plain_file_is_the_guest_memory(kite, guests, engine, tmp_path):
    """One VM writes the whole BAR2, the host finds the bytes in the file,
    a second VM reads them back."""
    f = tmp_path / "shm"
    r = run_guest(kite, guests / "ivshmem.elf", engine, "--shm", f"path={f},size=256K",
                  "--cmdline", "role=write seed=7")
    assert r.returncode == GUEST_OK, r.stdout + r.stderr
    assert "ivshmem: wrote 262144 bytes, seed 7" in r.stdout
    assert f.read_bytes() == pattern(7, 256 << 10)
    r = run_guest(kite, guests / "ivshmem.elf", engine, "--shm", f"path={f}",
                  "--cmdline", "role=read seed=7")
    assert r.returncode == GUEST_OK, r.stdout + r.stderr
    assert "verified 262144 bytes" in r.stdout
    # the host's change is what the guest sees next (no copy anywhere)
    f.write_bytes(pattern(9, 256 << 10))
    r = run_guest(kite, guests / "ivshmem.elf", engine, "--shm", f"path={f}",
                  "--cmdline", "role=read seed=7")
    assert r.returncode != GUEST_OK and "mismatch at 0" in r.stdout, r.stdout


def test_hostile_guest(kite, guests, engine, tmp_path, server):
    """Doorbells to peers and vectors that do not exist, writes to read-only
    and reserved registers, reads past the end of BAR2: dropped, kite runs on,
    and a real peer still gets its doorbells afterwards."""
    f = tmp_path / "shm"
    r = run_guest(kite, guests / "ivshmem.elf", engine, "--shm", f"path={f},size=64K",
                  "--cmdline", "role=hostile")
    assert r.returncode == GUEST_OK, r.stdout + r.stderr
    assert "hostile accesses survived" in r.stdout
    sock, _ = server
    r = run_guest(kite, guests / "ivshmem.elf", engine, "--shm", f"server={sock}",
                  "--cmdline", "role=hostile")
    assert r.returncode == GUEST_OK, r.stdout + r.stderr


def _ping_pong(kite, guests, engine_a, engine_b, sock, count=20):
    waiter = subprocess.Popen([kite, "run", "--engine", engine_b, "--debug-exit", "--kernel",
                               str(guests / "ivshmem.elf"), "--shm", f"server={sock}",
                               "--cmdline", f"role=wait count={count}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ringer = run_guest(kite, guests / "ivshmem.elf", engine_a, "--shm", f"server={sock}",
                           "--cmdline", f"role=ring count={count}", timeout=120)
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
    assert ringer.returncode == GUEST_OK, ringer.stdout + ringer.stderr
    assert waiter.returncode == GUEST_OK, out + err
    assert f"rang {count} times, all answered" in ringer.stdout
    assert f"answered {count} doorbells" in out
    return ringer.stdout


def test_doorbells_between_two_vms(kite, guests, engine, server):
    """Peer 1 rings peer 0, which answers from its interrupt handler: every
    doorbell arrives as one MSI-X interrupt, counted in the shared memory."""
    sock, _ = server
    out = _ping_pong(kite, guests, engine, engine, sock)
    assert "position 1, msi-x" in out


def test_server_gone_peers_keep_working(kite, guests, server):
    """The spec: when the server goes away, connected peers keep their
    doorbells. The waiter joins, the server dies, the ringer cannot join any
    more (kite says why), and the waiter times out cleanly."""
    sock, p = server
    waiter = subprocess.Popen([kite, "run", "--engine", "soft", "--debug-exit", "--kernel",
                               str(guests / "ivshmem.elf"), "--shm", f"server={sock}",
                               "--cmdline", "role=wait count=1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)
    r = run_guest(kite, guests / "ivshmem.elf", "soft", "--shm", f"server={sock}",
                  "--cmdline", "role=ring count=1")
    assert r.returncode == 1, r.stderr
    assert f"--shm server={sock}: cannot connect" in r.stderr
    waiter.send_signal(signal.SIGTERM)
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, err  # ended by the signal, not by a crash
    assert "ivshmem server connection ended" in err, err


def test_interoperates_with_qemu(kite, guests, server):
    """A QEMU guest (ivshmem-doorbell on kite's server) answers a kite
    guest's doorbells: kite's server and device speak QEMU's protocol."""
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        pytest.skip("qemu-system-x86_64 is not installed")
    sock, _ = server
    q = subprocess.Popen([qemu, "-M", "pc", "-m", "128", "-display", "none", "-no-reboot",
                          "-kernel", str(guests / "ivshmem.elf"), "-append", "role=wait count=5",
                          "-chardev", f"socket,path={sock},id=ivs",
                          "-device", "ivshmem-doorbell,chardev=ivs,vectors=1",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-serial", "stdio"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r = run_guest(kite, guests / "ivshmem.elf", "soft", "--shm", f"server={sock}",
                      "--cmdline", "role=ring count=5", timeout=120)
        out, err = q.communicate(timeout=60)
    finally:
        if q.poll() is None:
            q.kill()
    assert r.returncode == GUEST_OK, r.stdout + r.stderr
    assert "rang 5 times, all answered" in r.stdout
    assert q.returncode == GUEST_OK, out + err
    assert "answered 5 doorbells" in out


@pytest.mark.parametrize("spec,message", [
    ("path=/tmp/x,size=3M", "bad --shm size '3M': a power of two from 4K to 256M"),
    ("path=/tmp/x,size=512M", "bad --shm size '512M'"),
    ("path=/tmp/x,server=/tmp/y", "give either path=FILE or server=SOCKET"),
    ("size=1M", "give either path=FILE or server=SOCKET"),
    ("path=/tmp/x,vectors=2", "vectors= needs server="),
    ("server=/tmp/y,vectors=0", "bad --shm vectors '0': 1..64"),
    ("server=/tmp/y,size=1M", "with server= the server decides the size"),
    ("path", "bad --shm option 'path': expected KEY=VALUE"),
    ("server=/nonexistent/sock", "--shm server=/nonexistent/sock: cannot connect"),
    ("path=/proc/version", "'/proc/version' has"),
])
def test_bad_shm_is_an_error(kite, guests, spec, message):
    r = subprocess.run([kite, "run", "--engine", "soft", "--kernel", str(guests / "hello.elf"),
                        "--serial", "none", "--shm", spec], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr, r.stderr


def test_shm_server_errors(kite, tmp_path):
    r = subprocess.run([kite, "shm-server", str(tmp_path / "s"), "--size", "5K"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "bad --size '5K'" in r.stderr, r.stderr
    r = subprocess.run([kite, "shm-server"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 1 and "give one SOCKET path" in r.stderr
    r = subprocess.run([kite, "shm-server", "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "usage: kite shm-server SOCKET" in r.stdout


# ---- two Debian guests --------------------------------------------------

FIND_BAR2 = ("for d in /sys/bus/pci/devices/*; do "
             "[ \"$(cat $d/vendor)\" = 0x1af4 ] && [ \"$(cat $d/device)\" = 0x1110 ] && "
             "sed -n 3p $d/resource | cut -d' ' -f1; done")


def test_two_linux_guests_share_memory(guest_image, tmp_path):
    """Two Debian guests booted side by side on one shared file: guest A
    writes words into BAR2 with devmem, the host reads them from the file,
    guest B reads them back, and B's answer is in A's view at once."""
    import linux_guest
    from linux_guest import PROMPT, poweroff, run
    kernel, initrd = guest_image
    f = tmp_path / "shm"
    args = ["--shm", f"path={f},size=1M"]
    a = linux_guest.boot(kernel, initrd, "ivshmem-linux-a", args)
    b = linux_guest.boot(kernel, initrd, "ivshmem-linux-b", args)
    try:
        for child in (a, b):
            child.expect("kite-guest: init reached")
            child.expect_exact(PROMPT)
        status, out = run(a, FIND_BAR2)
        assert status == 0, out
        bar2 = int(out.split()[-1], 16)
        assert bar2, out
        words = [0x4B495445, 0x12345678, 0xCAFEF00D, 0x0BADC0DE]
        cmd = "; ".join(f"devmem {bar2 + 4 * i:#x} 32 {w:#x}" for i, w in enumerate(words))
        status, out = run(a, cmd)
        assert status == 0, out
        data = f.read_bytes()
        assert [int.from_bytes(data[4 * i:4 * i + 4], "little") for i in range(4)] == words
        status, out = run(b, FIND_BAR2)
        bar2_b = int(out.split()[-1], 16)
        status, out = run(b, "; ".join(f"devmem {bar2_b + 4 * i:#x} 32" for i in range(4)))
        assert status == 0, out
        assert [int(x, 16) for x in out.split()] == words, out
        status, _ = run(b, f"devmem {bar2_b + 16:#x} 32 0x600DCAFE")
        status, out = run(a, f"devmem {bar2 + 16:#x} 32")
        assert int(out.split()[-1], 16) == 0x600DCAFE, out
        assert poweroff(a) == 0
        assert poweroff(b) == 0
    finally:
        for child in (a, b):
            if child.isalive():
                child.terminate(force=True)
