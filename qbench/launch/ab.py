"""Paired, interleaved A/B measurement (`qbench ab`): every case runs on side A and on side B in alternating fresh
processes (A B, B A, A B, ...) within the same minutes; each pair's two per-process latency medians give one
log-ratio, and qbench.stats.paired turns the pairs into a ratio B/A with a confidence interval and a verdict.

The sides (git worktrees, environments, other interpreters, the origin checks) are qbench.launch.ab_sides. Each side
has its own worker pool. Every measurement reports where its qbench (and custom model module) was imported from and
at which commit (qbench/runner/ab_probe.py); a side that ran any other code is an InfraError, never a silent figure.
Each side's first measurement of a case also reports its model's output on the case's example, and B's output is
compared with A's (SQNR, top-1 agreement): a changed output is told apart from a slowdown.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import os
import statistics
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

import qbench
from qbench.launch.ab_sides import ORIGIN_KEY, OUTPUT_KEY, PROBE_MODULE, CodeSide
from qbench.stats.paired import PairedComparison, compare_pairs, min_pairs
from qbench.plan.expand import Catalog, PlannedCase, custom_model_names, expand
from qbench.errors import ConfigError, InfraError
from qbench.launch.machine import collect_machine
from qbench.records import Case, RunRecord
from qbench.launch.session import Session
from qbench.history.store import utc_now
from qbench.suite.load import SuiteSpec
from qbench.thresholds import parse_threshold

__all__ = ["ABSettings", "Pair", "CaseComparison", "ABReport", "run_ab", "parse_latency_threshold",
           "latency_threshold", "is_regression", "output_changed", "compare_outputs", "pair_values",
           "with_sample_seconds", "DEFAULT_SECONDS", "DEFAULT_ALPHA", "DEFAULT_MIN_SQNR_DB", "STATISTICS"]

DEFAULT_SECONDS = 60.0
DEFAULT_ALPHA = 0.01
PREFLIGHT_TIMEOUT_S = 300.0
STATISTICS = ("median", "min", "cpu")
DEFAULT_MIN_SQNR_DB = 40.0


@dataclass(frozen=True)
class ABSettings:
    """pairs: a fixed number of pairs per case; else seconds: the measuring budget per case (both sides), spent
    after `warmup_pairs` discarded pairs. alpha: the false-alarm probability of a verdict, both directions.
    statistic: what one process contributes: the median of its latency samples, its fastest sample, or the median
    of its CPU-time samples (`cpu`: CPU seconds per inference, which a descheduled process does not spend)."""

    pairs: int | None = None
    seconds: float | None = None
    alpha: float = DEFAULT_ALPHA
    warmup_pairs: int = 1
    statistic: str = "median"

    def __post_init__(self):
        if self.statistic not in STATISTICS:
            raise ConfigError(f"unknown per-process statistic {self.statistic!r}; allowed: {', '.join(STATISTICS)}")
        if self.pairs is not None and self.seconds is not None:
            raise ConfigError("give --pairs or --seconds-per-pair, not both")
        if not 0 < self.alpha < 0.5:
            raise ConfigError(f"the false-alarm level must be between 0 and 0.5, got {self.alpha}")
        least = min_pairs(self.alpha)
        if self.pairs is not None and self.pairs < least:
            raise ConfigError(f"--pairs must be at least {least} for a {100 * (1 - self.alpha):g}% interval, "
                              f"got {self.pairs}")
        if self.seconds is not None and not self.seconds > 0:
            raise ConfigError(f"--seconds-per-pair must be positive, got {self.seconds}")
        if self.warmup_pairs < 0:
            raise ConfigError(f"warm-up pairs must not be negative, got {self.warmup_pairs}")

    @property
    def budget_s(self) -> float | None:
        if self.pairs is not None:
            return None
        return self.seconds if self.seconds is not None else DEFAULT_SECONDS

    def to_dict(self) -> dict:
        return {"pairs": self.pairs, "seconds_per_case": self.budget_s, "alpha": self.alpha,
                "confidence": 1 - self.alpha, "warmup_pairs": self.warmup_pairs, "min_pairs": min_pairs(self.alpha),
                "order": "alternating AB, BA", "statistic": f"per-process {self.statistic} latency",
                "method": "median of per-pair log-ratios, order-statistic (sign test) interval"}


@dataclass(frozen=True)
class Pair:
    """One A and one B process: their median latencies, fastest samples and median CPU time per inference (one is
    compared, see ABSettings.statistic; CPU time is None from a qbench that did not record it), their order, when the
    pair started (seconds after the warm-up), and the CPU each process last ran on (for diagnosing noise)."""

    a: float
    b: float
    order: str
    started_s: float
    a_min: float
    b_min: float
    a_cpu: int | None = None
    b_cpu: int | None = None
    a_cpu_time: float | None = None
    b_cpu_time: float | None = None

    def to_dict(self) -> dict:
        return {"a": self.a, "b": self.b, "order": self.order, "started_s": round(self.started_s, 3),
                "a_min": self.a_min, "b_min": self.b_min, "a_cpu": self.a_cpu, "b_cpu": self.b_cpu,
                "a_cpu_time": self.a_cpu_time, "b_cpu_time": self.b_cpu_time}


@dataclass
class CaseComparison:
    """One case's outcome: status "compared" (with stats), "skipped" or "failed" (with the reason and, when one side
    failed, failed_side). outputs: B's model output against A's (compare_outputs), when both reported one."""

    case: Case
    status: str
    reason: str | None = None
    stats: PairedComparison | None = None
    pairs: list[Pair] = field(default_factory=list)
    seconds: float = 0.0
    load: dict = field(default_factory=dict)
    origins: dict = field(default_factory=dict)
    outputs: dict | None = None
    failed_side: str | None = None

    @property
    def case_id(self) -> str:
        return self.case.case_id

    @property
    def verdict(self) -> str:
        return self.stats.verdict if self.stats else self.status

    def to_dict(self) -> dict:
        return {"case_id": self.case_id, "case": self.case.to_dict(), "status": self.status, "verdict": self.verdict,
                "reason": self.reason, **(self.stats.to_dict() if self.stats else {}),
                "seconds": round(self.seconds, 3), "load_average": self.load, "origins": self.origins,
                "outputs": self.outputs, "failed_side": self.failed_side, "per_pair": [p.to_dict() for p in self.pairs]}


@dataclass
class ABReport:
    sides: dict
    settings: ABSettings
    suite: dict
    machine_id: str
    started_at: str
    finished_at: str = ""
    cases: list[CaseComparison] = field(default_factory=list)

    def to_dict(self, threshold: float | None = None) -> dict:
        data = {"sides": self.sides, "settings": self.settings.to_dict(), "suite": self.suite,
                "machine_id": self.machine_id, "started_at": self.started_at, "finished_at": self.finished_at,
                "cases": [c.to_dict() for c in self.cases]}
        if threshold is not None:
            data["threshold"] = {"latency": threshold}
            data["regressions"] = [c.case_id for c in self.cases if is_regression(c, threshold)]
        return data


def with_sample_seconds(spec: SuiteSpec, seconds: float | None) -> SuiteSpec:
    """The suite with each process sampling latency for `seconds` (its [measure] min_time_s) instead, and always
    for a fixed time: both sides must sample alike, and workers of commits before adaptive sampling reject its
    keys."""
    fixed = replace(spec.measure, target_rel_ci=0.0, max_time_s=0.0)
    if seconds is None:
        return replace(spec, measure=fixed) if spec.measure.target_rel_ci else spec
    if not seconds > 0:
        raise ConfigError(f"--sample-seconds must be positive, got {seconds}")
    return replace(spec, measure=replace(fixed, min_time_s=seconds))


def parse_latency_threshold(text: str) -> float:
    """`latency:3%` or `3%` -> 0.03, in qbench's threshold grammar. qbench ab compares latency only, relatively."""
    spec = text.strip()
    threshold = parse_threshold(spec if ":" in spec else f"latency:{spec}")
    if threshold.metric != "latency" or not threshold.relative:
        raise ConfigError(f"threshold {text!r}: qbench ab compares latency only, as latency:N%")
    return threshold.value


