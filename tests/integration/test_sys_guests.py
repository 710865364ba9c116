"""The system test guests (guests/sys_*.c) on every engine: mode switches,
paging and page faults, privilege transitions, IST and double faults,
self-modifying and cross-modifying code, exceptions. Each guest prints a PASS or FAIL line per
check and ends through the debug-exit port; the same guests must behave
identically on kvm (the oracle) and soft.

Where the kvm engine runs on kvm_pvm (a software KVM whose guest kernel
code is emulated), some things real hardware does are out of its reach;
those parts of a guest run as their own test, which skips on kvm_pvm
saying what was observed there, and runs everywhere else."""
import re
import subprocess
from pathlib import Path

import pytest

from conftest import GUEST_OK

KVM_PVM = Path("/sys/module/kvm_pvm").exists()

# Every part of every guest (the guest prints "--- <part>" as it starts
# one), and how many checks passing is the least a full run must show.
PARTS = {
    "sys_modes": ["boot_switch", "long_mode", "cr_checks", "cr_reserved", "lar", "compat_mode",
                  "leave_long_mode", "real_mode"],
    "sys_paging": ["not_present", "read_only", "supervisor", "nx", "reserved",
                   "accessed_dirty", "invlpg", "cr3_reload", "global", "smep_smap",
                   "smap_stac", "large_page"],
    "sys_user": ["iretq_to_user", "int3_gate", "int80", "privileged", "popf_if", "tsd",
                 "iopl3",
                 "syscall_disabled", "syscall", "syscall_entry_state", "sysret", "swapgs",
                 "fs_gs_base", "fsgsbase_off", "tsc_aux", "io_bitmap"],
    "sys_ist": ["ist_exception", "sti_shadow", "ist_interrupt", "ist_nmi", "np_benign",
                "double_fault", "stack_overflow"],
    "sys_smc": ["immediate", "instruction", "store_ahead", "loop", "rep_movsb", "user",
                "alias"],
    "sys_exceptions": ["divide", "invalid", "int3_cpl0", "int3_user", "int3_user_dpl0",
                       "noncanonical", "sse", "alignment", "single_step", "debug_exec",
                       "debug_write", "segments", "msr"],
    "sys_xmc": ["start_ap", "serialized", "eventual"],
}
# kite options a guest needs
ARGS = {"sys_xmc": ["--cpus", "2"]}
MIN_PASSED = {"sys_modes": 41, "sys_paging": 40, "sys_user": 61, "sys_ist": 20,
              "sys_smc": 18, "sys_exceptions": 37, "sys_xmc": 4}

# What kvm_pvm does differently from the hardware (observed on this host).
KVM_PVM_LIMITS = {
    ("sys_modes", "cr_reserved"):
        "MOV to CR0 or CR4 with bit 32 (reserved) set is ignored instead of raising #GP(0)",
    ("sys_modes", "lar"):
        "LAR at CPL0: 'instruction emulation failed' (KVM's emulator has no LAR)",
    ("sys_paging", "smap_stac"):
        "STAC at CPL0: 'instruction emulation failed'",
    ("sys_user", "popf_if"):
        "CPL3 runs with the host's RFLAGS.IF: POPF/PUSHF at CPL3 with IOPL 0 show IF set",
    ("sys_user", "tsd"):
        "CR4.TSD is not honoured: RDTSC at CPL3 runs instead of raising #GP(0)",
    ("sys_user", "fsgsbase_off"):
        "CPL3 runs with the host's CR4.FSGSBASE: WRFSBASE works with the guest's bit clear",
    ("sys_user", "int80"):
        "INT n (n != 3) at CPL3 raises #UD instead of going through the DPL3 gate",
    ("sys_user", "iopl3"):
        "IOPL 3 is not honoured at CPL3: CLI and IN still raise #GP",
    ("sys_user", "syscall_disabled"):
        "SYSCALL at CPL3 with EFER.SCE clear raises #UD with a wrong saved RIP (0x1008)",
    ("sys_user", "syscall_entry_state"):
        "the SYSCALL target reads CS 0x33 and RFLAGS without SFMASK applied",
    ("sys_user", "sysret"):
        "SYSRET at CPL0 raises #GP",
    ("sys_ist", "np_benign"):
        "#UD through a not-present gate becomes #DF; the SDM (table 6-5: benign, then "
        "contributory, are handled serially) says #NP(0x33)",
    ("sys_ist", "sti_shadow"):
        "an interrupt pending in the IRR is not delivered in the window STI opens at CPL0",
    ("sys_exceptions", "debug_write"):
        "a data write breakpoint (DR1, DR7 RW=01) does not fire for an emulated CPL0 store",
    ("sys_exceptions", "int3_cpl0"):
        "INT3 at CPL0: 'instruction emulation failed' (KVM's emulator has no "
        "protected-mode INT n)",
    ("sys_exceptions", "int3_user_dpl0"):
        "INT3 at CPL3 through a DPL0 gate is delivered as #BP instead of #GP(0x1a)",
}


