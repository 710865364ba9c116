#!/usr/bin/python3
"""Boot Debian's kernel + kite's default initramfs on kite's soft engine and on
QEMU TCG in the same run, and compare: time to the first serial byte, to init,
a CPU-bound shell workload inside the guest, and the whole run to exit.

usage: bench/linux_boot.py [--cpus N] [--runs N] [--only kite|qemu]
Prints one table and the kite/QEMU ratios; paste it into bench/RESULTS.md."""
import argparse
import sys
import time

from guestbench import command, guest_paths, run_cmdline, spawn, time_between, wait_exit

# A CPU-bound job in the guest's busybox shell; the guest prints its own
# The host times it between two markers the guest prints.
WORKLOAD = ("echo BENCH_WORK_START; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; "
            "head -c 4000000 /dev/zero | sha256sum >/dev/null; echo BENCH_WORK_END")


def one_run(which, kernel, initrd, cpus, timeout):
    prog, args = command(which, kernel, initrd, run_cmdline(WORKLOAD), cpus=cpus)
    t0 = time.monotonic()
    child = spawn(prog, args, timeout)
    marks = {}
    child.expect(r"\S")
    marks["first byte"] = time.monotonic() - t0
    child.expect("kite-guest: init reached")
    marks["init"] = time.monotonic() - t0
    marks["workload"] = time_between(child, "BENCH_WORK_START", "BENCH_WORK_END")
    marks["exit"] = wait_exit(child, which) - t0
    return marks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpus", type=int, default=1)
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
            try:
                m = one_run(which, kernel, initrd, a.cpus, a.timeout)
            except Exception as e:  # report, keep the other side's numbers
                print(f"{which}: failed: {str(e).splitlines()[0]}", file=sys.stderr)
                m = None
                break
            best = m if best is None else {k: min(best[k], m[k]) for k in m}
        results[which] = best
    keys = ["first byte", "init", "workload", "exit"]
    print(f"Linux boot, {a.cpus} vCPU, best of {a.runs} (seconds, wall)")
    print(f"{'':12}" + "".join(f"{k:>12}" for k in keys))
    for which, m in results.items():
        row = "".join(f"{m[k]:12.2f}" if m else f"{'-':>12}" for k in keys)
        print(f"{which:12}{row}")
    if results.get("kite") and results.get("qemu"):
        print(f"{'kite/qemu':12}" + "".join(
            f"{results['kite'][k] / results['qemu'][k]:11.1f}x" for k in keys))


if __name__ == "__main__":
    main()