latency_threshold = parse_latency_threshold


def is_regression(comparison: CaseComparison, threshold: float) -> bool:
    """B significantly slower (the interval lies above 1) and its estimated ratio above 1 + threshold."""
    stats = comparison.stats
    return bool(stats) and stats.verdict == "slower" and stats.ratio > 1 + threshold


def compare_outputs(a: dict | None, b: dict | None) -> dict | None:
    """B's model output against A's on the same example: SQNR in dB with A as the signal (+200 when equal, clamped to
    ±200 like qbench's accuracy probe) and the fraction of equal top-1 classes; None unless both reported values."""
    if not (a and b and "values" in a and "values" in b):
        return None
    if a["shape"] != b["shape"] or len(a["values"]) != len(b["values"]):
        return {"same_shape": False, "sqnr_db": -200.0, "top1_agreement": 0.0, "compared_values": 0}
    signal = math.fsum(x * x for x in a["values"])
    noise = math.fsum((x - y) ** 2 for x, y in zip(a["values"], b["values"]))
    sqnr = 200.0 if noise == 0 else -200.0 if signal == 0 else 10 * math.log10(signal / noise)
    agreement = sum(x == y for x, y in zip(a["top1"], b["top1"])) / max(len(a["top1"]), 1)
    return {"same_shape": True, "sqnr_db": round(max(-200.0, min(200.0, sqnr)), 2), "top1_agreement": agreement,
            "compared_values": len(a["values"])}


