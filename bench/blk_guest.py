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
import sys
import tempfile

from guestbench import command, guest_paths, run_cmdline, spawn, time_between, wait_exit


def workload(mib):
    return ("dmesg -n 1; "
            f"echo BENCH_W_START; dd if=/dev/zero of=/dev/vda bs=1M count={mib} conv=fsync; "
            "echo BENCH_W_END; "
            f"echo BENCH_R_START; dd if=/dev/vda of=/dev/null bs=1M count={mib} iflag=direct; "
            "echo BENCH_R_END; "
            f"echo BENCH_D_START; dd if=/dev/zero of=/dev/vda bs=1M count={mib} oflag=direct "
            "conv=fsync; echo BENCH_D_END")


def vmm_command(which, kernel, initrd, image, mib):
    cpus = 1 if which == "qemu" else None
    return command(which, kernel, initrd, run_cmdline(workload(mib)), cpus=cpus,
                   kite_args=["--disk", image],
                   qemu_args=["-drive", f"file={image},if=none,id=d0,format=raw",
                              "-device", "virtio-blk-pci,drive=d0"])


def timed(child, start, end, mib):
    secs = time_between(child, start, end)
    if f"{mib}+0 records out" not in child.before:
        raise RuntimeError(f"dd failed between {start} and {end}: {child.before!r}")
    return mib * 1.048576 / secs  # MB/s (10^6 bytes)


def one_run(which, kernel, initrd, mib, timeout):
    with tempfile.TemporaryDirectory() as d:
        image = os.path.join(d, "disk.img")
        with open(image, "wb") as f:
            f.truncate((mib + 1) << 20)
        prog, args = vmm_command(which, kernel, initrd, image, mib)
        child = spawn(prog, args, timeout)
        res = {"write": timed(child, "BENCH_W_START", "BENCH_W_END", mib),
               "read": timed(child, "BENCH_R_START", "BENCH_R_END", mib),
               "direct write": timed(child, "BENCH_D_START", "BENCH_D_END", mib)}
        wait_exit(child, which)
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
