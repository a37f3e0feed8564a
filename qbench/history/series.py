"""History as series: for every machine × case (same case_version) × metric, one point per run, in time order.

A point's value is the median, over the run's records of that case (its repeats, each from its own process), of
each record's value of the metric (qbench.metrics: a latency process value is the median of its samples). Next to
the measured metrics come two derived series per quantized case, both from the same run: `speedup` (fp32 median
latency / int8 median latency) and `compression` (fp32 size / int8 size), the int8 case paired with the fp32 case
of the same setup (model, batch, threads, weights, seed, runner: `pair_key`).

Each point also carries how precise it is: the relative half-width of asv's 99% interval of the median
(asv_runner.statistics.compute_stats, what asv publish weights its step detection with) over the run's pooled
samples, or over its per-process values for a noisy metric without samples (memory); none for deterministic ones.
Pure: (RunFile, RunRecord) pairs in, Series out; no torch.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace

from qbench.metrics import METRICS, Metric, format_value
from qbench.records import Case, RunRecord, canonical_json
from qbench.history.store import RunFile

__all__ = ["DERIVED_METRICS", "DERIVED_FROM", "series_metrics", "Point", "Series", "record_values", "pair_key",
           "build_series", "order_by_commits", "format_series_value", "case_figures", "derived_version",
           "flat_environment"]


def _per_run_only(record: RunRecord) -> None:
    """Derived metrics have no value in a single record: they pair two records of one run."""
    return None


DERIVED_METRICS = {
    "speedup": Metric("speedup", "x", "×", 1.0, "higher", "noisy", _per_run_only,
                      "fp32 median latency / int8 median latency, same run and setup"),
    "compression": Metric("compression", "x", "×", 1.0, "higher", "deterministic", _per_run_only,
                          "fp32 size / int8 size, same run and setup"),
}
# The measured metric each derived one is the fp32 / int8 ratio of.
DERIVED_FROM = {"speedup": "latency", "compression": "size"}


def series_metrics() -> dict[str, Metric]:
    """Every metric a series can track: qbench.metrics' table plus the derived ratios."""
    return {**METRICS, **DERIVED_METRICS}


@dataclass(frozen=True)
class Point:
    """One run's value of a series, with the provenance a regression report names. environment: the worker's
    environment (versions, CPU capability, threads, and the variables qbench records) as sorted (name, value)."""

    run_id: str
    started_at: str
    commit: str | None
    dirty: bool
    torch: str | None
    file: str
    value: float
    rel_err: float | None
    n: int
    environment: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Series:
    """`sources`: the case ids the values come from (the int8 then the fp32 case for a derived series). `points`:
    a sequence of Point (qbench.history.points.PointList makes each Point only when it is looked at)."""

    machine_id: str
    case_id: str
    case_version: str
    metric: str
    sources: tuple[str, ...]
    points: tuple[Point, ...]

    @property
    def info(self) -> Metric:
        return series_metrics()[self.metric]

    @property
    def values(self) -> list[float]:
        fast = getattr(self.points, "values", None)
        return fast() if fast is not None else [p.value for p in self.points]

    @property
    def rel_errs(self) -> list[float | None]:
        fast = getattr(self.points, "rel_errs", None)
        return fast() if fast is not None else [p.rel_err for p in self.points]

    @property
    def run_ids(self) -> list[str]:
        fast = getattr(self.points, "run_ids", None)
        return fast() if fast is not None else [p.run_id for p in self.points]


def format_series_value(value: float, metric: str) -> str:
    return format_value(series_metrics()[metric], value)


def record_values(record: RunRecord) -> dict[str, float]:
    """The measured metrics of one ok record (one process), by name; metrics it lacks are left out."""
    found = {name: metric.extract(record) for name, metric in METRICS.items()}
    return {name: value.value for name, value in found.items() if value is not None}


def _rel_err(samples: list[float], value: float) -> float | None:
    """Relative half-width of asv's 99% interval of the median of `samples`; None when it is unbounded."""
    from asv_runner.statistics import compute_stats

    if len(samples) < 2 or not value:
        return None
    _, stats = compute_stats(samples, 1)
    low, high = stats["ci_99_a"], stats["ci_99_b"]
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return None
    return (high - low) / 2 / abs(value)


def case_figures(records: list[RunRecord]) -> dict[str, tuple[float, float | None, int]]:
    """metric → (value, rel_err, n) for the records of one case in one run."""
    out = {}
    for name, metric in METRICS.items():
        found = [v for v in (metric.extract(r) for r in records) if v is not None]
        if not found:
            continue
        values = [v.value for v in found]
        value = statistics.median(values)
        pooled = [s for v in found for s in v.samples]
        if not metric.noisy:
            err = None
        elif pooled:
            err = _rel_err(pooled, statistics.median(pooled))
        else:
            err = _rel_err(values, value)
        out[name] = (value, err, len(values))
    return out


def flat_environment(environment: dict) -> tuple[tuple[str, str], ...]:
    flat = {key: str(value) for key, value in environment.items() if key != "variables"}
    flat.update({name: str(value) for name, value in (environment.get("variables") or {}).items()})
    return tuple(sorted(flat.items()))


def pair_key(case: Case) -> str:
    """What an int8 case and its fp32 parent share: the case's identity without mode, engine, qconfig, calibration
    and QAT settings (model, batch, threads, weights, seed, runner and any identity field added later)."""
    shared = {k: v for k, v in case.to_dict().items()
              if k not in ("mode", "engine", "qconfig", "calibration", "qat")}
    return canonical_json(shared)


def derived_version(int8_version: str, fp32_version: str) -> str:
    """The case_version of a derived series: of its int8 case and its fp32 parent together."""
    return hashlib.sha256(f"{int8_version}/{fp32_version}".encode()).hexdigest()[:16]


def build_series(pairs: Iterable[tuple[RunFile, RunRecord]], metrics: Iterable[str] | None = None) -> list[Series]:
    """Series for every machine × case × metric in the records (ok records only), points ordered by run start."""
    from qbench.history.points import series_from_summaries
    from qbench.history.summary import summary_table

    runs: dict[str, RunFile] = {}
    records: dict[str, list[RunRecord]] = defaultdict(list)
    for run, record in pairs:
        runs[str(run.path)] = run
        records[str(run.path)].append(record)
    return series_from_summaries([(run, summary_table(records[key])) for key, run in runs.items()], metrics)


def order_by_commits(series: list[Series], commits: list[str]) -> tuple[list[Series], set[str]]:
    """Reorder points by position of their commit in `commits` (oldest first); runs of one commit keep their time
    order. Points whose commit is not in the list are dropped; their run ids are returned."""
    position = {commit: index for index, commit in enumerate(commits)}
    dropped: set[str] = set()
    out = []
    for one in series:
        kept = [p for p in one.points if p.commit in position]
        dropped.update(p.run_id for p in one.points if p.commit not in position)
        kept.sort(key=lambda p: (position[p.commit], p.started_at, p.run_id))
        if kept:
            out.append(replace(one, points=tuple(kept)))
    return out, dropped
