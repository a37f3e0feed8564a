"""Runner profiles: the ISA a case's worker is allowed to use. `native` is the machine as it is; `avx2` caps an
x86 machine with AVX-512/AMX to what an AVX2-only runner has, through the variables ATen, oneDNN, FBGEMM and MKL
read at start-up. The worker checks that a cap took effect (qbench.runner.probes.kernels); a cap that did not is a
failed case, never a silent native run. Stdlib only."""

from __future__ import annotations

from dataclasses import dataclass, field

from qbench.errors import ConfigError

__all__ = ["RunnerProfile", "PROFILES", "RUNNERS", "profile", "unavailable_reason"]


@dataclass(frozen=True)
class RunnerProfile:
    name: str
    env: dict = field(default_factory=dict)
    arch: str | None = None                 # None: any architecture
    requires_isa: tuple[str, ...] = ()      # features the machine must have for the profile to mean anything
    cpu_capability: str | None = None       # what torch.backends.cpu.get_cpu_capability() must then say
    onednn_isa: str | None = None           # substring of oneDNN's "isa:" verbose line


PROFILES = {
    "native": RunnerProfile("native"),
    "avx2": RunnerProfile(
        "avx2",
        env={"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
             "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
        arch="x86_64", requires_isa=("avx2",), cpu_capability="AVX2", onednn_isa="AVX2"),
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
    missing = [f for f in wanted.requires_isa if f not in (machine.get("isa") or [])]
    if missing:
        return f"runner {name} needs {', '.join(missing)}, which this machine lacks"
    return None
