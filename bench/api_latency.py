#!/usr/bin/python3
"""API benchmarks (issue 7), recorded in bench/RESULTS.md:
 1. request latency before boot: p50/p99 over 1000 GET / and 1000
    PUT /machine-config on one keep-alive connection (a raw socket client,
    so curl's process start-up is not measured), plus the same through
    `curl --unix-socket` (one process per request, as scripts do);
 2. time from PUT /actions InstanceStart (request sent) to the guest's first
    serial byte on stdout, for the spin test guest on each engine and for
    Debian's kernel on the soft engine.
usage: bench/api_latency.py [--kite build/kite] [--curl-n 100]"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(kite, sock, *args, stdout=subprocess.DEVNULL):
    p = subprocess.Popen([kite, "--api-sock", sock, *args], stdin=subprocess.DEVNULL,
                         stdout=stdout, stderr=subprocess.DEVNULL)
    while not os.path.exists(sock):
        time.sleep(0.005)
    return p


def request(conn, method, path, body=b""):
    conn.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
                 "\r\n".encode() + body)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += conn.recv(65536)
    head, rest = buf.split(b"\r\n\r\n", 1)
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0]
            .split(b":")[1])
    while len(rest) < n:
        rest += conn.recv(65536)
    return int(head.split(b" ")[1])


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def latency(kite, curl_n):
    with tempfile.TemporaryDirectory() as d:
        sock = os.path.join(d, "k.sock")
        p = start(kite, sock)
        try:
            c = socket.socket(socket.AF_UNIX)
            c.connect(sock)
            res = {}
            for name, method, path, body in [
                    ("GET /", "GET", "/", b""),
                    ("PUT /machine-config", "PUT", "/machine-config",
                     b'{"vcpu_count": 2, "mem_size_mib": 1024}')]:
                ts = []
                for _ in range(1000):
                    t = time.perf_counter()
                    code = request(c, method, path, body)
                    ts.append(time.perf_counter() - t)
                    assert code in (200, 204), code
                res[name] = (pct(ts, 50) * 1e6, pct(ts, 99) * 1e6)
            c.close()
            ts = []
            for _ in range(curl_n):
                t = time.perf_counter()
                subprocess.run(["curl", "-s", "-o", "/dev/null", "--unix-socket", sock,
                                "http://localhost/"], check=True)
                ts.append(time.perf_counter() - t)
            res[f"GET / via curl (x{curl_n})"] = (pct(ts, 50) * 1e6, pct(ts, 99) * 1e6)
        finally:
            p.terminate()
            p.wait()
    return res


def first_byte(kite, engine, kernel, initrd=None, args="", mem=64, runs=3):
    out = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as d:
            sock = os.path.join(d, "k.sock")
            p = start(kite, sock, "--engine", engine, "--serial", "stdio", stdout=subprocess.PIPE)
            try:
                c = socket.socket(socket.AF_UNIX)
                c.connect(sock)
                bs = {"kernel_image_path": kernel, "boot_args": args}
                if initrd:
                    bs["initrd_path"] = initrd
                assert request(c, "PUT", "/boot-source", json.dumps(bs).encode()) == 204
                assert request(c, "PUT", "/machine-config",
                               json.dumps({"vcpu_count": 1, "mem_size_mib": mem}).encode()) == 204
                got = {}
                th = threading.Thread(target=lambda: got.update(b=p.stdout.read(1),
                                                                t=time.perf_counter()))
                th.start()
                t0 = time.perf_counter()
                assert request(c, "PUT", "/actions", b'{"action_type": "InstanceStart"}') == 204
                th.join(timeout=120)
                c.close()
                out.append((got["t"] - t0) * 1e3 if "t" in got else float("nan"))
            finally:
                p.terminate()
                p.wait()
    return sorted(out)[len(out) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kite", default=os.path.join(ROOT, "build", "kite"))
    ap.add_argument("--curl-n", type=int, default=100)
    a = ap.parse_args()
    print("API request latency before boot (us):")
    for k, (p50, p99) in latency(a.kite, a.curl_n).items():
        print(f"  {k:34s} p50 {p50:9.1f}  p99 {p99:9.1f}")
    spin = os.path.join(ROOT, "build", "guests", "spin.elf")
    print("InstanceStart -> first serial byte (ms, median of 3):")
    for eng in ("kvm", "soft"):
        print(f"  spin.elf, {eng:4s} engine: {first_byte(a.kite, eng, spin):8.1f}")
    try:
        lines = subprocess.run(["sh", os.path.join(ROOT, "scripts", "build-guest.sh")],
                               capture_output=True, text=True, check=True).stdout.split()
        kernel, initrd = lines[-2], lines[-1]
        ms = first_byte(a.kite, "soft", kernel, initrd, "console=ttyS0 earlyprintk=ttyS0 panic=-1",
                        mem=256, runs=1)
        print(f"  Debian kernel, soft engine (earlyprintk): {ms:8.1f}")
    except Exception as e:  # noqa: BLE001 - a bench prints what it could not run
        print(f"  Debian kernel: skipped ({e})")


if __name__ == "__main__":
    sys.exit(main())
