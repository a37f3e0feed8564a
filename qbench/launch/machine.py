"""Say which machine measured a number: a fingerprint of its CPU and memory, and the readable machine_id made from it.

Stdlib and psutil only (never torch): the parent process names the results folder before any worker starts.
The id covers the hardware type (arch, vendor, CPU model, x86 family/model, int8-relevant ISA features, logical CPUs,
memory in GiB), never the hostname or kernel: ephemeral CI runners of one type share a history, other hardware never.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import socket
import subprocess

import psutil

from qbench.errors import ConfigError
from qbench.records import canonical_json

__all__ = ["X86_ISA", "ARM_ISA", "parse_cpuinfo", "parse_lscpu", "isa_features", "fingerprint", "machine_id",
           "collect_machine", "describe"]

# qbench's vocabulary of int8-relevant features. Each entry maps a feature to the raw flag names that mean it.
X86_ISA = {name: (name,) for name in (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni",
    "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")}
ARM_ISA = {
    "asimd": ("asimd", "neon"),
    "asimddp": ("asimddp", "dotprod"),
    "i8mm": ("i8mm",),
    "sve": ("sve",),
    "sve2": ("sve2",),
    "bf16": ("bf16",),
    "asimdhp": ("asimdhp",),
    "fphp": ("fphp",),
}

# ARM implementer codes (MIDR bits 31..24) and part numbers (bits 15..4); names follow util-linux lscpu so that
# /proc/cpuinfo and lscpu name the same core alike.
ARM_IMPLEMENTERS = {
    0x41: "ARM", 0x42: "Broadcom", 0x43: "Cavium", 0x46: "FUJITSU", 0x48: "HiSilicon", 0x4E: "NVIDIA",
    0x50: "APM", 0x51: "Qualcomm", 0x53: "Samsung", 0x56: "Marvell", 0x61: "Apple", 0x69: "Intel",
    0x6D: "Microsoft", 0x70: "Phytium", 0xC0: "Ampere",
}
ARM_PARTS = {
    0x41: {0xD03: "Cortex-A53", 0xD04: "Cortex-A35", 0xD05: "Cortex-A55", 0xD07: "Cortex-A57", 0xD08: "Cortex-A72",
           0xD09: "Cortex-A73", 0xD0A: "Cortex-A75", 0xD0B: "Cortex-A76", 0xD0C: "Neoverse-N1", 0xD0D: "Cortex-A77",
           0xD40: "Neoverse-V1", 0xD41: "Cortex-A78", 0xD44: "Cortex-X1", 0xD46: "Cortex-A510",
           0xD47: "Cortex-A710", 0xD48: "Cortex-X2", 0xD49: "Neoverse-N2", 0xD4A: "Neoverse-E1",
           0xD4B: "Cortex-A78C", 0xD4D: "Cortex-A715", 0xD4E: "Cortex-X3", 0xD4F: "Neoverse-V2",
           0xD80: "Cortex-A520", 0xD81: "Cortex-A720", 0xD82: "Cortex-X4", 0xD83: "Neoverse-V3AE",
           0xD84: "Neoverse-V3", 0xD85: "Cortex-X925", 0xD87: "Cortex-A725", 0xD8E: "Neoverse-N3"},
    0x42: {0x516: "ThunderX2"},
    0x43: {0x0A1: "ThunderX-88XX", 0x0A2: "ThunderX-81XX", 0x0A3: "ThunderX-83XX", 0x0AF: "ThunderX2-99xx",
           0x0B8: "ThunderX3-T110"},
    0x46: {0x001: "A64FX"},
    0x48: {0xD01: "Kunpeng-920"},
    0x4E: {0x000: "Denver", 0x003: "Denver-2", 0x004: "Carmel"},
    0x50: {0x000: "X-Gene"},
    0x51: {0x800: "Falkor-V1/Kryo", 0x801: "Kryo-V2", 0x802: "Kryo-3XX-Gold", 0x803: "Kryo-3XX-Silver",
           0x804: "Kryo-4XX-Gold", 0x805: "Kryo-4XX-Silver", 0xC00: "Falkor", 0xC01: "Saphira"},
    0x61: {0x022: "Icestorm-M1", 0x023: "Firestorm-M1", 0x024: "Icestorm-M1-Pro", 0x025: "Firestorm-M1-Pro",
           0x028: "Icestorm-M1-Max", 0x029: "Firestorm-M1-Max", 0x032: "Blizzard-M2", 0x033: "Avalanche-M2"},
    0xC0: {0xAC3: "Ampere-1", 0xAC4: "Ampere-1a", 0xAC5: "Ampere-1b"},
}

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,79}")
# Words in x86 model names that make a slug longer without telling machines apart (the hash still sees them).
_MODEL_NOISE = re.compile(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|\b\d+-core\b|@.*$", re.IGNORECASE)
_MAX_ID = 80
_CPUINFO_PATH = "/proc/cpuinfo"
_LSCPU = "lscpu"


def _empty(arch: str | None = None) -> dict:
    return {"arch": arch, "vendor": None, "cpu_model": None, "cpu_signature": None, "flags": [],
            "logical_cpus": None, "sockets": None, "cores_per_socket": None, "threads_per_core": None}


def _int(value: str | None, base: int = 10) -> int | None:
    try:
        return int(value, base) if value is not None else None
    except ValueError:
        return None


def _common_flags(lines: list[str]) -> list[str]:
    """Flags every CPU (or CPU type) reports: what code may rely on wherever the scheduler puts it."""
    sets = [set(line.split()) for line in lines]
    return sorted(set.intersection(*sets)) if sets else []


def _x86_signature(family: str | None, model: str | None) -> str | None:
    """x86 CPUID family and model: they tell apart generations whose model name a hypervisor masks ("AMD EPYC")."""
    return f"family {family} model {model}" if family and model else None


def _arm_names(implementer: int | None, part: int | None) -> tuple[str | None, str | None]:
    """(vendor, cpu_model) for an ARM implementer/part pair; unknown parts get a name that still tells them apart."""
    if implementer is None:
        return None, None
    vendor = ARM_IMPLEMENTERS.get(implementer, f"ARM implementer 0x{implementer:02x}")
    if part is None:
        return vendor, None
    model = ARM_PARTS.get(implementer, {}).get(part) or f"ARM implementer 0x{implementer:02x} part 0x{part:03x}"
    return vendor, model


def _join_models(names) -> str | None:
    """One model name, or "A + B" for machines with several core types (big.LITTLE)."""
    distinct = sorted({name for name in names if name})
    return " + ".join(distinct) if distinct else None


def parse_cpuinfo(text: str) -> dict:
    """Read /proc/cpuinfo of an x86_64 or aarch64 Linux machine into qbench's CPU fields.

    Keys: arch, vendor, cpu_model, cpu_signature, flags (sorted raw names), logical_cpus, sockets, cores_per_socket,
    threads_per_core; None where the text does not say (ARM cpuinfo has no topology; unknown text has no arch).
    """
    blocks = []
    for chunk in re.split(r"\n\s*\n", text):
        block = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                block.setdefault(key.strip(), value.strip())
        if block:
            blocks.append(block)
    processors = [b for b in blocks if b.get("processor", "").isdigit()]
    if any("vendor_id" in b or "flags" in b for b in blocks):
        return _parse_x86_cpuinfo(blocks, processors)
    if any("CPU implementer" in b or "Features" in b for b in blocks):
        return _parse_arm_cpuinfo(blocks, processors)
    return {**_empty(), "logical_cpus": len(processors) or None}


def _parse_x86_cpuinfo(blocks: list[dict], processors: list[dict]) -> dict:
    first = processors[0] if processors else blocks[0]
    packages = {b["physical id"]: _int(b.get("siblings")) or 0 for b in processors if "physical id" in b}
    cores, siblings = _int(first.get("cpu cores")), _int(first.get("siblings"))
    # siblings counts the logical CPUs of a package, so an excerpt of /proc/cpuinfo still gives the machine's size.
    logical = max(len(processors), sum(packages.values())) or None
    return {
        **_empty("x86_64"),
        "vendor": first.get("vendor_id"),
        "cpu_model": _join_models(" ".join(b.get("model name", "").split()) for b in processors or blocks),
        "cpu_signature": _x86_signature(first.get("cpu family"), first.get("model")),
        "flags": _common_flags([b["flags"] for b in blocks if "flags" in b]),
        "logical_cpus": logical,
        "sockets": len(packages) or None,
        "cores_per_socket": cores,
        "threads_per_core": siblings // cores if cores and siblings else None,
    }


def _parse_arm_cpuinfo(blocks: list[dict], processors: list[dict]) -> dict:
    # Old arm64 kernels print implementer and part once, in a block without "processor": read every block.
    pairs = [(_int(b.get("CPU implementer"), 16), _int(b.get("CPU part"), 16)) for b in blocks
             if "CPU implementer" in b]
    names = [_arm_names(impl, part) for impl, part in pairs]
    return {
        **_empty("aarch64"),
        "vendor": _join_models(vendor for vendor, _ in names),
        "cpu_model": _join_models(model for _, model in names),
        "flags": _common_flags([b["Features"] for b in blocks if "Features" in b]),
        "logical_cpus": len(processors) or None,
    }


def parse_lscpu(text: str) -> dict:
    """Read plain `lscpu` output (LC_ALL=C) into the same fields as parse_cpuinfo."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values.setdefault(key.strip(), []).append(value.strip())

    def first(key: str) -> str | None:
        found = [v for v in values.get(key, []) if v and v != "-"]
        return found[0] if found else None

    flags = values.get("Flags", [])
    arch = first("Architecture")
    if arch is None and flags:
        arch = "aarch64" if "asimd" in flags[0].split() else "x86_64"
    arch = _ARCH_ALIASES.get(arch.lower(), arch) if arch else None
    vendor, model = first("Vendor ID"), _join_models(v for v in values.get("Model name", []) if v != "-")
    if vendor and vendor.lower().startswith("0x"):
        # An lscpu too old to know this implementer prints raw codes; decode them like cpuinfo does.
        vendor, decoded = _arm_names(_int(vendor, 16), _int(first("Model"), 16))
        model = model or decoded
    return {
        "arch": arch,
        "vendor": vendor,
        "cpu_model": model or first("BIOS Model name"),
        # On ARM lscpu's "Model" is the core's revision, not its part number: no signature there.
        "cpu_signature": _x86_signature(first("CPU family"), first("Model")) if arch == "x86_64" else None,
        "flags": _common_flags(flags),
        "logical_cpus": _int(first("CPU(s)")),
        "sockets": _int(first("Socket(s)")),
        "cores_per_socket": _int(first("Core(s) per socket")),
        "threads_per_core": _int(first("Thread(s) per core")),
    }


