"""virtio-net on the soft engine with Debian's kernel (issue 6): one boot per
backend, several checks in each boot.

user: DHCP from slirp, a file fetched from an HTTP server on the host's
loopback through the gateway 10.0.2.2 (sha256 checked), a host port forward
to busybox httpd in the guest (both directions of bulk data checked).

tap: in a network namespace this test creates (and deletes), a tap device
on the private subnet 192.168.77.0/24; the guest and the namespace ping
each other and move a file both ways; then the tap is deleted under the
running VM, which must keep going. No address outside the namespace and
the host's loopback is ever used."""
import functools
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

import linux_guest
from linux_guest import PROMPT, TOP, assert_clean_dmesg, bad_log, poweroff

BAD_LOG = bad_log(r"virtio_net.*(error|fail)", r"NETDEV WATCHDOG")
SUBNET_HOST = "192.168.77.1"
SUBNET_GUEST = "192.168.77.2"


def boot(kernel, initrd, net_args, cmdline_extra, name, prefix=()):
    return linux_guest.boot(kernel, initrd, f"net-{name}", net_args,
                            cmdline="quiet " + cmdline_extra, prefix=prefix)


def run(child, cmd, timeout=180):
    """Run one shell command in the guest; return (status, output)."""
    return linux_guest.run(child, cmd, timeout)


