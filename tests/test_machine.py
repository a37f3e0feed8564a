"""qbench.launch.machine: parsing recorded CPU descriptions of real machines, the machine_id, and the live machine."""

import json
import platform
import re
import shutil
import socket
from pathlib import Path

import psutil
import pytest

from qbench.launch import machine as qm
from qbench.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "cpu"
SLUG = re.compile(r"[a-z0-9._-]{1,80}")
GIB = 2**30

ZEN5_ISA = ["avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512dq", "avx512f", "avx512vl", "avx_vnni",
            "f16c", "fma", "sse4_2"]
# file: (arch, vendor, cpu_model, logical_cpus, isa)
EXPECTED = {
    "x86_64-epyc-zen5-avx512.cpuinfo.txt": ("x86_64", "AuthenticAMD", "AMD EPYC", 2, ZEN5_ISA),
    "x86_64-epyc-zen5-avx512.lscpu.txt": ("x86_64", "AuthenticAMD", "AMD EPYC", 2, ZEN5_ISA),
    # One processor block of a larger machine: "siblings : 32" says its package has 32 logical CPUs.
    "x86_64-xeon-broadwell-avx2.cpuinfo.txt": ("x86_64", "GenuineIntel", "Intel(R) Xeon(R) CPU E5-2686 v4 @ 2.30GHz",
                                               32, ["avx", "avx2", "f16c", "fma", "sse4_2"]),
    "aarch64-neoverse-v2-grace.lscpu.txt": ("aarch64", "ARM", "Neoverse-V2", 64,
                                            ["asimd", "asimddp", "asimdhp", "bf16", "fphp", "i8mm", "sve", "sve2"]),
    "aarch64-kunpeng920.lscpu.txt": ("aarch64", "HiSilicon", "Kunpeng 920 7285Z", 320,
                                     ["asimd", "asimddp", "asimdhp", "bf16", "fphp", "i8mm", "sve"]),
    "aarch64-cavium-thunderx.cpuinfo.txt": ("aarch64", "Cavium", "ThunderX-88XX", 2, ["asimd"]),
}
# Features each sample must NOT report: the ones that tell its class of runner apart.
ABSENT = {
    "x86_64-epyc-zen5-avx512.cpuinfo.txt": ["avx512_fp16", "amx_tile", "amx_int8", "amx_bf16"],
    "x86_64-xeon-broadwell-avx2.cpuinfo.txt": ["avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"],
    "aarch64-kunpeng920.lscpu.txt": ["sve2"],
    "aarch64-cavium-thunderx.cpuinfo.txt": ["asimddp", "i8mm", "sve", "sve2", "bf16", "asimdhp", "fphp"],
}
LIVE_KEYS = {"machine_id", "hostname", "arch", "vendor", "cpu_model", "cpu_signature", "isa", "flags_sha256",
             "logical_cpus", "physical_cores", "sockets", "memory_bytes", "memory_gib", "os", "kernel", "source"}


@pytest.fixture(autouse=True)
def no_machine_name_from_the_environment(monkeypatch):
    monkeypatch.delenv("QBENCH_MACHINE", raising=False)


def parse(name: str) -> dict:
    text = (FIXTURES / name).read_text()
    return qm.parse_cpuinfo(text) if ".cpuinfo." in name else qm.parse_lscpu(text)


def fixture_id(name: str, memory_bytes: int = 16 * GIB) -> str:
    return qm.machine_id(qm.fingerprint(parse(name), memory_bytes))


def cpuinfo_block(implementer: str, part: str, number: int = 0, features: str = "fp asimd") -> str:
    return (f"processor\t: {number}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: {implementer}\n"
            f"CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: {part}\nCPU revision\t: 1\n")


