"""Compare the records of two sides case by case and metric by metric: both values with their spread, the ratio, a
verdict and why. Pure: records in, Comparisons out (qbench.report.compare renders them; the tests are in
qbench.stats.significance).

Rules (STYLE.md §7):
* Records compare only when their machine (`machine.machine_id`) and `case_version` are equal; otherwise the case
  is `incomparable` and the reason names what differs. A case on one side only is `missing`.
* Status first. A side's status is the worst of its processes (ok > skipped > failed = timeout). Worse on the
  candidate (ok → failed/timeout/skipped, skipped → failed) is `regressed`, better is `improved`; not ok on both
  sides is `unchanged` (still broken, not broken by the candidate; the reason says so). Metrics are compared over
  the ok processes when both sides have some.
* Each metric's value on a side is the median of its per-process values (a latency process value is the median of
  its samples). The change must exceed the threshold (qbench.thresholds) to count, in the metric's direction.
* Noisy metrics (latency, memory) are judged by qbench.stats.significance: a t-test on the log per-process values
  whose variance adds the process noise (measured over the processes when a side has two or more, else assumed:
  noise.json's figure for the case, else the metric's default) and the run-to-run noise (always assumed: two runs
  cannot measure it; defaults in qbench.thresholds.DEFAULT_NOISE). Samples within one process never stand in for
  the process noise. Every verdict states the smallest change the comparison could detect (p < ALPHA with POWER).
  `regressed`/`improved`: significant and beyond the threshold. `unchanged`: not beyond the threshold, or not
  significant although a change of the threshold's size was detectable. `undetectable`: not significant, and the
  smallest detectable change is larger than the threshold, so the comparison cannot say the case is unchanged.
  The threshold is the configured one (command line, suite, default): noise enters the test, not the threshold.
* Deterministic metrics (size) use the threshold alone.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from qbench.metrics import METRICS, Metric, MetricValue, default_metric_names, get_metric
from qbench.records import RunRecord
from qbench.stats.significance import ALPHA, Significance, significance
from qbench.stats.summary import percentile
from qbench.thresholds import Threshold, ThresholdPolicy
from qbench.history.validate import finite_positive

__all__ = ["VERDICTS", "STATUS", "SideSummary", "Comparison", "Difference", "CompareReport", "compare",
           "environment_differences", "suite_key"]

VERDICTS = ("regressed", "improved", "incomparable", "missing", "undetectable", "unchanged")
STATUS = "status"
_HEALTH = {"ok": 2, "skipped": 1, "failed": 0, "timeout": 0}
# Environment fields that make two sides' numbers differ for reasons other than the code under test.
_ENVIRONMENT_FIELDS = (("machine", "machine_id"), ("environment", "python"), ("environment", "torch"),
                       ("environment", "torch_git"), ("environment", "torchvision"), ("environment", "torchao"),
                       ("environment", "numpy"), ("environment", "cpu_capability"),
                       ("environment", "torchvision_ops"), ("qbench", "version"), ("qbench", "commit"),
                       ("qbench", "dirty"), ("suite", "name"), ("suite", "sha256"))


@dataclass(frozen=True)
class SideSummary:
    """One side's value of a metric: the median of its per-process `values`, with the quartiles of all its samples
    (of the process values when the metric has no samples)."""

    value: float
    q1: float
    q3: float
    processes: int
    samples: int
    values: tuple[float, ...]

    @classmethod
    def of(cls, measured: list[MetricValue]) -> SideSummary:
        values = sorted(m.value for m in measured)
        pooled = sorted(s for m in measured for s in m.samples) or values
        return cls(value=percentile(values, 50), q1=percentile(pooled, 25), q3=percentile(pooled, 75),
                   processes=len(values), samples=sum(len(m.samples) for m in measured), values=tuple(values))


@dataclass(frozen=True)
class Comparison:
    case_id: str
    metric: str
    base: SideSummary | None
    cand: SideSummary | None
    ratio: float | None
    verdict: str
    reason: str
    machine_id: str | None = None
    threshold: str | None = None
    test: Significance | None = None


@dataclass(frozen=True)
class Difference:
    """A provenance field whose values differ between the sides (listed in report headers)."""

    field: str
    base: tuple[str, ...]
    cand: tuple[str, ...]


@dataclass(frozen=True)
class CompareReport:
    base: str
    cand: str
    comparisons: tuple[Comparison, ...]
    differences: tuple[Difference, ...] = ()
    unreadable: tuple[str, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(c.verdict for c in self.comparisons)
        return {verdict: found.get(verdict, 0) for verdict in VERDICTS}

    @property
    def regressed(self) -> bool:
        return any(c.verdict == "regressed" for c in self.comparisons)


def compare(base: Iterable[RunRecord], cand: Iterable[RunRecord],
            thresholds: ThresholdPolicy | Iterable[Threshold] = (), *,
            noise: Mapping[str, Mapping[str, float]] | None = None, metrics: Iterable[str] | None = None,
            alpha: float = ALPHA, table: Mapping[str, Metric] | None = None) -> list[Comparison]:
    """Every case of either side, each metric, judged. `thresholds` is a policy or command-line thresholds;
    `noise` (case_id → metric → fraction, for any machine) raises the configured ones."""
    table = METRICS if table is None else table
    policy = thresholds if isinstance(thresholds, ThresholdPolicy) else ThresholdPolicy(command_line=tuple(thresholds))
    if noise:
        policy = dataclasses.replace(policy, noise={**policy.noise, "*": noise})
    names = tuple(metrics) if metrics is not None else _metric_names(policy, table)
    base_by_case, cand_by_case = _by_case(base), _by_case(cand)
    comparisons = []
    for case_id in sorted(base_by_case.keys() | cand_by_case.keys()):
        comparisons.extend(_compare_case(case_id, base_by_case.get(case_id, []), cand_by_case.get(case_id, []),
                                         policy, names, alpha, table))
    return sorted(comparisons, key=lambda c: (VERDICTS.index(c.verdict), c.case_id, c.machine_id or "",
                                              _metric_order(c.metric, names)))


def _metric_names(policy: ThresholdPolicy, table: Mapping[str, Metric]) -> tuple[str, ...]:
    wanted = set(default_metric_names(table)) | {t.metric for t in policy.command_line}
    return tuple(name for name in table if name in wanted)


def _metric_order(metric: str, names: tuple[str, ...]) -> int:
    return -1 if metric == STATUS else names.index(metric) if metric in names else len(names)


def _by_case(records: Iterable[RunRecord]) -> dict[str, list[RunRecord]]:
    grouped = defaultdict(list)
    for record in records:
        grouped[record.case_id].append(record)
    return grouped


def _key(record: RunRecord) -> tuple[str, str]:
    return str(record.machine.get("machine_id")), record.case.case_version


def _compare_case(case_id, base, cand, policy, names, alpha, table) -> list[Comparison]:
    if not base or not cand:
        present, absent = ("base", "candidate") if base else ("candidate", "base")
        machine = _key((base or cand)[0])[0]
        return [Comparison(case_id, STATUS, None, None, None, "missing", f"only in {present}, not in {absent}",
                           machine_id=machine)]
    base_keys, cand_keys = {_key(r) for r in base}, {_key(r) for r in cand}
    common = sorted(base_keys & cand_keys)
    if not common:
        return [Comparison(case_id, STATUS, None, None, None, "incomparable", _why_incomparable(base, cand),
                           machine_id=_key(base[0])[0])]
    ignored = _ignored_note(base, cand, set(common))
    comparisons = []
    for key in common:
        comparisons.extend(_compare_group(case_id, key[0], [r for r in base if _key(r) == key],
                                          [r for r in cand if _key(r) == key], policy, names, alpha, table, ignored))
    return comparisons


def _why_incomparable(base: list[RunRecord], cand: list[RunRecord]) -> str:
    base_machines = sorted({_key(r)[0] for r in base})
    cand_machines = sorted({_key(r)[0] for r in cand})
    if not set(base_machines) & set(cand_machines):
        return f"different machines: base {', '.join(base_machines)}, candidate {', '.join(cand_machines)}"
    changed = sorted(_case_fields(base[0].case.to_dict()).items() ^ _case_fields(cand[0].case.to_dict()).items())
    fields = sorted({name for name, _ in changed})
    return (f"different case definitions: case_version {base[0].case.case_version} vs {cand[0].case.case_version}"
            f" ({', '.join(fields) or 'definition'} changed)")


def _case_fields(case: dict, prefix: str = "") -> dict[str, str]:
    flat = {}
    for name, value in case.items():
        if isinstance(value, dict):
            flat.update(_case_fields(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = json.dumps(value)
    return flat


def _ignored_note(base, cand, common: set) -> str:
    notes = []
    for side, records in (("base", base), ("candidate", cand)):
        left = [r for r in records if _key(r) not in common]
        if left:
            machines = ", ".join(sorted({_key(r)[0] for r in left}))
            notes.append(f"{len(left)} {side} records of another machine or case_version ignored ({machines})")
    return "; ".join(notes)


def _compare_group(case_id, machine_id, base, cand, policy, names, alpha, table, note) -> list[Comparison]:
    comparisons = []
    status = _status_comparison(case_id, machine_id, base, cand, note)
    if status is not None:
        comparisons.append(status)
    base_ok = [r for r in base if r.status == "ok"]
    cand_ok = [r for r in cand if r.status == "ok"]
    if base_ok and cand_ok:
        suite = suite_key(cand_ok[0])
        for name in names:
            metric = get_metric(name, table)
            row = _compare_metric(case_id, machine_id, metric, base_ok, cand_ok, policy, suite, alpha, table)
            if row is not None:
                comparisons.append(_with_note(row, note) if note else row)
    return comparisons


def _with_note(row: Comparison, note: str) -> Comparison:
    return Comparison(row.case_id, row.metric, row.base, row.cand, row.ratio, row.verdict, f"{row.reason}; {note}",
                      row.machine_id, row.threshold, row.test)


def _worst(records: list[RunRecord]) -> RunRecord:
    return min(records, key=lambda r: _HEALTH[r.status])


def _status_comparison(case_id, machine_id, base, cand, note) -> Comparison | None:
    worst_base, worst_cand = _worst(base), _worst(cand)
    if worst_base.status == "ok" and worst_cand.status == "ok":
        return None
    change = f"{_status_text(base)} → {_status_text(cand)}"
    health_base, health_cand = _HEALTH[worst_base.status], _HEALTH[worst_cand.status]
    if health_cand < health_base:
        verdict, reason = "regressed", f"{change}: {worst_cand.reason or 'no reason recorded'}"
    elif health_cand > health_base:
        verdict, reason = "improved", f"{change}"
    elif worst_cand.status == "skipped":
        verdict, reason = "unchanged", f"skipped on both sides: {worst_cand.reason or 'no reason recorded'}"
    else:
        verdict, reason = "unchanged", (f"not ok on both sides, still broken ({change}): "
                                        f"{worst_cand.reason or 'no reason recorded'}")
    if note:
        reason = f"{reason}; {note}"
    return Comparison(case_id, STATUS, None, None, None, verdict, reason, machine_id=machine_id)


def _status_text(records: list[RunRecord]) -> str:
    worst = _worst(records)
    bad = sum(1 for r in records if r.status == worst.status)
    if len(records) == 1 or bad == len(records):
        return worst.status
    return f"{worst.status} in {bad} of {len(records)} processes"


def suite_key(record: RunRecord) -> str | None:
    """The key a record's suite thresholds are filed under in a ThresholdPolicy: its suite's sha256, else name."""
    return record.suite.get("sha256") or record.suite.get("name")


def _compare_metric(case_id, machine_id, metric, base, cand, policy, suite, alpha, table) -> Comparison | None:
    base_found = [(r, v) for r, v in ((r, metric.extract(r)) for r in base) if v is not None]
    cand_found = [(r, v) for r, v in ((r, metric.extract(r)) for r in cand) if v is not None]
    base_values, cand_values = [v for _, v in base_found], [v for _, v in cand_found]
    if not base_values and not cand_values:
        return None
    if not base_values or not cand_values:
        present = "base" if base_values else "candidate"
        return Comparison(case_id, metric.name, SideSummary.of(base_values) if base_values else None,
                          SideSummary.of(cand_values) if cand_values else None, None, "missing",
                          f"{metric.name} measured only in {present}", machine_id=machine_id)
    different = _different_bases(metric, base, cand)
    if different:
        return Comparison(case_id, metric.name, SideSummary.of(base_values), SideSummary.of(cand_values), None,
                          "incomparable", different, machine_id=machine_id)
    base_summary, cand_summary = SideSummary.of(base_values), SideSummary.of(cand_values)
    threshold = policy.threshold_for(metric.name, base_summary.value, case_id=case_id, machine_id=machine_id,
                                     suite=suite, raise_to_noise=False)
    test = None
    if metric.noisy:
        runs = tuple(len({r.run_id for r, _ in side}) for side in (base_found, cand_found))
        test = significance([v.value for v in base_values], [v.value for v in cand_values],
                            policy.noise_for(metric.name, case_id=case_id, machine_id=machine_id), alpha, runs=runs)
    verdict, reason = _judge(metric, base_summary, cand_summary, threshold, test, table)
    ratio = cand_summary.value / base_summary.value if finite_positive(base_summary.value) else None
    return Comparison(case_id, metric.name, base_summary, cand_summary, ratio, verdict, reason, machine_id=machine_id,
                      threshold=f"{threshold.describe(table)} ({threshold.source})", test=test)


def _different_bases(metric: Metric, base: list[RunRecord], cand: list[RunRecord]) -> str | None:
    """Why the two sides' values of `metric` were measured on different things (e.g. evaluation subsets), or None."""
    if metric.basis is None:
        return None
    bases = [{metric.basis(r) for r in side if metric.extract(r) is not None} for side in (base, cand)]
    if bases[0] == bases[1] and len(bases[0]) == 1:
        return None
    names = [",".join(sorted(str(b)[:12] for b in side)) for side in bases]
    return f"{metric.name} measured on different evaluation subsets (base {names[0]}, candidate {names[1]})"


