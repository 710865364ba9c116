#!/usr/bin/python3
"""virtio-net throughput: kite's soft engine against QEMU TCG, same kernel,
same initramfs (the default guest plus iperf3: KITE_GUEST_IPERF3=1
scripts/build-guest.sh), same run, both with user-mode networking (libslirp
in both) and a virtio-net PCI NIC.

The guest runs `iperf3 -s`; a host port forward on 127.0.0.1 reaches it.
The host's iperf3 client then measures TCP host->guest, TCP guest->host
(-R), and small-frame UDP packets per second both ways. Only the host's
loopback is ever a target.

With --tap (root): the same over a tap device in a network namespace the
script creates and deletes (192.168.77.0/24, nothing outside it): the
guest at .2, the namespace's iperf3 client at .1. Here kite's NIC offers
checksum/TSO offloads (IFF_VNET_HDR), as QEMU's does (vhost off).

usage: bench/net_iperf.py [--seconds N] [--only kite|qemu] [--tap]
Prints a Markdown table for bench/RESULTS.md."""
import argparse
import json
import os
import socket
import subprocess
import sys
import time

import pexpect

from guestbench import TOP, command, guest_paths, spawn as spawn_vmm

PROMPT = "kite# "


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NS = f"kitebench{os.getpid()}"
NSX = ["ip", "netns", "exec", NS]


def tap_setup():
    subprocess.run(["ip", "netns", "add", NS], check=True)
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "tuntap", "add", "dev", "ktap0", "mode", "tap"],
                ["ip", "addr", "add", "192.168.77.1/24", "dev", "ktap0"],
                ["ip", "link", "set", "ktap0", "up"]):
        subprocess.run(NSX + cmd, check=True)


def tap_teardown():
    subprocess.run(["ip", "netns", "del", NS])


def spawn(vmm, kernel, initrd, port, tap=False):
    cmdline = "console=ttyS0 panic=-1 quiet"
    if tap:
        cmdline += " kite.net=192.168.77.2/24"
        kite_net = ["--net", "tap=ktap0"]
        qemu_net = ["-netdev", "tap,id=n0,ifname=ktap0,script=no,downscript=no,vhost=off"]
    else:
        kite_net = ["--net", f"user,hostfwd=tcp::{port}-:5201,hostfwd=udp::{port}-:5201"]
        qemu_net = ["-netdev", f"user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:5201,"
                               f"hostfwd=udp:127.0.0.1:{port}-:5201"]
    prog, args = command(vmm, kernel, initrd, cmdline, kite_args=kite_net,
                         qemu_args=[*qemu_net, "-device", "virtio-net-pci,netdev=n0"])
    return spawn_vmm(prog, args, 600, prefix=NSX if tap else ())


def iperf(port, seconds, *extra, tap=False):
    """One iperf3 run; retried while the (slow) guest server is still
    finishing the previous test."""
    res = {}
    for _ in range(6):
        time.sleep(3)
        target = ["192.168.77.2", "-p", "5201"] if tap else ["127.0.0.1", "-p", str(port)]
        r = subprocess.run((NSX if tap else []) + ["iperf3", "-c", *target, "-t", str(seconds),
                            "-J", *extra], capture_output=True, text=True, timeout=seconds + 120)
        try:
            res = json.loads(r.stdout)
        except json.JSONDecodeError:
            res = {"error": (r.stdout + r.stderr)[-300:]}
        if "error" not in res:
            return res
    return res


def tcp_mbps(res):
    if "error" in res:
        return f"error: {res['error']}"
    return res["end"]["sum_received"]["bits_per_second"] / 1e6


def udp_pps(res):
    if "error" in res:
        return f"error: {res['error']}"
    s = res["end"]["sum"]
    got = s["packets"] - s["lost_packets"]
    return got / s["seconds"]


def measure(vmm, kernel, initrd, seconds, tap):
    port = free_port()
    if tap:
        tap_setup()
    try:
        return measure_booted(vmm, kernel, initrd, seconds, tap, port)
    finally:
        if tap:
            tap_teardown()


def measure_booted(vmm, kernel, initrd, seconds, tap, port):
    child = spawn(vmm, kernel, initrd, port, tap)
    child.logfile_read = open(os.path.join(TOP, "build", f"bench-net-{vmm}{'-tap' if tap else ''}.log"), "w")
    t0 = time.time()
    child.expect("kite-guest: init reached")
    boot = time.time() - t0
    child.expect_exact(PROMPT)
    child.sendline("iperf3 -s -D && echo iperf3-up")
    child.expect("iperf3-up")
    child.expect_exact(PROMPT)
    time.sleep(1)
    out = {"boot_s": boot}
    out["tcp_h2g"] = tcp_mbps(iperf(port, seconds, tap=tap))
    out["tcp_g2h"] = tcp_mbps(iperf(port, seconds, "-R", tap=tap))
    # Small frames: 64-byte UDP payloads (106-byte frames), offered at
    # a rate neither side reaches; what arrives is the packet rate.
    out["udp_h2g"] = udp_pps(iperf(port, seconds, "-u", "-l", "64", "-b", "200M", tap=tap))
    out["udp_g2h"] = udp_pps(iperf(port, seconds, "-u", "-l", "64", "-b", "200M", "-R", tap=tap))
    child.sendline("poweroff")
    try:
        child.expect(pexpect.EOF, timeout=120)
    except pexpect.TIMEOUT:
        child.terminate(force=True)
    return out


def fmt(v, unit):
    return v if isinstance(v, str) else f"{v:.1f} {unit}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--only", choices=["kite", "qemu"])
    ap.add_argument("--tap", action="store_true")
    a = ap.parse_args()
    kernel, initrd = guest_paths(iperf3=True)
    rows = []
    for vmm in ("kite", "qemu"):
        if a.only and vmm != a.only:
            continue
        r = measure(vmm, kernel, initrd, a.seconds, a.tap)
        print(vmm, r, file=sys.stderr, flush=True)
        rows.append((vmm, r))
    print("| VMM | TCP host->guest | TCP guest->host | UDP 64 B host->guest | UDP 64 B guest->host |")
    print("| --- | --- | --- | --- | --- |")
    for vmm, r in rows:
        name = "kite soft engine" if vmm == "kite" else "QEMU 7.2 TCG"
        print(f"| {name} | {fmt(r['tcp_h2g'], 'Mbit/s')} | {fmt(r['tcp_g2h'], 'Mbit/s')} | "
              f"{fmt(r['udp_h2g'], 'pkt/s')} | {fmt(r['udp_g2h'], 'pkt/s')} |")


if __name__ == "__main__":
    main()
