"""--cpu-affinity, --io-affinity and --sched as the host sees them: each vCPU
thread's allowed CPUs and scheduling policy in /proc, the I/O threads' CPUs,
and a clear error where the request cannot be met."""
import os
import re
import shutil
import subprocess
import time

import pytest
from conftest import GUEST_OK, run_guest


def _threads(pid):
    """{thread name: (allowed CPU list, policy, rt priority, nice)} of a process."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            name = open(f"{base}/comm").read().strip()
            status = open(f"{base}/status").read()
            stat = open(f"{base}/stat").read()
        except FileNotFoundError:
            continue
        cpus = next(l.split(":", 1)[1].strip() for l in status.splitlines()
                    if l.startswith("Cpus_allowed_list"))
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is stat's field 3: nice is field 19, rt_priority 40, policy 41
        out.setdefault(name, []).append((cpus, int(fields[38]), int(fields[37]), int(fields[16])))
    return out


def _run_spin(kite, guests, *flags):
    p = subprocess.Popen([kite, "run", "--engine", "soft", "--serial", "none",
                          "--kernel", str(guests / "spin.elf"), *flags],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 20
    threads = {}
    while time.time() < deadline and p.poll() is None:
        threads = _threads(p.pid)
        want = [a for a in flags if a.startswith("--cpus")]
        n = int(flags[flags.index("--cpus") + 1]) if want else 1
        if all(f"vcpu{i}" in threads for i in range(n)):
            break
        time.sleep(0.1)
    p.terminate()
    _, err = p.communicate(timeout=20)
    assert p.returncode == 0, err
    return threads


def _two_cpus():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 host CPUs kite may run on")


def test_vcpus_pinned_and_realtime(kite, guests):
    _two_cpus()
    t = _run_spin(kite, guests, "--cpus", "2", "--cpu-affinity", "0=0:1=1", "--sched", "rt:10",
                  "--io-affinity", "1")
    assert t["vcpu0"] == [("0", 1, 10, 0)], t  # SCHED_FIFO = 1
    assert t["vcpu1"] == [("1", 1, 10, 0)], t
    # every other thread (main, event loop, workers) runs on the I/O CPUs
    others = [v for name, vals in t.items() if not name.startswith("vcpu") for v in vals]
    assert others and all(cpus == "1" and policy == 0 for cpus, policy, _, _ in others), t


def test_unpinned_vcpu_does_not_inherit_io_affinity(kite, guests):
    _two_cpus()
    allowed = sorted(os.sched_getaffinity(0))
    t = _run_spin(kite, guests, "--cpus", "2", "--cpu-affinity", "1=0", "--io-affinity", "1")
    assert t["vcpu1"][0][0] == "0", t
    cpus0 = t["vcpu0"][0][0]
    assert cpus0 != "1" and cpus0.startswith(str(allowed[0])), t


def test_normal_weight_sets_nice(kite, guests):
    if os.geteuid() != 0:
        pytest.skip("a weight above 100 (negative nice) needs CAP_SYS_NICE: run as root")
    t = _run_spin(kite, guests, "--sched", "normal:1000")
    assert t["vcpu0"][0][1] == 0 and t["vcpu0"][0][3] == -10, t
    t = _run_spin(kite, guests, "--sched", "normal:10")
    assert t["vcpu0"][0][3] == 10, t
    # kite's other threads keep the default share
    assert all(v[3] == 0 for name, vals in t.items() if not name.startswith("vcpu") for v in vals)


@pytest.mark.parametrize("flags,message", [
    (["--cpus", "2", "--cpu-affinity", "2=0"], "--cpu-affinity names vCPU 2 but the VM has 2 vCPUs"),
    (["--cpu-affinity", "0=1000"], "--cpu-affinity: host CPU 1000 (for vCPU 0) is not one kite may run on"),
    (["--io-affinity", "1000"], "--io-affinity: host CPU 1000 is not one kite may run on"),
    (["--cpu-affinity", "0:1"], "bad --cpu-affinity rule '0': expected VCPU=CPULIST"),
    (["--io-affinity", "9-2"], "invalid --io-affinity: bad CPU range in '9-2'"),
    (["--sched", "rt:0"], "bad --sched 'rt:0': rt:PRIO takes a priority 1..99"),
    (["--sched", "batch"], "bad --sched 'batch': expected rt:PRIO or normal[:WEIGHT]"),
])
def test_bad_placement_is_an_error(kite, guests, flags, message):
    r = subprocess.run([kite, "run", "--engine", "soft", "--serial", "none",
                        "--kernel", str(guests / "spin.elf"), *flags],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    assert message in r.stderr, r.stderr


def test_refused_realtime_is_reported(kite, guests):
    """A user without CAP_SYS_NICE and RLIMIT_RTPRIO 0 asks for SCHED_FIFO:
    kite says why and exits 1, rather than running without it."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to run kite as an unprivileged user")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        "--inh-caps=-all", "--bounding-set=-all", "sh", "-c",
                        f"ulimit -r 0; exec '{kite}' run --engine soft --serial none "
                        f"--kernel '{guests / 'spin.elf'}' --sched rt:10"],
                       capture_output=True, text=True, timeout=30)
    if "Permission denied" in r.stderr and "vCPU" not in r.stderr:
        pytest.skip(f"user nobody cannot run kite from here: {r.stderr.strip()}")
    assert r.returncode == 1, r.stderr
    assert "cannot start vCPU 0 with SCHED_FIFO priority 10 (--sched rt:10): Operation not permitted" \
        in r.stderr, r.stderr


# ---- the real-time test guest --------------------------------------------

RT_SUMMARY = re.compile(r"^rt_latency: count (\d+) p50 (\d+) us p99 (\d+) us max (\d+) us missed (\d+)$", re.M)


def test_rt_guest_measures_itself(kite, guests, engine):
    """The RT guest takes 300 TSC-deadline interrupts at 1 kHz and reports
    its lateness: a consistent summary, not a speed target (bench/rt_latency.py
    measures that)."""
    r = run_guest(kite, guests / "rt_latency.elf", engine, "--cmdline", "samples=300")
    assert r.returncode == GUEST_OK, r.stdout + r.stderr
    m = RT_SUMMARY.search(r.stdout)
    assert m, r.stdout
    count, p50, p99, mx, _ = map(int, m.groups())
    assert count == 300
    assert p50 <= p99 <= max(mx, 2000), r.stdout
    hist = re.search(r"^rt_latency: histogram(.*) us$", r.stdout, re.M)
    assert hist and sum(int(n) for n in re.findall(r":(\d+)", hist.group(1))) == 300, r.stdout
    assert re.search(r"^rt_latency: tsc \d+ kHz \((cpuid 0x15|cpuid 0x16|pit)\)", r.stdout, re.M)