def _judge(metric: Metric, base: SideSummary, cand: SideSummary, threshold: Threshold, test: Significance | None,
           table) -> tuple[str, str]:
    change = _change_text(metric, base.value, cand.value)
    limit = f"{threshold.describe(table)} ({threshold.source})"
    if test is None or test.significant is None:
        how = "; exact threshold" if test is None else f"; {test.describe()}"
        if not threshold.exceeded(base.value, cand.value):
            return "unchanged", f"{change}, within {limit}{how}"
        verdict = "regressed" if metric.is_worse(base.value, cand.value) else "improved"
        if not metric.noisy and (len(set(base.values)) > 1 or len(set(cand.values)) > 1):
            how += "; values differ between processes of one side"
        return verdict, f"{change}, beyond {limit}{how}"
    detectable, tested = test.detectable_text(), test.describe()
    if test.significant and threshold.exceeded(base.value, cand.value):
        verdict = "regressed" if metric.is_worse(base.value, cand.value) else "improved"
        return verdict, f"{change}, beyond {limit} and significant, {detectable}; {tested}"
    if test.significant:
        return "unchanged", f"{change}, significant but within {limit}, {detectable}; {tested}"
    if test.detectable > threshold.allowed_fraction(base.value):
        return "undetectable", f"{change}, not significant; {detectable} only, more than {limit}; {tested}"
    return "unchanged", f"{change}, not significant, {detectable} (within {limit}); {tested}"