def isa_features(arch: str, flags) -> list[str]:
    """The int8-relevant features among raw flags, sorted, in qbench's names (see X86_ISA and ARM_ISA)."""
    table = {"x86_64": X86_ISA, "aarch64": ARM_ISA}.get(arch, {})
    present = {flag.lower() for flag in flags or ()}
    return sorted(name for name, raw in table.items() if present.intersection(raw))


def fingerprint(parsed: dict, memory_bytes: int) -> dict:
    """The fields that make up a machine's identity, from parsed CPU fields and total memory."""
    arch = parsed.get("arch") or "unknown"
    return {
        "arch": arch,
        "vendor": parsed.get("vendor") or "unknown",
        "cpu_model": parsed.get("cpu_model") or "unknown",
        "cpu_signature": parsed.get("cpu_signature"),
        "isa": isa_features(arch, parsed.get("flags")),
        "logical_cpus": int(parsed.get("logical_cpus") or 0),
        "memory_gib": round((memory_bytes or 0) / 2**30),
    }


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._]+", "-", text.lower()).strip("-._")


def machine_id(fp: dict) -> str:
    """A readable, filesystem-safe id such as x86_64-amd-epyc-2c-24g-1a2b3c: same hardware type, same id."""
    identity = {
        **fp,
        # Spelling differences between tools ("ThunderX 88XX" / "ThunderX-88XX", case, spaces) are not hardware.
        "vendor": _slug(fp["vendor"]),
        "cpu_model": re.sub(r"[^a-z0-9]+", "-", fp["cpu_model"].lower()).strip("-"),
        "isa": sorted(fp["isa"]),
    }
    digest = hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:6]
    tail = f"-{fp['logical_cpus']}c-{fp['memory_gib']}g-{digest}"
    model = _slug(_MODEL_NOISE.sub(" ", fp["cpu_model"])) or "cpu"
    head = f"{_slug(fp['arch']) or 'unknown'}-{model}"[:_MAX_ID - len(tail)].rstrip("-._")
    return head + tail