def blob(size, seed):
    """Deterministic incompressible-ish bytes."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(b"%d-%d" % (seed, counter)).digest()
        counter += 1
    return bytes(out[:size])


# The guest makes its own file with a pattern the host can recompute.
GUEST_FILE_CMD = ("mkdir -p /www && i=0; while [ $i -lt 2048 ]; do printf '%063d\\n' $i; "
                  "i=$((i+1)); done > /www/data.txt && echo kite-index > /www/index.html")
GUEST_FILE = b"".join(b"%063d\n" % i for i in range(2048))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def check_dmesg(child):
    assert_clean_dmesg(child, BAD_LOG, timeout=180)


def test_user_mode_networking(guest_image, tmp_path):
    kernel, initrd = guest_image
    data = blob(300 * 1024, 1)
    (tmp_path / "blob.bin").write_bytes(data)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    http_port = server.server_address[1]
    fwd_port = free_port()
    # A second NIC with a given MAC: NICs repeat, eth1 is just up.
    child = boot(kernel, initrd, ["--net", f"user,hostfwd=tcp:127.0.0.1:{fwd_port}-:8080",
                                  "--net", "user,mac=02:00:00:00:00:42"], "", "user")
    try:
        child.expect(r"kite-guest: eth0 (\S+) by DHCP")
        assert child.match.group(1) == "10.0.2.15/24"
        child.expect("kite-guest: init reached")
        child.expect_exact(PROMPT)

        status, out = run(child, "cat /sys/class/net/eth0/address /sys/class/net/eth1/address")
        assert status == 0
        mac0, mac1 = out.split()
        assert mac1 == "02:00:00:00:00:42"
        assert mac0.startswith("52:4b:"), "generated: locally administered, kite's prefix"

        status, out = run(child, "cat /etc/resolv.conf; ip route")
        assert status == 0
        assert "nameserver 10.0.2.3" in out
        assert "default via 10.0.2.2" in out

        # host -> guest: a file from the host's loopback through the gateway
        status, out = run(child, f"wget -q -O /tmp/blob http://10.0.2.2:{http_port}/blob.bin "
                                 "&& sha256sum /tmp/blob")
        assert status == 0, out
        assert out.split()[0] == hashlib.sha256(data).hexdigest()

        # guest -> host: busybox httpd in the guest behind the host forward
        status, out = run(child, GUEST_FILE_CMD + " && httpd -p 8080 -h /www && echo started")
        assert status == 0 and "started" in out
        body = None
        for _ in range(30):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{fwd_port}/index.html",
                                            timeout=60) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(1)
        assert body == b"kite-index\n"
        with urllib.request.urlopen(f"http://127.0.0.1:{fwd_port}/data.txt", timeout=120) as r:
            got = r.read()
        assert hashlib.sha256(got).hexdigest() == hashlib.sha256(GUEST_FILE).hexdigest()

        check_dmesg(child)
        assert poweroff(child) == 0
    finally:
        server.shutdown()
        if child.isalive():
            child.terminate(force=True)


def tap_skip_reason():
    if os.geteuid() != 0:
        return "needs root (ip netns, tap devices)"
    if not shutil.which("ip"):
        return "'ip' (iproute2) is missing"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    if not shutil.which("ping") and not shutil.which("busybox"):
        return "no ping (iputils-ping or busybox-static)"
    return None


def sh(*cmd, check=True, timeout=60):
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check,
                          timeout=timeout)


@pytest.fixture
def netns():
    why = tap_skip_reason()
    if why:
        pytest.skip("tap test: " + why)
    ns = f"kitenet{os.getpid()}"
    try:
        sh("ip", "netns", "add", ns)
    except subprocess.CalledProcessError as e:
        pytest.skip("tap test: cannot create a network namespace: " + e.stderr.strip())
    try:
        nsx = ["ip", "netns", "exec", ns]
        sh(*nsx, "ip", "link", "set", "lo", "up")
        sh(*nsx, "ip", "tuntap", "add", "dev", "ktap0", "mode", "tap")
        sh(*nsx, "ip", "addr", "add", f"{SUBNET_HOST}/24", "dev", "ktap0")
        sh(*nsx, "ip", "link", "set", "ktap0", "up")
        yield ns
    finally:
        sh("ip", "netns", "del", ns, check=False)


def test_tap_networking(guest_image, netns, tmp_path):
    kernel, initrd = guest_image
    nsx = ["ip", "netns", "exec", netns]
    data = blob(200 * 1024, 2)
    (tmp_path / "blob.bin").write_bytes(data)
    http_port = 18000 + os.getpid() % 1000
    server = subprocess.Popen([*nsx, "python3", "-m", "http.server", "--bind", SUBNET_HOST,
                               "--directory", str(tmp_path), str(http_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    child = boot(kernel, initrd, ["--net", "tap=ktap0"],
                 f"kite.net={SUBNET_GUEST}/24", "tap", prefix=nsx)
    try:
        child.expect(f"kite-guest: eth0 {SUBNET_GUEST}/24")
        child.expect("kite-guest: init reached")
        child.expect_exact(PROMPT)

        status, out = run(child, f"ping -c 3 -W 10 {SUBNET_HOST}")
        assert status == 0, out
        # the host's ping (iputils), or busybox-static's when it has none
        ping = ["ping"] if shutil.which("ping") else ["busybox", "ping"]
        r = sh(*nsx, *ping, "-c", "3", "-W", "10", SUBNET_GUEST, check=False, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr

        # namespace -> guest
        status, out = run(child, f"wget -q -O /tmp/blob http://{SUBNET_HOST}:{http_port}/blob.bin "
                                 "&& sha256sum /tmp/blob")
        assert status == 0, out
        assert out.split()[0] == hashlib.sha256(data).hexdigest()

        # guest -> namespace
        status, out = run(child, GUEST_FILE_CMD + " && httpd -p 8080 -h /www && echo started")
        assert status == 0 and "started" in out
        fetch = ("import hashlib,sys,urllib.request;"
                 f"d=urllib.request.urlopen('http://{SUBNET_GUEST}:8080/data.txt',timeout=120).read();"
                 "print(hashlib.sha256(d).hexdigest())")
        r = sh(*nsx, "python3", "-c", fetch, check=False, timeout=180)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == hashlib.sha256(GUEST_FILE).hexdigest()

        check_dmesg(child)

        # The tap disappears under the running VM: kite says so once and
        # the guest keeps running (its packets now go nowhere).
        sh(*nsx, "ip", "link", "del", "ktap0")
        status, out = run(child, f"ping -c 2 -W 2 {SUBNET_HOST}; echo still-here")
        assert "still-here" in out
        status, out = run(child, f"ping -c 2 -W 2 {SUBNET_HOST}; echo still-here")
        assert "still-here" in out
        assert poweroff(child) == 0
        log = open(os.path.join(TOP, "build", "net-tap.log")).read()
        assert log.count("tap 'ktap0'") == 1, "the vanished tap is reported exactly once"
    finally:
        server.terminate()
        server.wait()
        if child.isalive():
            child.terminate(force=True)
