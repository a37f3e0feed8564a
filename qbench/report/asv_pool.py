"""What the asv export pools into one point, gathered while history streams past, so that a year of nightlies is
exported without holding its records in memory (a record is ~26 KB as Python objects; the values asv needs from it
are a few dozen floats, kept here in compact arrays).

A Pool is everything one machine measured at one qbench commit with one set of torch builds, one series (python
and the kernel-steering variables) and in one night (the UTC day its run started). Both dashboard views are unions
of these: the commits view merges a commit's nights; the nightly timeline shows each night.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from qbench.metrics import METRICS, Metric
from qbench.records import RunRecord

__all__ = ["NON_ENVIRONMENT_VARIABLES", "REQUIREMENTS", "CasePool", "Pool", "case_values", "metric_samples",
           "steering_variables"]

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
    """The case's place on the benchmark's axes, as asv's repr() strings. Mode and engine share one axis, so that the
    parameter grid has no holes where fp32 (no engine) meets an engine."""
    case = record.case
    variant = case.mode if case.engine is None else f"{case.mode}/{case.engine}"
    return tuple(repr(v) for v in (case.model, variant, case.batch_size, case.threads, case.weights_kind))


@dataclass
class CasePool:
    """One case's raw values per metric, over every record pooled; whether any of them failed or timed out."""
    values: dict[str, array] = field(default_factory=dict)
    failed: bool = False

    def add(self, record: RunRecord) -> None:
        self.failed = self.failed or record.status in FAILED
        for metric in METRICS.values():
            found = metric_samples(record, metric)
            if found:
                self.values.setdefault(metric.name, array("d")).extend(found)

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
        environment = record.environment
        builds = tuple((name, environment.get(name)) for name in REQUIREMENTS)
        series = (("python", environment.get("python")),) + tuple(sorted(steering_variables(environment).items()))
        return record.machine.get("machine_id"), record.qbench.get("commit"), builds, series, night

    @classmethod
    def empty(cls, key: tuple, started_at: str) -> Pool:
        return cls(*key, started_at=started_at)

    def add(self, record: RunRecord, run_started_at: str) -> None:
        self.started_at = min(self.started_at, run_started_at)
        if record.started_at < self.first_started_at:
            self.first_started_at, self.environment = record.started_at, record.environment
        self.runs.add(record.run_id)
        suite = record.suite.get("name") or "unnamed"
        self.durations[suite] = self.durations.get(suite, 0.0) + record.duration_s
        self.suites.setdefault(suite, {}).setdefault(case_values(record), CasePool()).add(record)

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
