"""Runner profiles: the ISA a case's worker is allowed to use. `native` is the machine as it is; `avx2` caps an
x86 machine with AVX-512/AMX to what an AVX2-only runner has, through the variables ATen, oneDNN, FBGEMM and MKL
read at start-up. The worker checks that a cap took effect (qbench.runner.probes.kernels); a cap that did not is a
failed case, never a silent native run. On a machine that already lacks everything a profile caps (an AVX2-only host
under `avx2`), the profile is the native machine: its cases are skipped with that reason and measured once, under
`native`, rather than filed as a second series of the same kernels.

The caps cannot hide CPUID, and torch's x86 engine picks oneDNN for int8 convolutions from CPUID (AVX512-VNNI):
capped to AVX2 it would run oneDNN's AVX2 kernels, which no real AVX2 host runs. There the x86 engine runs FBGEMM, so
under `avx2` the worker runs x86-engine cases on FBGEMM's kernels (`x86_kernels_under_cap`), records the
substitution, and fails a case whose int8 convolution still ran anything else. Stdlib only."""

from __future__ import annotations

from dataclasses import dataclass, field

from qbench.errors import ConfigError

__all__ = ["RunnerProfile", "PROFILES", "RUNNERS", "profile", "unavailable_reason", "EXPECTED_INT8_CONV"]

# What library runs an int8 convolution on a real host of the profile, per engine (recorded on a real AVX2-only
# EPYC, ../shared/fixtures/records/avx2-amd-epyc-zen3): checked in the worker for engine-packed modes.
EXPECTED_INT8_CONV = {"avx2": {"x86": "fbgemm", "fbgemm": "fbgemm", "qnnpack": "qnnpack"}}


@dataclass(frozen=True)
class RunnerProfile:
    name: str
    env: dict = field(default_factory=dict)
    arch: str | None = None                 # None: any architecture
    requires_isa: tuple[str, ...] = ()      # features the machine must have for the profile to mean anything
    cpu_capability: str | None = None       # what torch.backends.cpu.get_cpu_capability() must then say
    onednn_isa: str | None = None           # substring of oneDNN's "isa:" verbose line
    capped_isa: tuple[str, ...] = ()        # features the cap hides: a machine with none of them IS this profile


PROFILES = {
    "native": RunnerProfile("native"),
    "avx2": RunnerProfile(
        "avx2",
        env={"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
        arch="x86_64", requires_isa=("avx2",), cpu_capability="AVX2", onednn_isa="AVX2",
        capped_isa=("avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16")),
}
RUNNERS = tuple(PROFILES)


def profile(name: str) -> RunnerProfile:
    if name not in PROFILES:
        raise ConfigError(f"unknown runner {name!r}; allowed: {', '.join(RUNNERS)}")
    return PROFILES[name]


def unavailable_reason(name: str, machine: dict) -> str | None:
    """Why this machine cannot emulate the profile (a skip reason), or None."""
    wanted = profile(name)
    if wanted.arch and machine.get("arch") != wanted.arch:
        return f"runner {name} needs an {wanted.arch} machine, this one is {machine.get('arch')}"
    isa = machine.get("isa") or []
    missing = [f for f in wanted.requires_isa if f not in isa]
    if missing:
        return f"runner {name} needs {', '.join(missing)}, which this machine lacks"
    if wanted.capped_isa and not any(f in isa for f in wanted.capped_isa):
        return (f"this machine has none of the features runner {name} caps ({', '.join(wanted.capped_isa)}): "
                f"it is the native machine, measured once under runner native")
    return None
