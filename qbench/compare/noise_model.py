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
from collections.abc import Iterable

import numpy as np

from qbench.history.series import Series
from qbench.metrics import METRICS

__all__ = ["MIN_RUN_DIFFERENCES", "MIN_CASE_DIFFERENCES", "MIN_PROCESS_DF", "NOISY_METRICS", "SUMMARY_COLUMNS", "process_noise_figures",
           "NOISE_COLUMNS", "run_noise", "run_noise_from_summaries", "process_noise"]

MIN_RUN_DIFFERENCES = 8
MIN_CASE_DIFFERENCES = 4
MIN_PROCESS_DF = 4
NOISY_METRICS = tuple(name for name, metric in METRICS.items() if metric.noisy)
# What process_noise reads of each run's summary.
SUMMARY_COLUMNS = ["machine_id", "case_id", *(f"value_{name}" for name in NOISY_METRICS)]
# What run_noise_from_summaries reads: process_noise's columns, the case version a series is split by, and the
# status (the summaries may hold every row: only ok ones count).
NOISE_COLUMNS = [*SUMMARY_COLUMNS, "case_version", "status"]


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
    return _scales(differences, min_differences, min_case_differences)


def _scales(differences: dict[tuple[str, str], dict[str, list[float]]], min_differences: int,
            min_case_differences: int) -> dict[str, dict[str, dict]]:
    """(machine_id, metric) → case_id → first differences of log values, as figures with their sources."""
    found: dict[str, dict[str, dict]] = {}
    for (machine_id, metric), by_case in sorted(differences.items()):
        pooled = [d for diffs in by_case.values() for d in diffs]
        if len(pooled) < min_differences:
            continue
        scales = {"*": (pooled, f"measured over {len(pooled)} consecutive-run differences in history")}
        scales.update({case_id: (diffs, f"measured over {len(diffs)} consecutive runs of the case in history")
                       for case_id, diffs in by_case.items() if len(diffs) >= min_case_differences})
        found.setdefault(machine_id, {})[metric] = {
            key: (1.4826 * _median_abs(diffs) / math.sqrt(2), source) for key, (diffs, source) in scales.items()}
    return found


def _median_abs(values: list[float]) -> float:
    """statistics.median of the absolute values (the middle one, or the mean of the middle two), sorted as an array."""
    ordered = np.sort(np.abs(np.asarray(values, float)))
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else float((ordered[middle - 1] + ordered[middle]) / 2)


