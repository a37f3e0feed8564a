"""Expand a SuiteSpec into the ordered list of cases to run, against a Catalog of what this machine's torch and
torchvision offer. Cases the catalog already rules out carry a skip reason; they are recorded, never run.
Pure: the catalog is data gathered once by a worker (qbench.runner.catalog)."""

from __future__ import annotations

import difflib
import fnmatch
import itertools
from dataclasses import dataclass, field

from qbench.errors import ConfigError
from qbench.suite.qconfig_names import qconfig_skip_reason
from qbench.records import BF16_ISA, ENGINELESS_MODES, ENGINES, MODES, Case
from qbench.suite.profiles import RUNNERS, unavailable_reason
from qbench.suite.load import MatrixSpec, SuiteSpec

__all__ = ["Catalog", "PlannedCase", "expand", "custom_model_names", "skip_reason"]

NEEDS_QUANTIZABLE = ("static_eager", "prequantized")


@dataclass(frozen=True)
class Catalog:
    """models: name -> {"quantizable": bool, "input_size": int, "tags": [..]}; engines: name -> None if a tiny
    quantized op ran under it, else the reason it did not; environment: versions seen by the probing worker;
    modes: mode -> engine -> None if that mode has what it needs under the engine here, else the reason (pt2e: a
    torchao quantizer for the engine), asked only for the modes a suite names."""

    models: dict
    engines: dict
    environment: dict
    modes: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> Catalog:
        return cls(models=data["models"], engines=data["engines"], environment=data.get("environment", {}),
                   modes=data.get("modes", {}))


@dataclass(frozen=True)
class PlannedCase:
    case: Case
    skip_reason: str | None = None


def custom_model_names(spec: SuiteSpec) -> list[str]:
    """`package.module:factory` entries, which the catalog must resolve by importing them."""
    return sorted({m for matrix in spec.matrices for m in matrix.models if ":" in m})


def expand(spec: SuiteSpec, catalog: Catalog, machine: dict | None = None) -> list[PlannedCase]:
    """machine: the fingerprint runner profiles are checked against (None: every profile is assumed possible)."""
    planned: dict[str, PlannedCase] = {}
    for index, matrix in enumerate(spec.matrices):
        for model in _select_models(matrix, catalog, f"[[matrix]] {index + 1}"):
            for plan in _cases_for(model, matrix, spec, catalog, machine):
                planned.setdefault(plan.case.case_id, plan)
    return sorted(planned.values(), key=lambda p: _order(p.case))


def _select_models(matrix: MatrixSpec, catalog: Catalog, where: str) -> list[str]:
    names = sorted(n for n in catalog.models if ":" not in n)
    chosen: list[str] = []
    for pattern in matrix.models:
        if ":" in pattern:
            hits = [pattern] if pattern in catalog.models else []
        else:
            hits = fnmatch.filter(names, pattern)
        if not hits:
            close = difflib.get_close_matches(pattern, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; {len(names)} models are known (qbench models)"
            raise ConfigError(f"{where}: model {pattern!r} matches no model{hint}")
        chosen.extend(h for h in hits if h not in chosen)
    chosen = [m for m in chosen if not any(fnmatch.fnmatch(m, ex) for ex in matrix.exclude)]
    required = set(matrix.tags)
    return [m for m in chosen if required <= set(catalog.models[m].get("tags", ()))]


def _cases_for(model: str, matrix: MatrixSpec, spec: SuiteSpec, catalog: Catalog, machine: dict | None):
    info = catalog.models[model]
    axes = itertools.product(matrix.modes, matrix.batch_sizes, matrix.threads, matrix.weights, matrix.runners,
                             matrix.qconfigs)
    for mode, batch, threads, weights, runner, qconfig in axes:
        if mode in ENGINELESS_MODES and qconfig != "default":
            continue  # one fp32 parent serves every qconfig of the sweep
        for engine in [None] if mode in ENGINELESS_MODES else matrix.engines:
            case = Case(model=model, mode=mode, engine=engine, batch_size=batch, threads=threads, weights=weights,
                        qconfig=qconfig, calibration=spec.calibration, runner=runner,
                        qat=spec.qat if mode == "qat" else None)
            reason = (unavailable_reason(runner, machine) or mode_unavailable_reason(mode, machine)) if machine else None
            yield PlannedCase(case, reason or skip_reason(case, info, catalog))


def mode_unavailable_reason(mode: str, machine: dict) -> str | None:
    """Why this machine's ISA cannot run `mode` as meant (fp32_bf16 without bf16 instructions), or None."""
    if mode != "fp32_bf16":
        return None
    wanted = BF16_ISA.get(machine.get("arch"), ())
    if not any(feature in (machine.get("isa") or []) for feature in wanted):
        return (f"fp32_bf16 needs bf16 instructions ({' or '.join(wanted) or 'none known on ' + str(machine.get('arch'))}),"
                f" which this machine lacks: oneDNN would compute in fp32")
    return None


def skip_reason(case: Case, info: dict, catalog: Catalog) -> str | None:
    """Why the catalog already rules this case out, or None."""
    reason = qconfig_skip_reason(case.mode, case.qconfig)
    if reason:
        return reason
    if case.engine is not None:
        reason = catalog.engines.get(case.engine, "engine was not probed")
        if reason:
            return f"engine {case.engine} does not work here: {reason}"
        reason = catalog.modes.get(case.mode, {}).get(case.engine)
        if reason:
            return reason
    if case.mode in NEEDS_QUANTIZABLE and not info.get("quantizable"):
        return f"{case.model} has no quantizable variant in torchvision.models.quantization"
    return None


def _order(case: Case):
    engine_rank = -1 if case.engine is None else ENGINES.index(case.engine)
    return (case.model, RUNNERS.index(case.runner), MODES.index(case.mode), engine_rank, case.batch_size,
            case.threads, case.weights, case.qconfig != "default", case.qconfig)
