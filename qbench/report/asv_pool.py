"""What the asv export pools into one point, gathered while history streams past, so that a year of nightlies is
exported without holding its records in memory (a record is ~26 KB as Python objects; the values asv needs from it
are a few dozen floats, kept here in compact arrays).

A Pool is everything one machine measured at one qbench commit with one set of torch builds, one series (python
and the kernel-steering variables) and in one night (the UTC day its run started). Both dashboard views are unions
of these: the commits view merges a commit's nights; the nightly timeline shows each night.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from qbench.metrics import METRICS, Metric
from qbench.records import RunRecord

__all__ = ["NON_ENVIRONMENT_VARIABLES", "REQUIREMENTS", "CasePool", "Pool", "axis_values", "case_values",
           "metric_samples", "steering_variables"]

# Set per case (threads) or irrelevant to speed (TORCH_HOME): not part of the asv environment.
NON_ENVIRONMENT_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TORCH_HOME")
REQUIREMENTS = ("torch", "torchvision", "torchao")
FAILED = ("failed", "timeout")


def metric_samples(record: RunRecord, metric: Metric) -> list[float]:
    """The raw values one ok record holds for a metric (qbench.metrics reads them): its samples, else its value."""
    if record.status != "ok":
        return []
    found = metric.extract(record)
    if found is None:
        return []
    return list(found.samples) or [found.value]


def steering_variables(environment: dict) -> dict:
    variables = environment.get("variables") or {}
    return {k: v for k, v in variables.items() if k not in NON_ENVIRONMENT_VARIABLES}


def case_values(record: RunRecord) -> tuple[str, ...]:
    """The case's place on the benchmark's axes, as asv's repr() strings (axis_values)."""
    case = record.case
    return axis_values(case.model, case.mode, case.engine, case.batch_size, case.threads, case.weights_kind)


def axis_values(model, mode, engine, batch_size, threads, weights) -> tuple[str, ...]:
    """Mode and engine share one axis, so that the parameter grid has no holes where fp32 (no engine) meets an
    engine."""
    variant = mode if engine is None else f"{mode}/{engine}"
    return tuple(repr(v) for v in (model, variant, batch_size, threads, weights))


@dataclass
class CasePool:
    """One case's raw values per metric, over every record pooled; whether any of them failed or timed out."""
    values: dict[str, array] = field(default_factory=dict)
    failed: bool = False

    def add(self, status: str, samples: dict[str, Sequence[float]]) -> None:
        """One record: its status and, per metric, its raw values (metric_samples; none for a metric it lacks)."""
        self.failed = self.failed or status in FAILED
        for name, found in samples.items():
            if found:
                self.values.setdefault(name, array("d")).extend(found)

    def extend(self, other: CasePool) -> None:
        self.failed = self.failed or other.failed
        for name, values in other.values.items():
            self.values.setdefault(name, array("d")).extend(values)


@dataclass
class Pool:
    machine_id: str
    commit: str
    builds: tuple
    series: tuple
    night: str
    started_at: str                      # the earliest start of a run pooled here
    first_started_at: str = "~"          # the earliest start of a record pooled here, and its environment
    environment: dict = field(default_factory=dict)
    runs: set[str] = field(default_factory=set)
    suites: dict[str, dict[tuple, CasePool]] = field(default_factory=dict)
    durations: dict[str, float] = field(default_factory=dict)

    @staticmethod
    def key(record: RunRecord, night: str) -> tuple:
        return Pool.key_of(record.machine.get("machine_id"), record.qbench.get("commit"), record.environment, night)

    @staticmethod
    def key_of(machine_id: str | None, commit: str | None, environment: dict, night: str) -> tuple:
        builds = tuple((name, environment.get(name)) for name in REQUIREMENTS)
        series = (("python", environment.get("python")),) + tuple(sorted(steering_variables(environment).items()))
        return machine_id, commit, builds, series, night

    @classmethod
    def empty(cls, key: tuple, started_at: str) -> Pool:
        return cls(*key, started_at=started_at)

    def add(self, record: RunRecord, run_started_at: str) -> None:
        self.add_case(run_started_at, record.run_id, record.started_at, record.environment, record.suite.get("name"),
                      record.duration_s, case_values(record), record.status,
                      {metric.name: metric_samples(record, metric) for metric in METRICS.values()})

    def add_case(self, run_started_at: str, run_id: str, started_at: str, environment: dict | Callable[[], dict],
                 suite: str | None, duration_s: float, values: tuple[str, ...], status: str,
                 samples: dict[str, Sequence[float]]) -> None:
        """One record, as its fields (Pool.add reads them from a RunRecord, qbench.report.asv_columns from a
        compacted run's summary columns); `environment` may be a function giving it, called only when needed."""
        self.started_at = min(self.started_at, run_started_at)
        if started_at < self.first_started_at:
            self.first_started_at = started_at
            self.environment = environment() if callable(environment) else environment
        self.runs.add(run_id)
        suite = suite or "unnamed"
        self.durations[suite] = self.durations.get(suite, 0.0) + duration_s
        self.suites.setdefault(suite, {}).setdefault(values, CasePool()).add(status, samples)

    @classmethod
    def merged(cls, pools: list[Pool]) -> Pool:
        """One pool holding every record of `pools` (the nights of one commit, for the commits view)."""
        first = min(pools, key=lambda p: p.first_started_at)
        union = cls(first.machine_id, first.commit, first.builds, first.series, first.night,
                    started_at=min(p.started_at for p in pools), first_started_at=first.first_started_at,
                    environment=first.environment)
        for pool in pools:
            union.runs |= pool.runs
            for suite, cases in pool.suites.items():
                union.durations[suite] = union.durations.get(suite, 0.0) + pool.durations[suite]
                into = union.suites.setdefault(suite, {})
                for values, case in cases.items():
                    into.setdefault(values, CasePool()).extend(case)
        return union
