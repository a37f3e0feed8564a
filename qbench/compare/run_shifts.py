"""Run-wide shifts: when every case of a run is slower together, the run moved, not the cases.

On a shared machine the level of a whole run moves with the load (measured on the 2-vCPU VM: 14.6% from run to run,
mostly together for all cases of a run). Judging each case's series alone then calls the busiest night a regression
of whichever cases happen to clear their threshold. So for the timing metrics (latency, throughput, bandwidth) each
run's shared shift is estimated first, per machine, as the median over that run's series of the point's log
distance from its series' median (direction folded, so a positive shift is always "worse"); a run holding fewer than
MIN_SERIES judged series has no estimate (shift 0). Each case's series is then judged with its run's shift divided
out, which removes the shared part of the noise and leaves what is particular to the case.

The shifts themselves form one series per machine and metric, judged like any other (qbench.compare.steps.detect,
the metric's default threshold, the detectable-step guard). A step in it is attributed by what changed between its
last good and first bad run:
- the qbench commit or the worker environment (a torch, torchvision or torchao build, a variable) changed: a real
  regression of every case, reported once as case "(every case)", so a slower torch build is caught by the shift
  series rather than lost to the discount;
- nothing changed: the machine moved (load, another host, thermal state). It is reported as a machine shift, never as
  a regression.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace

from qbench.compare.steps import Regression, detect
from qbench.history.series import Point, Series, series_metrics
from qbench.history.validate import finite_positive

__all__ = ["SHIFTED_METRICS", "MIN_SERIES", "EVERY_CASE", "RunShifts", "run_shifts"]

# The metrics a run's load moves together: each is latency or its reciprocal times a per-case constant.
SHIFTED_METRICS = frozenset({"latency", "throughput", "bandwidth"})
MIN_SERIES = 5
EVERY_CASE = "(every case)"


@dataclass
class RunShifts:
    """factor[(machine_id, metric)][run_id]: the run's shared multiplicative shift (> 1 is worse), and the shift
    series' steps: `regressions` (a qbench or environment change came with them) and `machine` (nothing changed)."""

    factor: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    regressions: list[Regression] = field(default_factory=list)
    machine: list[Regression] = field(default_factory=list)

    def of(self, series: Series) -> list[float] | None:
        """The shift of each of the series' points (None when no run of it moved)."""
        factors = self.factor.get((series.machine_id, series.metric))
        if not factors:
            return None
        return [factors.get(run_id, 1.0) for run_id in series.run_ids]


def _log_worse(value: float, lower: bool) -> float | None:
    if not finite_positive(value):
        return None
    return math.log(value) if lower else -math.log(value)


def _shift_series(machine_id: str, metric: str, factors: dict[str, float], first_points: dict[str, Point],
                  lower: bool) -> Series:
    ordered = sorted(factors, key=lambda run_id: (first_points[run_id].started_at, run_id))
    points = tuple(replace(first_points[run_id], value=factors[run_id] if lower else 1.0 / factors[run_id],
                           rel_err=None) for run_id in ordered)
    return Series(machine_id=machine_id, case_id=EVERY_CASE, case_version="run-shift", metric=metric,
                  sources=(), points=points)


def _changed(regression: Regression) -> bool:
    return bool(regression.environment_changes) or regression.last_good.commit != regression.first_bad.commit \
        or regression.last_good.dirty != regression.first_bad.dirty


def run_shifts(series: list[Series], threshold_of) -> RunShifts:
    """The shared shifts of `series` (any metrics; only SHIFTED_METRICS get any) and their judged steps.
    threshold_of(series) -> (threshold, source), as for any series."""
    by_key: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    first_points: dict[tuple[str, str], dict[str, Point]] = defaultdict(dict)
    for one in series:
        if one.metric not in SHIFTED_METRICS or len(one.points) < 3:
            continue
        lower = one.info.direction == "lower"
        logs = [_log_worse(v, lower) for v in one.values]
        if any(v is None for v in logs):
            continue
        middle = statistics.median(logs)
        key = (one.machine_id, one.metric)
        runs = by_key[key]
        for run_id, value in zip(one.run_ids, logs):
            runs[run_id].append(value - middle)
        known = first_points[key]
        for index, run_id in enumerate(one.run_ids):
            if run_id not in known:
                known[run_id] = one.points[index]
    result = RunShifts()
    for key, runs in by_key.items():
        factors = {run_id: math.exp(statistics.median(d)) if len(d) >= MIN_SERIES else 1.0
                   for run_id, d in runs.items()}
        if all(f == 1.0 for f in factors.values()):
            continue
        result.factor[key] = factors
        machine_id, metric = key
        lower = series_metrics()[metric].direction == "lower"
        shifts = _shift_series(machine_id, metric, factors, first_points[key], lower)
        threshold, source = threshold_of(shifts)
        for step in detect(shifts, threshold, source):
            (result.regressions if _changed(step) else result.machine).append(step)
    return result

