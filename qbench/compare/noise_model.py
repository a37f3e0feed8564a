"""The noise compare's test assumes, measured from a machine's history: how far one run's level moves from run to run
(run_noise), and how far one process's value moves around its run's level (process_noise). Both are standard
deviations of natural logarithms, per machine × metric, for all cases ("*") and per case with enough data; compare
takes the larger of the two (qbench.thresholds.ThresholdPolicy.noise_for; docs/compare.md).

Run noise: the first differences of each series' log values (runs in time order, at least 3 of them: a series of
two runs is the very pair a comparison tests), robust scale 1.4826 · median |Δ| / √2, so that a real step, which
moves one difference, does not count. Process noise: the pooled standard deviation of the log per-process values
of a case within each run that has two or more processes (`qbench run --repeat N`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

import numpy as np

from qbench.history.series import Series
from qbench.metrics import METRICS

__all__ = ["MIN_RUN_DIFFERENCES", "MIN_CASE_DIFFERENCES", "MIN_PROCESS_DF", "NOISY_METRICS", "SUMMARY_COLUMNS",
           "run_noise", "process_noise"]

MIN_RUN_DIFFERENCES = 8
MIN_CASE_DIFFERENCES = 4
MIN_PROCESS_DF = 4
NOISY_METRICS = tuple(name for name, metric in METRICS.items() if metric.noisy)
# What process_noise reads of each run's summary.
SUMMARY_COLUMNS = ["machine_id", "case_id", *(f"value_{name}" for name in NOISY_METRICS)]


def run_noise(series: Iterable[Series], min_differences: int = MIN_RUN_DIFFERENCES,
              min_case_differences: int = MIN_CASE_DIFFERENCES) -> dict[str, dict[str, dict]]:
    """machine_id → metric → case_id or "*" → (SD of one run's log level, where from); the machine's figure needs
    `min_differences` first differences, a case's `min_case_differences`."""
    differences: dict[tuple[str, str], dict[str, list[float]]] = {}
    for one in series:
        points = one.points
        values = np.asarray(points.values() if hasattr(points, "values") else [p.value for p in points], float)
        if len(values) < 3 or not (np.isfinite(values).all() and (values > 0).all()):
            continue
        by_case = differences.setdefault((one.machine_id, one.metric), {})
        by_case.setdefault(one.case_id, []).extend(np.diff(np.log(values)).tolist())
    found: dict[str, dict[str, dict]] = {}
    for (machine_id, metric), by_case in sorted(differences.items()):
        pooled = [d for diffs in by_case.values() for d in diffs]
        if len(pooled) < min_differences:
            continue
        scales = {"*": (pooled, f"measured over {len(pooled)} consecutive-run differences in history")}
        scales.update({case_id: (diffs, f"measured over {len(diffs)} consecutive runs of the case in history")
                       for case_id, diffs in by_case.items() if len(diffs) >= min_case_differences})
        found.setdefault(machine_id, {})[metric] = {
            key: (1.4826 * statistics.median(abs(d) for d in diffs) / math.sqrt(2), source)
            for key, (diffs, source) in scales.items()}
    return found


def process_noise(summaries: Iterable[tuple[object, object]], min_df: int = MIN_PROCESS_DF) -> dict[str, dict[str, dict]]:
    """machine_id → metric → case_id or "*" → (SD of one process's log value within its run, where from), for the
    noisy metrics, from runs with two or more ok processes of a case; each figure needs `min_df` degrees of
    freedom (processes minus one per run and case). `summaries`: (run, its ok rows' summary columns `machine_id`,
    `case_id` and `value_<metric>` of the noisy metrics), as ResultsFolder.summaries gives them: no record is parsed."""
    import pandas as pd

    frames = [table.to_pandas().assign(run=index) for index, (_run, table) in enumerate(summaries)]
    squares: dict[tuple[str, str], dict[str, list[float]]] = {}
    if not frames:
        return {}
    rows = pd.concat(frames, ignore_index=True)
    rows["machine_id"] = rows["machine_id"].astype(str)
    for name in NOISY_METRICS:
        values = rows[f"value_{name}"].to_numpy(dtype=float, na_value=np.nan)
        usable = np.isfinite(values) & (values > 0)
        part = rows.loc[usable, ["run", "machine_id", "case_id"]].assign(log=np.log(values[usable]))
        groups = part.groupby(["run", "machine_id", "case_id"], sort=False)["log"]
        per_run = pd.DataFrame({"ss": groups.var(ddof=0) * groups.count(), "df": groups.count() - 1})
        per_run = per_run[per_run["df"] > 0].groupby(level=["machine_id", "case_id"]).sum()
        for (machine_id, case_id), row in per_run.iterrows():
            squares.setdefault((machine_id, name), {})[case_id] = [float(row["ss"]), int(row["df"])]
    found: dict[str, dict[str, dict]] = {}
    for (machine_id, metric), by_case in sorted(squares.items()):
        total, df = sum(e[0] for e in by_case.values()), sum(e[1] for e in by_case.values())
        if df < min_df:
            continue
        figures = {"*": (math.sqrt(total / df), f"measured within runs in history, {df} df")}
        figures.update({case_id: (math.sqrt(ss / n), f"measured within runs of the case in history, {n} df")
                        for case_id, (ss, n) in by_case.items() if n >= min_df})
        found.setdefault(machine_id, {})[metric] = figures
    return found