def _change_text(metric: Metric, base: float, cand: float) -> str:
    if base:
        return f"{(cand / base - 1.0) * 100:+.1f}%"
    return f"{(cand - base) * metric.scale:+g} {metric.display_unit}"


def environment_differences(base: Iterable[RunRecord], cand: Iterable[RunRecord]) -> list[Difference]:
    """Provenance fields (machine, torch and friends, qbench commit, suite, and the environment variables the
    workers ran with, e.g. ONEDNN_MAX_CPU_ISA) whose values differ between the sides."""
    base, cand = list(base), list(cand)
    differences = []
    for section, name in _ENVIRONMENT_FIELDS:
        base_values = _values_of(base, section, name)
        cand_values = _values_of(cand, section, name)
        if base_values != cand_values:
            differences.append(Difference(f"{section}.{name}" if section != "environment" else name,
                                          base_values, cand_values))
    base_ok, cand_ok = [r for r in base if r.status == "ok"], [r for r in cand if r.status == "ok"]
    names = sorted({n for r in base_ok + cand_ok for n in (r.environment.get("variables") or {})})
    for name in names:
        base_values, cand_values = _variable_of(base_ok, name), _variable_of(cand_ok, name)
        if base_values != cand_values:
            differences.append(Difference(f"variables.{name}", base_values, cand_values))
    return differences


def _variable_of(records: list[RunRecord], name: str) -> tuple[str, ...]:
    return tuple(sorted({str((r.environment.get("variables") or {}).get(name, "unset")) for r in records}))


def _values_of(records: list[RunRecord], section: str, name: str) -> tuple[str, ...]:
    values = {(getattr(r, section) or {}).get(name) for r in records if section != "environment" or r.status == "ok"}
    return tuple(sorted(str(v) for v in values if v is not None))
