"""A compacted run pooled for the asv export from its summary columns (qbench.history.summary), not its records.

Store v2 keeps per record its identity, provenance, environment, each metric's per-process value and the raw latency
samples as columns, so the dashboard of a year of nightlies reads a few columns per run instead of parsing every
record (what `qbench publish` spent most of its time on). What is pooled equals what Pool.add pools from the same
records (tests/test_dashboard_columns.py): each metric's raw values as qbench.metrics extracts them, that is the
latency samples (positive ones), throughput (batch / sample) and bandwidth (bytes moved / sample) derived from them,
and one value for every other metric. A machine's fingerprint (for asv's machine.json) is parsed from the one record
that names it last.

Runs the columns cannot stand for are pooled from their records as before (`summary_for` says None): JSON-lines
runs, store v1, runs compacted under other value rules (their records are checked again on reading), and runs with a
row whose values the columns do not carry (a field of the wrong type that the summary nulls and the metric reads).
"""

from __future__ import annotations

import json
from array import array

from qbench.metrics import METRICS
from qbench.report.asv_pool import Pool, axis_values

__all__ = ["COLUMNS", "summary_for", "pool_summary", "MachineAt"]

VALUES = tuple(f"value_{name}" for name in METRICS)
COLUMNS = ("run_id", "suite", "model", "mode", "engine", "batch_size", "threads", "weights", "status", "machine_id",
           "qbench_commit", "started_at", "duration_s", "environment", "latency_samples",
           *VALUES)
# Never null in a record that the history reads: a null here means the summary could not carry the field.
REQUIRED = ("run_id", "model", "mode", "batch_size", "threads", "status", "started_at", "duration_s", "environment")
FROM_SAMPLES = ("latency", "throughput", "bandwidth")


class MachineAt:
    """The machine fingerprint of row `row` of a compacted run, parsed when asked (once per machine shown)."""

    def __init__(self, run, row: int):
        self.run, self.row = run, row

    def machine(self) -> dict:
        return self.run.records_at([self.row])[0].machine


def summary_for(run) -> dict | None:
    """The run's COLUMNS as Python lists (latency_samples as SampleColumns), or None when it is to be pooled from
    its records."""
    if getattr(run, "summary", None) is None or getattr(run, "version", 0) < 2 or not getattr(run, "checked", False):
        return None
    table = run.summary(list(COLUMNS))
    columns = {name: table.column(name).to_pylist() for name in COLUMNS if name != "latency_samples"}
    for name in REQUIRED:
        if any(value is None for value in columns[name]):
            return None
    samples = table.column("latency_samples")
    for latency, present, bandwidth, moved in zip(columns["value_latency"], samples.is_valid().to_pylist(),
                                                  columns["value_bandwidth"], columns["value_bytes_moved"]):
        if (latency is not None and not present) or (bandwidth is not None and moved is None):
            return None
    columns["latency_samples"] = SampleColumns(samples, columns["batch_size"], columns["value_bytes_moved"])
    return columns


class SampleColumns:
    """Each row's raw values of the metrics read from latency samples (qbench.metrics: the positive samples,
    batch / sample, bytes moved / sample / 1e9), computed for the whole run at once with numpy, in the same float
    operations as qbench.metrics, so the values are the same to the bit."""

    def __init__(self, column, batch: list, moved: list):
        import numpy as np
        import pyarrow.compute as pc

        lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
        flat = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.float64)
        rows = np.repeat(np.arange(len(lengths)), lengths)
        keep = np.isfinite(flat) & (flat > 0)
        if not keep.all():
            flat, rows = flat[keep], rows[keep]
            lengths = np.bincount(rows, minlength=len(lengths))
        self.ends = np.cumsum(lengths).tolist()
        self.starts = [0, *self.ends[:-1]]
        moved = np.array([np.nan if m is None else m for m in moved], dtype=np.float64)
        self.latency = flat
        self.throughput = np.array(batch, dtype=np.float64)[rows] / flat
        self.bandwidth = moved[rows] / flat / 1e9

    def of(self, row: int, name: str) -> array:
        found = array("d")
        found.frombytes(getattr(self, name)[self.starts[row]:self.ends[row]].tobytes())
        return found


def pool_summary(columns: dict, run, run_started_at: str, night: str, pools: dict[tuple, Pool],
                 machines: dict[str, tuple]) -> None:
    """Pool every row of `columns` (summary_for) like Pool.add pools the run's records, in their order; `machines`
    gets (started_at, MachineAt) for a machine this run names last."""
    environments: dict[str, dict] = {}

    def environment(text: str) -> dict:
        if text not in environments:
            environments[text] = json.loads(text)
        return environments[text]

    for row, (run_id, suite, model, mode, engine, batch, threads, weights, status, machine_id, commit, started_at,
              duration_s, env_text) in enumerate(zip(*(columns[name] for name in COLUMNS[:14]))):
        samples = _samples(columns, row, status)
        key = Pool.key_of(machine_id, commit, environment(env_text), night)
        pool = pools.get(key)
        if pool is None:
            pool = pools[key] = Pool.empty(key, run_started_at)
        pool.add_case(run_started_at, run_id, started_at, lambda: environment(env_text), suite, duration_s,
                      axis_values(model, mode, engine, batch, threads, weights), status, samples)
        if machine_id not in machines or started_at > machines[machine_id][0]:
            machines[machine_id] = (started_at, MachineAt(run, row))


def _samples(columns: dict, row: int, status: str) -> dict:
    """qbench.report.asv_pool.metric_samples of every metric, from the row's columns."""
    if status != "ok":
        return {}
    found = {name: (value,) for name in METRICS if name not in FROM_SAMPLES
             and (value := columns[f"value_{name}"][row]) is not None}
    samples = columns["latency_samples"]
    if samples.starts[row] < samples.ends[row]:
        found["latency"] = samples.of(row, "latency")
        found["throughput"] = samples.of(row, "throughput")
        if columns["value_bandwidth"][row] is not None:
            found["bandwidth"] = samples.of(row, "bandwidth")
    return found
