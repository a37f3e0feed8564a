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
import math

from qbench.metrics import METRICS, achieved_gbps
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


def summary_for(run) -> dict[str, list] | None:
    """The run's COLUMNS as Python lists, or None when it is to be pooled from its records."""
    if getattr(run, "summary", None) is None or getattr(run, "version", 0) < 2 or not getattr(run, "checked", False):
        return None
    table = run.summary(list(COLUMNS))
    columns = {name: table.column(name).to_pylist() for name in COLUMNS}
    for name in REQUIRED:
        if any(value is None for value in columns[name]):
            return None
    for latency, samples, bandwidth, moved in zip(columns["value_latency"], columns["latency_samples"],
                                                  columns["value_bandwidth"], columns["value_bytes_moved"]):
        if (latency is not None and samples is None) or (bandwidth is not None and moved is None):
            return None
    return columns


def pool_summary(columns: dict[str, list], run, run_started_at: str, night: str, pools: dict[tuple, Pool],
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
        samples = _samples(columns, row, status, batch)
        key = Pool.key_of(machine_id, commit, environment(env_text), night)
        pool = pools.get(key)
        if pool is None:
            pool = pools[key] = Pool.empty(key, run_started_at)
        pool.add_case(run_started_at, run_id, started_at, lambda: environment(env_text), suite, duration_s,
                      axis_values(model, mode, engine, batch, threads, weights), status, samples)
        if machine_id not in machines or started_at > machines[machine_id][0]:
            machines[machine_id] = (started_at, MachineAt(run, row))


def _samples(columns: dict[str, list], row: int, status: str, batch: int) -> dict[str, list[float]]:
    """qbench.report.asv_pool.metric_samples of every metric, from the row's columns."""
    if status != "ok":
        return {}
    found = {name: [value] for name in METRICS if name not in FROM_SAMPLES
             and (value := columns[f"value_{name}"][row]) is not None}
    latency = [s for s in columns["latency_samples"][row] or () if math.isfinite(s) and s > 0]
    if latency:
        found["latency"] = latency
        found["throughput"] = [batch / s for s in latency]
        if columns["value_bandwidth"][row] is not None:
            moved = columns["value_bytes_moved"][row]
            found["bandwidth"] = [achieved_gbps(moved, s) for s in latency]
    return found