def output_changed(comparison: CaseComparison, min_sqnr_db: float = DEFAULT_MIN_SQNR_DB) -> bool:
    """B's output differs from A's: another shape, another top-1 class, or an SQNR below min_sqnr_db."""
    check = comparison.outputs
    return bool(check) and (not check["same_shape"] or check["top1_agreement"] < 1.0
                            or check["sqnr_db"] < min_sqnr_db)


def _plan(spec: SuiteSpec, catalogs: dict[str, Catalog], filters: list[str]) -> list[PlannedCase]:
    """Cases of the suite, in suite order; a case either side cannot run is skipped with that side's reason."""
    planned = {label: {p.case.case_id: p for p in expand(spec, catalog)} for label, catalog in catalogs.items()}
    ids = list(dict.fromkeys(i for by_id in planned.values() for i in by_id))
    if filters:
        ids = [i for i in ids if any(fnmatch.fnmatch(i, g) for g in filters)]
        if not ids:
            raise ConfigError(f"--filter {' '.join(filters)} matches no case of suite {spec.name}")
    result = []
    for case_id in ids:
        plans = {label: by_id.get(case_id) for label, by_id in planned.items()}
        case = next(p.case for p in plans.values() if p)
        reasons = [f"side {label}: {p.skip_reason if p else 'not in its catalog'}"
                   for label, p in plans.items() if p is None or p.skip_reason]
        result.append(PlannedCase(case, "; ".join(reasons) or None))
    return result