def limited(guest, engine):
    """The parts this engine cannot run here."""
    if engine == "kvm" and KVM_PVM:
        return [p for (g, p) in KVM_PVM_LIMITS if g == guest]
    return []


@pytest.fixture(scope="session")
def sys_guests(guests):
    missing = [g for g in PARTS if not (guests / f"{g}.elf").is_file()]
    if missing:
        pytest.skip(f"system test guests not built: {', '.join(missing)} (run make guests)")
    return guests


def run_sys(kite, path, engine, cmdline, timeout=60):
    cmd = [kite, "run", "--engine", engine, "--debug-exit", "--serial", "stdio",
           "--kernel", str(path), *ARGS.get(path.stem, [])]
    if cmdline:
        cmd += ["--cmdline", cmdline]
    try:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"{path.name} on {engine} did not finish in {timeout}s; output so far:\n"
                    + "\n".join(out.splitlines()[-15:]))
    return (r.returncode, r.stdout.decode(errors="replace").replace("\r", ""),
            r.stderr.decode(errors="replace"))


def assert_checks(guest, engine, status, out, err, parts, min_passed):
    """Every part ran, every check passed, the totals add up, exit OK."""
    lines = [l for l in out.splitlines() if l.startswith(f"{guest}: ")]
    fails = [l for l in lines if l.startswith(f"{guest}: FAIL")]
    passes = [l for l in lines if l.startswith(f"{guest}: PASS")]
    context = "\n".join(lines[-12:]) + ("\n" + err.strip() if err.strip() else "")
    assert not fails, f"{guest} on {engine}:\n" + "\n".join(fails) + "\n" + err
    for p in parts:
        assert f"{guest}: --- {p}" in lines, f"{guest} on {engine}: part {p} never ran\n{context}"
        start = lines.index(f"{guest}: --- {p}") + 1
        ends = [i for i in range(start, len(lines))
                if lines[i].startswith((f"{guest}: --- ", f"{guest}: SKIP", f"{guest}: done"))]
        section = lines[start:ends[0] if ends else len(lines)]
        assert any(l.startswith(f"{guest}: PASS") for l in section), \
            f"{guest} on {engine}: part {p} checked nothing\n{context}"
    m = re.search(rf"^{guest}: done: (\d+) passed, (\d+) failed$", out, re.M)
    assert m, f"{guest} on {engine} did not finish:\n{context}"
    assert int(m.group(2)) == 0 and int(m.group(1)) == len(passes)
    assert len(passes) >= min_passed, f"{guest} on {engine}: only {len(passes)} checks ran"
    assert status == GUEST_OK, f"{guest} on {engine}: exit status {status}\n{context}"


@pytest.mark.parametrize("guest", list(PARTS))
def test_sys_guest(kite, sys_guests, engine, guest):
    """The whole guest (less what this engine cannot do here: see the
    per-part tests)."""
    skip = limited(guest, engine)
    status, out, err = run_sys(kite, sys_guests / f"{guest}.elf", engine,
                               f"skip={','.join(skip)}" if skip else "")
    for p in skip:
        assert f"{guest}: SKIP: {p}" in out
    parts = [p for p in PARTS[guest] if p not in skip]
    min_passed = MIN_PASSED[guest] if not skip else 1
    assert_checks(guest, engine, status, out, err, parts, min_passed)


@pytest.mark.parametrize("guest, part", list(KVM_PVM_LIMITS))
def test_sys_guest_part(kite, sys_guests, engine, guest, part):
    """The parts kvm_pvm cannot run, each on its own."""
    if part in limited(guest, engine):
        pytest.skip(f"kvm engine on kvm_pvm: {KVM_PVM_LIMITS[(guest, part)]}")
    status, out, err = run_sys(kite, sys_guests / f"{guest}.elf", engine, f"only={part}")
    assert_checks(guest, engine, status, out, err, [part], 1)