def run_noise_from_summaries(summaries: list[tuple[object, object]], min_differences: int = MIN_RUN_DIFFERENCES,
                             min_case_differences: int = MIN_CASE_DIFFERENCES) -> dict[str, dict[str, dict]]:
    """run_noise of these runs' series of the noisy metrics, from their rows' NOISE_COLUMNS (ok ones count; as
    ResultsFolder.summaries gives them) as coded arrays instead of Series objects: the same points (the median of a
    run's values of a case, same machine and case_version; runs in start order), so the same figures
    (tests/test_fast_paths.py checks the two against each other)."""
    rows = _Rows(summaries, ["machine_id", "case_id", "case_version"])
    differences: dict[tuple[str, str], dict[str, list[float]]] = {}
    if not rows.size:
        return {}
    machine, case, version = rows.codes
    # one integer per series (machine × case × version), and per point (series × run in start order)
    series_of = (machine * (case.max() + 1) + case) * (version.max() + 1) + version
    point_of = series_of * len(rows.rank) + rows.rank[rows.run]
    known = np.min(rows.codes, axis=0) >= 0
    for metric in NOISY_METRICS:
        values = rows.values(metric)
        present = ~np.isnan(values) & known
        if not present.any():
            continue
        # sorted by point, then value: each run's values of a case are one sorted slice
        sort = np.flatnonzero(present)[np.lexsort((values[present], point_of[present]))]
        points, values = point_of[sort], values[sort]
        point_start = np.flatnonzero(np.r_[True, np.diff(points) != 0])
        counts = np.diff(np.r_[point_start, len(values)])
        low, high = values[point_start + (counts - 1) // 2], values[point_start + counts // 2]
        medians = np.where(counts % 2 == 1, low, (low + high) / 2)
        first = sort[point_start]
        codes = series_of[first]
        series = np.cumsum(np.r_[True, np.diff(codes) != 0]) - 1
        usable = np.isfinite(medians) & (medians > 0)
        size = np.bincount(series)
        keep = ((np.bincount(series, weights=usable) == size) & (size >= 3))[series]
        logs = np.log(np.where(usable, medians, 1.0))
        follows = np.r_[False, series[1:] == series[:-1]] & keep
        steps = (logs[1:] - logs[:-1])[follows[1:]]
        for (m, c), diffs in _split_by(machine[first][follows], case[first][follows], steps):
            differences.setdefault((rows.names[0][m], metric), {}).setdefault(rows.names[1][c], []).extend(diffs)
    return _scales(differences, min_differences, min_case_differences)


class _Rows:
    """The summary rows of several runs as arrays: `codes` of the key columns into `names`, each row's run index
    (`run`) and each run's position in start order (`rank`, started_at then run_id, as series order points). Rows
    whose `status` (when the tables have that column) is not ok are left out here, with numpy: a pyarrow compute
    call would load pandas, a third of compare's time on a year of nightlies."""

    def __init__(self, summaries, keys: list[str]):
        self.tables = [table for _run, table in summaries]
        headers = [run.header for run, _table in summaries]
        order = sorted(range(len(headers)), key=lambda i: (str(headers[i].get("started_at") or ""),
                                                           str(headers[i].get("run_id") or "")))
        self.rank = np.empty(len(order), np.int64)
        self.rank[order] = np.arange(len(order))
        run = np.repeat(np.arange(len(self.tables)), [len(table) for table in self.tables])
        self.keep = np.ones(len(run), bool)
        if self.tables and "status" in self.tables[0].column_names:
            status, names = _coded(self.tables, "status")
            self.keep = status == (names.index("ok") if "ok" in names else -2)
        self.run = run[self.keep]
        self.size = len(self.run)
        self.codes, self.names = [], []
        for key in keys:
            codes, names = _coded(self.tables, key)
            self.codes.append(codes[self.keep])
            self.names.append(names)

    def values(self, metric: str) -> np.ndarray:
        if not self.tables:
            return np.empty(0)
        found = np.concatenate([_numbers(chunk, np.float64, np.nan) for table in self.tables
                                for chunk in table.column(f"value_{metric}").chunks] or [np.empty(0)])
        return found[self.keep]


def _coded(tables, key: str) -> tuple[np.ndarray, list[str]]:
    """A string column of every table as codes into one list of names (-1 for null); each table's dictionary is
    mapped once (nights mostly share one)."""
    import pyarrow as pa

    index: dict[str, int] = {}
    parts = []
    last = local = None
    for table in tables:
        column = table.column(key).combine_chunks()
        if not pa.types.is_dictionary(column.type):
            column = column.dictionary_encode()
        if last is None or not column.dictionary.equals(last):
            last = column.dictionary
            local = np.array([index.setdefault(str(name), len(index)) for name in last.to_pylist()] + [-1], np.int64)
        parts.append(local[_numbers(column.indices, np.dtype(column.indices.type.to_pandas_dtype()), -1)])
    return (np.concatenate(parts) if parts else np.empty(0, np.int64)), list(index)


def _numbers(array, dtype, null) -> np.ndarray:
    """A pyarrow array of fixed-width numbers as a numpy array, nulls as `null`, read from its buffers: pyarrow's
    own to_numpy loads pandas."""
    size = len(array)
    if not size:
        return np.empty(0, dtype)
    validity, data = array.buffers()[:2]
    values = np.frombuffer(data, dtype=dtype)[array.offset:array.offset + size]
    if not array.null_count:
        return values
    valid = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")[array.offset:array.offset + size]
    return np.where(valid.astype(bool), values, null)


def _split_by(first: np.ndarray, second: np.ndarray, values: np.ndarray):
    """((first, second), list of values) for each distinct pair of codes, values in their given order."""
    if not len(values):
        return
    sort = np.lexsort((second, first))  # stable: equal keys keep their order
    first, second, values = first[sort], second[sort], values[sort]
    starts = np.flatnonzero(np.r_[True, (np.diff(first) != 0) | (np.diff(second) != 0)])
    for start, stop in zip(starts.tolist(), np.r_[starts[1:], len(values)].tolist()):
        yield (int(first[start]), int(second[start])), values[start:stop].tolist()


def process_noise(summaries: Iterable[tuple[object, object]], min_df: int = MIN_PROCESS_DF) -> dict[str, dict[str, dict]]:
    """machine_id → metric → case_id or "*" → (SD of one process's log value within its run, where from), for the
    noisy metrics, from runs with two or more ok processes of a case; each figure needs `min_df` degrees of
    freedom (processes minus one per run and case). `summaries`: (run, its rows' summary columns `machine_id`,
    `case_id`, `value_<metric>` of the noisy metrics and optionally `status`, when only ok rows count), as
    ResultsFolder.summaries gives them: no record is parsed."""
    rows = _Rows(list(summaries), ["machine_id", "case_id"])
    squares: dict[tuple[str, str], dict[str, list[float]]] = {}
    if not rows.size:
        return {}
    for name in NOISY_METRICS:
        values = rows.values(name)
        usable = np.isfinite(values) & (values > 0) & (np.min(rows.codes, axis=0) >= 0)
        machine, case, run = rows.codes[0][usable], rows.codes[1][usable], rows.run[usable]
        logs = np.log(values[usable])
        if not len(logs):
            continue
        sort = np.lexsort((run, case, machine))
        machine, case, run, logs = machine[sort], case[sort], run[sort], logs[sort]
        starts = np.flatnonzero(np.r_[True, (np.diff(machine) != 0) | (np.diff(case) != 0) | (np.diff(run) != 0)])
        counts = np.diff(np.r_[starts, len(logs)])
        means = np.add.reduceat(logs, starts) / counts
        ss = np.add.reduceat((logs - np.repeat(means, counts)) ** 2, starts)
        several = counts > 1  # a run with one process of a case has no degree of freedom
        machine, case, ss, df = machine[starts][several], case[starts][several], ss[several], counts[several] - 1
        if not len(ss):
            continue
        pair = np.flatnonzero(np.r_[True, (np.diff(machine) != 0) | (np.diff(case) != 0)])
        for m, c, total, n in zip(machine[pair].tolist(), case[pair].tolist(), np.add.reduceat(ss, pair).tolist(),
                                  np.add.reduceat(df, pair).tolist()):
            squares.setdefault((rows.names[0][m], name), {})[rows.names[1][c]] = [total, int(n)]
    return process_noise_figures(squares, min_df)


def process_noise_figures(squares: dict[tuple[str, str], dict[str, list[float]]], min_df: int) -> dict[str, dict]:
    """machine_id -> metric -> {"*" or case_id: (SD of log values, where from)} from the within-run sums of squares
    and degrees of freedom per (machine_id, metric) and case; a figure needs min_df degrees of freedom."""
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