class _Runner:
    """Both sides' sessions and catalogs, and the loop that measures one case in alternating pairs."""

    def __init__(self, spec: SuiteSpec, sides: tuple[CodeSide, CodeSide], settings: ABSettings, stack: ExitStack,
                 isolation: str | None):
        self.spec, self.settings = spec, settings
        self.sides = {s.label: s for s in sides}
        self.sessions = {s.label: stack.enter_context(Session(spec, isolation=isolation, python=s.python,
                                                              extra_env=s.env(), entry=f"{PROBE_MODULE}:measure"))
                         for s in sides}
        self.threads = min((t for m in spec.matrices for t in m.threads), default=1)
        self.machine = collect_machine()
        self.provenance: dict[str, dict] = {}
        self.catalogs: dict[str, Catalog] = {}

    def _side_error(self, label: str, exc: InfraError) -> InfraError:
        prefix = self.sides[label].describe()
        return exc if str(exc).startswith(prefix) else InfraError(f"{prefix}: {exc}")

    def _preflight(self, label: str) -> None:
        """Start the side's workers and check where their code comes from, before anything is measured."""
        side = self.sides[label]
        outcome = self.sessions[label].run_task({"entry": f"{PROBE_MODULE}:origin"}, self.threads,
                                                PREFLIGHT_TIMEOUT_S)
        result = outcome.result or {}
        if result.get("status") != "ok":
            detail = result.get("reason") or outcome.pool_error or f"exit code {outcome.exit_code}"
            raise InfraError(f"its worker could not start: {detail}")
        origin = result.get("origin")
        side.check_origin(origin)
        self.provenance[label] = {"side": side.spec.text, "kind": side.spec.kind,
                                  "commit": side.commit if side.model_root else origin.get("commit") or side.commit,
                                  "qbench_commit": origin.get("commit"), "qbench_file": origin["qbench_file"],
                                  "python": side.python, "python_version": origin.get("python_version"),
                                  "torch": origin.get("torch"), "packages": origin.get("packages"),
                                  "repo": str(side.repo) if side.repo else None}

    def prepare(self) -> None:
        for step in (self._preflight, self._catalog):
            for label in self.sessions:
                try:
                    step(label)
                except InfraError as exc:
                    raise self._side_error(label, exc) from None

    def _catalog(self, label: str) -> None:
        self.catalogs[label] = self.sessions[label].catalog(custom_model_names(self.spec), self.threads)

    def _context(self, label: str) -> dict:
        provenance = self.provenance[label]
        return {"run_id": uuid.uuid4().hex, "suite": self.spec.identity(), "machine": self.machine,
                "qbench": {"version": qbench.__version__, "commit": provenance["qbench_commit"], "dirty": None}}

    def _measure(self, label: str, plan: PlannedCase, origins: dict, outputs: dict | None = None) -> RunRecord:
        try:
            (record,) = self.sessions[label].run([plan], catalog=self.catalogs[label], writer=None,
                                                 context=self._context(label))
        except InfraError as exc:
            raise self._side_error(label, exc) from None
        if record.status == "ok":
            origins[label] = record.details.get(ORIGIN_KEY)
            self.sides[label].check_origin(origins[label])
            if outputs is not None:
                outputs.setdefault(label, record.details.get(OUTPUT_KEY))
        return record

    def _pair(self, plan: PlannedCase, order: str, origins: dict, outputs: dict) -> Pair | tuple[str, str, str]:
        """One process per side in this order; (status, reason, side) of the first measurement that was not ok."""
        values = {}
        for label in order:
            record = self._measure(label, plan, origins, outputs)
            if record.status != "ok":
                return ("skipped" if record.status == "skipped" else "failed",
                        f"side {label}: {record.status}: {record.reason}", label)
            samples = record.metrics["latency"]["samples"]
            cpu_samples = record.metrics["latency"].get("cpu_samples")
            if self.settings.statistic == "cpu" and not cpu_samples:
                return ("failed", f"side {label}: its qbench records no CPU time per inference (latency.cpu_samples, "
                                  f"added 2026-12): use --statistic median or min", label)
            values[label] = (statistics.median(samples), min(samples), origins[label].get("cpu"),
                             statistics.median(cpu_samples) if cpu_samples else None)
        (a, a_min, a_cpu, a_time), (b, b_min, b_cpu, b_time) = values["A"], values["B"]
        return Pair(a, b, order, 0.0, a_min, b_min, a_cpu, b_cpu, a_time, b_time)

    def _enough(self, pairs: list[Pair], spent: float) -> bool:
        if self.settings.budget_s is None:
            return len(pairs) >= self.settings.pairs
        if len(pairs) < min_pairs(self.settings.alpha):
            return False
        return spent + spent / len(pairs) > self.settings.budget_s

    def compare(self, plan: PlannedCase) -> CaseComparison:
        load_start, began, origins, pairs, outputs = os.getloadavg(), time.perf_counter(), {}, [], {}
        budget_start = began
        for index in itertools.count():
            started = time.perf_counter()
            pair = self._pair(plan, "AB" if index % 2 == 0 else "BA", origins, outputs)
            if not isinstance(pair, Pair):
                status, reason, side = pair
                return CaseComparison(plan.case, status, reason, pairs=pairs, seconds=time.perf_counter() - began,
                                      load=_load(load_start), origins=origins, failed_side=side,
                                      outputs=compare_outputs(outputs.get("A"), outputs.get("B")))
            if index < self.settings.warmup_pairs:
                budget_start = time.perf_counter()
                continue
            pairs.append(replace(pair, started_s=started - budget_start))
            if self._enough(pairs, time.perf_counter() - budget_start):
                break
        stats = compare_pairs(*pair_values(pairs, self.settings.statistic), self.settings.alpha)
        return CaseComparison(plan.case, "compared", stats=stats, pairs=pairs, seconds=time.perf_counter() - began,
                              load=_load(load_start), origins=origins,
                              outputs=compare_outputs(outputs.get("A"), outputs.get("B")))


