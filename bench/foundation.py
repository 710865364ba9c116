#!/usr/bin/python3
"""Foundation benchmarks (a) and (c); run by bench/run-foundation.sh.

(a) wall time from exec of `kite run` to the hello guest's first serial
    byte on stdout, and to kite's exit (median and min of RUNS runs).
(c) kite's resident memory beyond the guest RAM the guest touched: VmRSS
    minus the Rss of the guest-RAM mapping, read from /proc while the spin
    guest runs (it has printed, so the guest RAM it touched is resident).
"""
import os
import select
import statistics
import subprocess
import sys
import time

KITE = os.environ.get("KITE", "build/kite")
GUESTS = os.environ.get("KITE_GUESTS", "build/guests")
ENGINE = os.environ.get("KITE_ENGINE", "kvm")
RUNS = int(os.environ.get("RUNS", "20"))


def time_hello():
    cmd = [KITE, "run", "--engine", ENGINE, "--debug-exit", "--serial", "stdio",
           "--kernel", f"{GUESTS}/hello.elf"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    first = None
    out = b""
    while True:
        r, _, _ = select.select([p.stdout], [], [], 10)
        if not r:
            p.kill()
            raise RuntimeError("hello guest: no output in 10 s")
        chunk = os.read(p.stdout.fileno(), 4096)
        if first is None and chunk:
            first = time.perf_counter()
        if not chunk:
            break
        out += chunk
    p.wait()
    end = time.perf_counter()
    if p.returncode != 85 or b"hello from kite guest" not in out:
        raise RuntimeError(f"hello guest failed: status {p.returncode}: {p.stderr.read()!r}")
    return (first - t0) * 1e3, (end - t0) * 1e3


def smaps_guest_rss_kb(pid, mem_kb):
    """Rss of the mapping(s) that hold guest RAM: the anonymous mappings
    whose size is the guest's low RAM (below 3 GiB, one mapping)."""
    rss = 0
    size = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "Size:":
                size = int(parts[1])
            elif parts[0] == "Rss:" and size == mem_kb:
                rss += int(parts[1])
    return rss


def vmrss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def rss_beyond_guest(mem_mib=256):
    cmd = [KITE, "run", "--engine", ENGINE, "--serial", "stdio", "--memory", f"{mem_mib}M",
           "--kernel", f"{GUESTS}/spin.elf"]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        buf = b""
        deadline = time.time() + 10
        while b"spin: spinning" not in buf and time.time() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 1)
            if r:
                buf += os.read(p.stdout.fileno(), 4096)
        if b"spin: spinning" not in buf:
            raise RuntimeError("spin guest did not start")
        time.sleep(0.3)
        total = vmrss_kb(p.pid)
        guest = smaps_guest_rss_kb(p.pid, mem_mib * 1024)
        return total, guest
    finally:
        p.terminate()
        p.wait(timeout=10)


def main():
    first, end = [], []
    for _ in range(RUNS):
        f, e = time_hello()
        first.append(f)
        end.append(e)
    print(f"(a) hello, {RUNS} runs: exec -> first serial byte: median {statistics.median(first):.1f} ms"
          f" (min {min(first):.1f}); exec -> exit: median {statistics.median(end):.1f} ms"
          f" (min {min(end):.1f})")
    total, guest = rss_beyond_guest()
    print(f"(c) spin guest, 256 MiB: VmRSS {total} KiB, guest RAM touched {guest} KiB, "
          f"kite beyond guest RAM {total - guest} KiB ({(total - guest) / 1024:.2f} MiB)")


if __name__ == "__main__":
    sys.exit(main())