def _read_cpuinfo() -> dict | None:
    try:
        with open(_CPUINFO_PATH, encoding="utf-8", errors="replace") as handle:
            parsed = parse_cpuinfo(handle.read())
    except OSError:
        return None
    return parsed if parsed["arch"] else None


def _run_lscpu() -> dict | None:
    executable = shutil.which(_LSCPU)
    if executable is None:
        return None
    try:
        done = subprocess.run([executable], capture_output=True, text=True, timeout=10, check=False,
                              env={**os.environ, "LC_ALL": "C", "LANG": "C"})
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    parsed = parse_lscpu(done.stdout)
    return parsed if parsed["arch"] else None


def _from_platform() -> dict:
    machine = platform.machine()
    return {**_empty(_ARCH_ALIASES.get(machine.lower(), machine) or None),
            "cpu_model": platform.processor() or None, "logical_cpus": psutil.cpu_count(logical=True)}


def _os_name() -> str:
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME")
    except OSError:
        pretty = None
    return f"{platform.system()} ({pretty})" if pretty else platform.system() or "unknown"


def _check_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{where} {name!r} is not a safe machine name: use 1-80 characters from a-z 0-9 . _ -, "
                          f"starting with a letter or digit")
    return name


def collect_machine(name: str | None = None) -> dict:
    """Describe the live machine as a JSON-able dict. `name` (or $QBENCH_MACHINE) replaces the derived machine_id."""
    if name is not None:
        name = _check_name(name, "machine name")
    elif os.environ.get("QBENCH_MACHINE"):
        name = _check_name(os.environ["QBENCH_MACHINE"], "QBENCH_MACHINE")
    cpuinfo, lscpu = _read_cpuinfo(), _run_lscpu()
    # /proc/cpuinfo decides identity fields whenever it exists, so whether lscpu is installed never changes the id.
    parsed = cpuinfo or lscpu or _from_platform()
    source = "+".join(label for label, found in (("cpuinfo", cpuinfo), ("lscpu", lscpu)) if found) or "platform"
    topology = {key: parsed[key] if parsed[key] is not None else (lscpu or {}).get(key)
                for key in ("sockets", "cores_per_socket", "threads_per_core")}
    parsed = {**parsed, "logical_cpus": parsed["logical_cpus"] or psutil.cpu_count(logical=True)}
    memory = psutil.virtual_memory().total
    fp = fingerprint(parsed, memory)
    physical = psutil.cpu_count(logical=False)
    if physical is None and topology["sockets"] and topology["cores_per_socket"]:
        physical = topology["sockets"] * topology["cores_per_socket"]
    return {
        "machine_id": name or machine_id(fp),
        "hostname": socket.gethostname(),
        "arch": fp["arch"],
        "vendor": parsed["vendor"],
        "cpu_model": parsed["cpu_model"],
        "cpu_signature": parsed["cpu_signature"],
        "isa": fp["isa"],
        "flags_sha256": hashlib.sha256(" ".join(sorted(parsed["flags"])).encode()).hexdigest(),
        "logical_cpus": parsed["logical_cpus"],
        "physical_cores": physical,
        "sockets": topology["sockets"],
        "memory_bytes": memory,
        "memory_gib": fp["memory_gib"],
        "os": _os_name(),
        "kernel": platform.release(),
        "source": source,
    }


def describe(machine: dict) -> str:
    """A few lines for people: what `qbench machine` prints."""
    cores = [f"{machine.get('logical_cpus')} logical"]
    if machine.get("physical_cores"):
        cores.append(f"{machine['physical_cores']} physical")
    if machine.get("sockets"):
        cores.append(f"{machine['sockets']} socket{'s' if machine['sockets'] != 1 else ''}")
    memory = machine.get("memory_bytes")
    rows = [
        ("machine", machine.get("machine_id")),
        ("cpu", f"{machine.get('cpu_model') or 'unknown'} ({machine.get('vendor') or 'unknown vendor'}, "
                f"{machine.get('arch')})"),
        ("cores", ", ".join(cores)),
        ("memory", f"{memory / 2**30:.1f} GiB" if memory else "unknown"),
        ("isa", " ".join(machine.get("isa") or []) or "none detected"),
        ("os", f"{machine.get('os')}, kernel {machine.get('kernel')}"),
        ("host", f"{machine.get('hostname')} (not part of the id)"),
        ("source", machine.get("source")),
    ]
    return "\n".join(f"{label:<8} {value}" for label, value in rows)