def test_every_fixture_is_covered():
    assert sorted(p.name for p in FIXTURES.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_the_recorded_machine(name):
    arch, vendor, model, cpus, isa = EXPECTED[name]
    parsed = parse(name)
    assert (parsed["arch"], parsed["vendor"], parsed["cpu_model"], parsed["logical_cpus"]) == (arch, vendor, model,
                                                                                                 cpus)
    assert qm.isa_features(parsed["arch"], parsed["flags"]) == isa
    assert parsed["flags"] == sorted(set(parsed["flags"]))
    assert not set(ABSENT.get(name, [])) & set(qm.isa_features(arch, parsed["flags"]))


def test_raw_flags_are_kept_whole():
    assert parse("aarch64-cavium-thunderx.cpuinfo.txt")["flags"] == sorted(
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics".split())
    zen5 = parse("x86_64-epyc-zen5-avx512.cpuinfo.txt")["flags"]
    assert len(zen5) == 106 and "avx512_vp2intersect" in zen5 and "fpu" in zen5
    # lscpu's Flags line on ARM, with SVE sub-features that are not in qbench's vocabulary.
    assert {"svei8mm", "svebf16", "sve2"} <= set(parse("aarch64-neoverse-v2-grace.lscpu.txt")["flags"])


def test_topology_from_lscpu_and_x86_cpuinfo():
    kunpeng = parse("aarch64-kunpeng920.lscpu.txt")
    assert (kunpeng["sockets"], kunpeng["cores_per_socket"], kunpeng["threads_per_core"]) == (4, 80, 1)
    grace = parse("aarch64-neoverse-v2-grace.lscpu.txt")  # "Socket(s): -" and cores counted per cluster
    assert (grace["sockets"], grace["cores_per_socket"], grace["threads_per_core"]) == (None, None, 1)
    broadwell = parse("x86_64-xeon-broadwell-avx2.cpuinfo.txt")
    assert (broadwell["sockets"], broadwell["cores_per_socket"], broadwell["threads_per_core"]) == (1, 16, 2)
    assert parse("aarch64-cavium-thunderx.cpuinfo.txt")["sockets"] is None


def test_zen5_cpuinfo_and_lscpu_agree():
    from_cpuinfo = parse("x86_64-epyc-zen5-avx512.cpuinfo.txt")
    from_lscpu = parse("x86_64-epyc-zen5-avx512.lscpu.txt")
    assert from_cpuinfo == from_lscpu
    assert from_cpuinfo["cpu_signature"] == "family 26 model 2"
    assert fixture_id("x86_64-epyc-zen5-avx512.cpuinfo.txt") == fixture_id("x86_64-epyc-zen5-avx512.lscpu.txt")


def test_machine_ids_differ_across_machines():
    ids = {name: fixture_id(name) for name in EXPECTED}
    machines = {name.split(".")[0] for name in EXPECTED}
    assert len(set(ids.values())) == len(machines) == 5
    for name, value in ids.items():
        assert SLUG.fullmatch(value), value
        assert value.startswith(EXPECTED[name][0] + "-")
    assert ids["x86_64-epyc-zen5-avx512.lscpu.txt"].startswith("x86_64-amd-epyc-2c-16g-")
    assert ids["x86_64-xeon-broadwell-avx2.cpuinfo.txt"].startswith("x86_64-intel-xeon-e5-2686-v4-32c-16g-")
    assert ids["aarch64-neoverse-v2-grace.lscpu.txt"].startswith("aarch64-neoverse-v2-64c-16g-")


def test_machine_id_follows_the_hardware_and_nothing_else():
    parsed = parse("x86_64-epyc-zen5-avx512.lscpu.txt")
    base = qm.machine_id(qm.fingerprint(parsed, 24 * GIB - 450 * 2**20))
    # Kernels reserve slightly different amounts of memory: the same GiB is the same machine.
    assert qm.machine_id(qm.fingerprint(parsed, 24 * GIB - 200 * 2**20)) == base
    assert qm.machine_id(qm.fingerprint(parsed, 32 * GIB)) != base
    changes = [
        {"logical_cpus": 4},
        {"cpu_model": "AMD EPYC 9R45"},
        {"vendor": "GenuineIntel"},
        {"cpu_signature": "family 25 model 17"},
        {"flags": [f for f in parsed["flags"] if f != "avx512_bf16"]},
        {"arch": "aarch64"},
    ]
    for change in changes:
        assert qm.machine_id(qm.fingerprint({**parsed, **change}, 24 * GIB - 450 * 2**20)) != base, change
    # Flags outside the ISA vocabulary (hypervisor, kernel-dependent ones) do not change the id.
    extra = {**parsed, "flags": parsed["flags"] + ["flush_l1d", "arch_capabilities"]}
    assert qm.machine_id(qm.fingerprint(extra, 24 * GIB - 450 * 2**20)) == base


def test_machine_id_ignores_spelling_of_the_model_name():
    parsed = parse("aarch64-cavium-thunderx.cpuinfo.txt")
    old_lscpu = {**parsed, "cpu_model": "ThunderX 88XX"}
    assert qm.machine_id(qm.fingerprint(parsed, 8 * GIB)) == qm.machine_id(qm.fingerprint(old_lscpu, 8 * GIB))


def test_machine_id_is_short_and_safe_for_any_model_name():
    parsed = {"arch": "x86_64", "vendor": "Weird/Vendor", "flags": ["avx2"], "logical_cpus": 512,
              "cpu_model": "Ünïcode (R) CPU ../../etc/passwd " + "Very Long Model Name " * 10}
    value = qm.machine_id(qm.fingerprint(parsed, 4096 * GIB))
    assert SLUG.fullmatch(value), value
    assert value.endswith("-512c-4096g-" + value[-6:]) and re.fullmatch(r"[0-9a-f]{6}", value[-6:])
    unknown = qm.machine_id(qm.fingerprint({}, 0))
    assert SLUG.fullmatch(unknown) and unknown.startswith("unknown-")


@pytest.mark.parametrize("implementer,part,vendor,model", [
    ("0x41", "0xd03", "ARM", "Cortex-A53"),
    ("0x41", "0xd05", "ARM", "Cortex-A55"),
    ("0x41", "0xd07", "ARM", "Cortex-A57"),
    ("0x41", "0xd08", "ARM", "Cortex-A72"),
    ("0x41", "0xd0b", "ARM", "Cortex-A76"),
    ("0x41", "0xd0c", "ARM", "Neoverse-N1"),
    ("0x41", "0xd40", "ARM", "Neoverse-V1"),
    ("0x41", "0xd49", "ARM", "Neoverse-N2"),
    ("0x41", "0xd4f", "ARM", "Neoverse-V2"),
    ("0x41", "0xd84", "ARM", "Neoverse-V3"),
    ("0x43", "0x0af", "Cavium", "ThunderX2-99xx"),
    ("0x48", "0xd01", "HiSilicon", "Kunpeng-920"),
    ("0xc0", "0xac3", "Ampere", "Ampere-1"),
    ("0x48", "0xd02", "HiSilicon", "ARM implementer 0x48 part 0xd02"),
    ("0x99", "0x123", "ARM implementer 0x99", "ARM implementer 0x99 part 0x123"),
])
def test_arm_parts_are_named(implementer, part, vendor, model):
    parsed = qm.parse_cpuinfo(cpuinfo_block(implementer, part))
    assert (parsed["arch"], parsed["vendor"], parsed["cpu_model"]) == ("aarch64", vendor, model)


def test_big_little_cpuinfo_names_both_core_types():
    text = "\n".join(cpuinfo_block("0x41", "0xd05", n) for n in range(4))
    text += "\n" + "\n".join(cpuinfo_block("0x41", "0xd0b", n) for n in range(4, 6))
    parsed = qm.parse_cpuinfo(text)
    assert (parsed["cpu_model"], parsed["logical_cpus"]) == ("Cortex-A55 + Cortex-A76", 6)


def test_old_lscpu_with_raw_arm_codes_is_decoded():
    parsed = qm.parse_lscpu("Architecture: aarch64\nCPU(s): 16\nVendor ID: 0x41\nModel: 0xd0c\n"
                            "Flags: fp asimd asimddp\n")
    assert (parsed["vendor"], parsed["cpu_model"], parsed["logical_cpus"]) == ("ARM", "Neoverse-N1", 16)
    assert qm.isa_features("aarch64", parsed["flags"]) == ["asimd", "asimddp"]


def test_isa_aliases_and_unknown_arch():
    assert qm.isa_features("aarch64", ["neon", "dotprod", "i8mm", "sha2"]) == ["asimd", "asimddp", "i8mm"]
    assert qm.isa_features("x86_64", ["AVX2", "avx512_vnni", "amx_int8", "sse4_1"]) == ["amx_int8", "avx2",
                                                                                         "avx512_vnni"]
    assert qm.isa_features("x86_64", ["asimd"]) == []
    assert qm.isa_features("riscv64", ["avx2", "asimd"]) == []


def test_unrecognised_text_parses_to_nothing():
    assert qm.parse_cpuinfo("")["arch"] is None
    assert qm.parse_lscpu("no colons here")["arch"] is None


def test_collect_machine_on_this_machine():
    machine = qm.collect_machine()
    assert set(machine) == LIVE_KEYS
    assert json.loads(json.dumps(machine)) == machine
    expected_arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine())
    assert machine["arch"] == expected_arch
    baseline = {"x86_64": "avx2", "aarch64": "asimd"}[machine["arch"]]
    assert baseline in machine["isa"]
    assert SLUG.fullmatch(machine["machine_id"]) and machine["machine_id"].startswith(machine["arch"] + "-")
    assert machine["hostname"] == socket.gethostname()
    assert machine["hostname"] not in machine["machine_id"]
    assert machine["memory_bytes"] == psutil.virtual_memory().total
    assert machine["logical_cpus"] == psutil.cpu_count(logical=True)
    assert machine["physical_cores"] >= 1 and re.fullmatch(r"[0-9a-f]{64}", machine["flags_sha256"])
    assert machine["source"] == ("cpuinfo+lscpu" if shutil.which("lscpu") else "cpuinfo")
    assert machine["kernel"] == platform.release() and machine["os"].startswith(platform.system())
    assert qm.collect_machine()["machine_id"] == machine["machine_id"]


def test_hostname_is_recorded_but_not_identity(monkeypatch):
    monkeypatch.setattr(qm.socket, "gethostname", lambda: "ci-runner-1a2b3c")
    first = qm.collect_machine()
    monkeypatch.setattr(qm.socket, "gethostname", lambda: "ci-runner-9z8y7x")
    second = qm.collect_machine()
    assert (first["hostname"], second["hostname"]) == ("ci-runner-1a2b3c", "ci-runner-9z8y7x")
    assert first["machine_id"] == second["machine_id"]


def test_identity_does_not_depend_on_lscpu_being_installed(monkeypatch):
    with_lscpu = qm.collect_machine()
    monkeypatch.setattr(qm, "_LSCPU", "qbench-no-such-lscpu")
    without = qm.collect_machine()
    assert without["source"] == "cpuinfo"
    assert without["machine_id"] == with_lscpu["machine_id"]


def test_collect_machine_reads_the_cpuinfo_file(monkeypatch):
    monkeypatch.setattr(qm, "_CPUINFO_PATH", str(FIXTURES / "aarch64-cavium-thunderx.cpuinfo.txt"))
    monkeypatch.setattr(qm, "_LSCPU", "qbench-no-such-lscpu")
    machine = qm.collect_machine()
    assert (machine["arch"], machine["cpu_model"], machine["isa"], machine["logical_cpus"]) == (
        "aarch64", "ThunderX-88XX", ["asimd"], 2)
    assert machine["machine_id"].startswith("aarch64-thunderx-88xx-2c-")


def test_without_cpuinfo_falls_back_to_platform(monkeypatch, tmp_path):
    monkeypatch.setattr(qm, "_CPUINFO_PATH", str(tmp_path / "no-cpuinfo"))
    monkeypatch.setattr(qm, "_LSCPU", "qbench-no-such-lscpu")
    machine = qm.collect_machine()
    assert machine["source"] == "platform"
    assert machine["isa"] == [] and machine["logical_cpus"] == psutil.cpu_count(logical=True)
    assert SLUG.fullmatch(machine["machine_id"]) and machine["machine_id"].startswith(machine["arch"] + "-")
    assert json.loads(json.dumps(machine)) == machine


@pytest.mark.parametrize("name", ["Bad Name", "UPPER", "../escape", "a/b", "", ".hidden", "-dash", "x" * 81, "é"])
def test_bad_name_is_a_config_error(name):
    with pytest.raises(ConfigError) as caught:
        qm.collect_machine(name)
    assert "\n" not in str(caught.value) and "machine name" in str(caught.value)


def test_good_name_replaces_the_derived_id():
    machine = qm.collect_machine("ci.c7i-2xlarge_v2")
    assert machine["machine_id"] == "ci.c7i-2xlarge_v2"
    assert machine["cpu_model"] == qm.collect_machine()["cpu_model"]


def test_qbench_machine_variable_is_honoured(monkeypatch):
    derived = qm.collect_machine()["machine_id"]
    monkeypatch.setenv("QBENCH_MACHINE", "lab-box-7")
    assert qm.collect_machine()["machine_id"] == "lab-box-7"
    assert qm.collect_machine("explicit")["machine_id"] == "explicit"
    monkeypatch.setenv("QBENCH_MACHINE", "Lab Box 7")
    with pytest.raises(ConfigError, match="QBENCH_MACHINE"):
        qm.collect_machine()
    monkeypatch.setenv("QBENCH_MACHINE", "")
    assert qm.collect_machine()["machine_id"] == derived


def test_describe_is_short_and_names_the_machine():
    machine = qm.collect_machine()
    text = qm.describe(machine)
    lines = text.splitlines()
    assert 5 <= len(lines) <= 10
    assert lines[0].split() == ["machine", machine["machine_id"]]
    assert machine["cpu_model"] in text and machine["hostname"] in text and " ".join(machine["isa"]) in text
    assert "GiB" in text and machine["source"] in text


def test_importing_machine_never_imports_torch():
    import subprocess
    import sys
    code = "import sys, qbench.launch.machine; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent).returncode == 0
