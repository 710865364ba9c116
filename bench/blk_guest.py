#!/usr/bin/python3
"""In-guest virtio-blk throughput: Debian's kernel + kite's default initramfs
run busybox `dd` on /dev/vda (a raw image), on kite's soft engine and on QEMU
TCG with virtio-blk-pci, same kernel, initramfs and image size, same run.

  write: dd if=/dev/zero of=/dev/vda bs=1M count=N conv=fsync
  read:  dd if=/dev/vda of=/dev/null bs=1M count=N iflag=direct
  direct write: dd if=/dev/zero of=/dev/vda bs=1M count=N oflag=direct conv=fsync
  (the buffered write also costs the guest's page-cache copy in the emulated
  CPU; the direct one is closer to the device path alone)

The host times each dd between two markers the guest prints on its serial
console (the guest's own clock is not trusted; Debian's busybox dd prints
no rate anyway).
Both VMMs use the host page cache for the image (kite always; QEMU's default
cache=writeback), so this measures the emulated CPU + driver + device model
path, not the host disk.

usage: bench/blk_guest.py [--mib N] [--runs N] [--only kite|qemu]
Prints one table and the kite/QEMU ratios; paste it into bench/RESULTS.md."""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import pexpect

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KITE = os.environ.get("KITE", os.path.join(TOP, "build", "kite"))


def workload(mib):
    return ("dmesg -n 1; "
            f"echo BENCH_W_START; dd if=/dev/zero of=/dev/vda bs=1M count={mib} conv=fsync; "
            "echo BENCH_W_END; "
            f"echo BENCH_R_START; dd if=/dev/vda of=/dev/null bs=1M count={mib} iflag=direct; "
            "echo BENCH_R_END; "
            f"echo BENCH_D_START; dd if=/dev/zero of=/dev/vda bs=1M count={mib} oflag=direct "
            "conv=fsync; echo BENCH_D_END")


def guest_paths():
    out = subprocess.run(["sh", os.path.join(TOP, "scripts", "build-guest.sh")],
                         capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    return lines[-2], lines[-1]


def command(which, kernel, initrd, image, mib):
    encoded = workload(mib).replace("%", "%25").replace("+", "%2B").replace(" ", "+")
    cmdline = "console=ttyS0 panic=-1 kite.run=" + encoded
    if which == "qemu":
        return "qemu-system-x86_64", ["-M", "pc", "-accel", "tcg", "-smp", "1",
                                      "-m", "512", "-nographic", "-no-reboot",
                                      "-kernel", kernel, "-initrd", initrd,
                                      "-append", cmdline,
                                      "-drive", f"file={image},if=none,id=d0,format=raw",
                                      "-device", "virtio-blk-pci,drive=d0"]
    return KITE, ["run", "--engine", "soft", "--memory", "512M",
                  "--kernel", kernel, "--initrd", initrd, "--cmdline", cmdline,
                  "--disk", image]


def timed(child, start, end, mib):
    child.expect(start + "\r")
    t0 = time.monotonic()
    child.expect(end + "\r")
    secs = time.monotonic() - t0
    if f"{mib}+0 records out" not in child.before:
        raise RuntimeError(f"dd failed between {start} and {end}: {child.before!r}")
    return mib * 1.048576 / secs  # MB/s (10^6 bytes)


def one_run(which, kernel, initrd, mib, timeout):
    with tempfile.TemporaryDirectory() as d:
        image = os.path.join(d, "disk.img")
        with open(image, "wb") as f:
            f.truncate((mib + 1) << 20)
        prog, args = command(which, kernel, initrd, image, mib)
        child = pexpect.spawn(prog, args, encoding="utf-8", codec_errors="replace",
                              timeout=timeout)
        res = {"write": timed(child, "BENCH_W_START", "BENCH_W_END", mib),
               "read": timed(child, "BENCH_R_START", "BENCH_R_END", mib),
               "direct write": timed(child, "BENCH_D_START", "BENCH_D_END", mib)}
        child.expect(pexpect.EOF)
        child.close()
        if child.exitstatus != 0:
            raise RuntimeError(f"{which} exited with {child.exitstatus}")
        with open(image, "rb") as f:  # the write really landed
            if f.read(1 << 20) != bytes(1 << 20) or os.path.getsize(image) != (mib + 1) << 20:
                raise RuntimeError(f"{which}: image not as written")
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", choices=["kite", "qemu"])
    ap.add_argument("--timeout", type=int, default=900)
    a = ap.parse_args()
    kernel, initrd = guest_paths()
    results = {}
    for which in ["qemu", "kite"]:
        if a.only and which != a.only:
            continue
        best = None
        for _ in range(a.runs):
            r = one_run(which, kernel, initrd, a.mib, a.timeout)
            print(f"{which}: " + ", ".join(f"{k} {v:.1f} MB/s"
                                          for k, v in r.items()), file=sys.stderr)
            best = r if best is None else {k: max(best[k], r[k]) for k in r}
        results[which] = best
    print(f"| dd {a.mib} MiB, bs=1M, /dev/vda | " + " | ".join(results) +
          (" | kite/QEMU |" if len(results) == 2 else " |"))
    print("| --- |" + " ---: |" * (len(results) + (len(results) == 2)))
    for k, label in [("write", "write, conv=fsync"), ("read", "read, iflag=direct"),
                     ("direct write", "write, oflag=direct conv=fsync")]:
        cells = [f"{results[w][k]:.1f} MB/s" for w in results]
        if len(results) == 2:
            cells.append(f"{results['kite'][k] / results['qemu'][k]:.2f}x")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