def pair_values(pairs: list[Pair], statistic: str) -> tuple[list[float], list[float]]:
    """The A and the B values that are compared: per-process medians, fastest samples or median CPU times. A side
    whose qbench records no CPU time cannot be compared on it: InfraError."""
    if statistic == "min":
        return [p.a_min for p in pairs], [p.b_min for p in pairs]
    if statistic == "cpu":
        missing = sorted({side for p in pairs for side, value in (("A", p.a_cpu_time), ("B", p.b_cpu_time))
                          if not value or value <= 0})
        if missing:
            raise InfraError(f"side {' and '.join(missing)} recorded no CPU time per inference (a qbench before "
                             f"latency.cpu_samples): use --statistic median or min")
        return [p.a_cpu_time for p in pairs], [p.b_cpu_time for p in pairs]
    return [p.a for p in pairs], [p.b for p in pairs]


def _load(start: tuple[float, float, float]) -> dict:
    return {"start": [round(v, 2) for v in start], "end": [round(v, 2) for v in os.getloadavg()]}


def run_ab(spec: SuiteSpec, sides: tuple[CodeSide, CodeSide], settings: ABSettings = ABSettings(), *,
           filters: list[str] | None = None, isolation: str | None = None,
           on_case: Callable[[CaseComparison, int, int], None] | None = None) -> ABReport:
    """Measure every case of the suite (matching a filter glob) on both sides, case after case, in alternating
    pairs of fresh processes, and compare them. Each call starts its own worker pools."""
    with ExitStack() as stack:
        runner = _Runner(spec, sides, settings, stack, isolation)
        runner.prepare()
        plans = _plan(spec, runner.catalogs, list(filters or []))
        result = ABReport(sides=runner.provenance, settings=settings, suite=spec.identity(),
                          machine_id=runner.machine["machine_id"], started_at=utc_now())
        for index, plan in enumerate(plans):
            comparison = (CaseComparison(plan.case, "skipped", plan.skip_reason) if plan.skip_reason
                          else runner.compare(plan))
            result.cases.append(comparison)
            if on_case:
                on_case(comparison, index + 1, len(plans))
        result.finished_at = utc_now()
    return result
