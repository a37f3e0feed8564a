"""Per-record summary columns: the one definition of what history readers compute with, as an Arrow table.

A run's summary has one row per record: every column of the history frame (qbench.history.frame.COLUMNS, but
`file` and `run_complete`, which belong to the file), each metric's per-process value (`value_<metric>`, as
qbench.metrics extracts it), for noisy metrics the relative error of the run's point of that case (`rel_err_<metric>`:
qbench.history.series' precision of the median over the case's pooled samples in this run), the key that pairs an
int8 case with its fp32 parent (`pair_key`), the worker environment as JSON (`environment`) and the raw latency
samples (`latency_samples`).

The columnar store (qbench.history.columnar, store v2) writes these columns at compaction, once, from records that
passed the value rules; readers of a compacted run read only the columns they name and never parse its records.
A JSON-lines run gets the same table from its records (`summary_table`), so both kinds read as one history.
Values of an unexpected type (a hand-edited file) become null here rather than an error: the value rules decide
what is left out, this table only carries it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict

import pyarrow as pa

from qbench.history.frame import COLUMNS, record_row
from qbench.metrics import METRICS
from qbench.records import RunRecord

__all__ = ["SCHEMA", "FILE_COLUMNS", "NOISY", "summary_table", "run_summary", "empty_summary", "pair_digest"]

_STRINGS = ("run_id", "record_id", "suite", "case_id", "case_version", "model", "mode", "engine", "weights", "qconfig",
            "runner", "status", "reason", "machine_id", "cpu_model", "isa", "cpu_capability", "torch",
            "torchvision", "python", "qbench_commit", "started_at", "eval_subset")
_INTEGERS = ("batch_size", "threads", "latency_n")
_BOOLEANS = ("qbench_dirty", "labelled", "cache_hit")
# Columns of the history frame that describe the file a record is in, not the record.
FILE_COLUMNS = ("run_complete", "file")
NOISY = tuple(name for name, metric in METRICS.items() if metric.noisy)


def _type(name: str) -> pa.DataType:
    if name in _STRINGS:
        return pa.string()
    if name in _INTEGERS:
        return pa.int64()
    if name in _BOOLEANS:
        return pa.bool_()
    return pa.float64()


SCHEMA = pa.schema(
    [(name, _type(name)) for name in COLUMNS if name not in FILE_COLUMNS]
    + [(f"value_{name}", pa.float64()) for name in METRICS]
    + [(f"rel_err_{name}", pa.float64()) for name in NOISY]
    + [("pair_key", pa.string()), ("environment", pa.string()), ("latency_samples", pa.list_(pa.float64()))])


def _coerce(value, kind: pa.DataType):
    if value is None:
        return None
    if kind == pa.string():
        return value if isinstance(value, str) else None
    if kind == pa.bool_():
        return value if isinstance(value, bool) else None
    if pa.types.is_list(kind):
        return [float(v) for v in value] if isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if kind == pa.int64():
        return int(value) if float(value).is_integer() and abs(value) < 2**63 else None
    return float(value) if math.isfinite(value) else None


def pair_digest(record: RunRecord) -> str:
    """qbench.history.series.pair_key of the record's case, hashed to 16 hex digits."""
    from qbench.history.series import pair_key

    return hashlib.sha256(pair_key(record.case).encode()).hexdigest()[:16]


def _case_errors(records: list[RunRecord]) -> list[dict[str, float | None]]:
    """Per record: rel_err of each noisy metric of its case's point in this run (ok records of one machine, case
    and definition; the others get none)."""
    from qbench.history.series import case_figures

    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        if record.status == "ok":
            groups[(record.machine.get("machine_id"), record.case.case_id, record.case.case_version)].append(index)
    errors: list[dict] = [{} for _ in records]
    for members in groups.values():
        figures = case_figures([records[i] for i in members])
        found = {name: figures[name][1] for name in NOISY if name in figures}
        for index in members:
            errors[index] = found
    return errors


def summary_table(records: list[RunRecord]) -> pa.Table:
    """The summary rows of a run's records (in their order) as a table of SCHEMA."""
    columns: dict[str, list] = {field.name: [] for field in SCHEMA}
    errors = _case_errors(records)
    pairs: dict[str, str] = {}  # case_version -> pair_digest: a function of the case
    environments: dict[int, str] = {}  # id -> JSON of the environment dicts records share (alive during the call)
    for record, case_errors in zip(records, errors):
        row = record_row(record)
        for name in COLUMNS:
            if name not in FILE_COLUMNS:
                columns[name].append(row[name])
        for name, metric in METRICS.items():
            found = metric.extract(record)
            columns[f"value_{name}"].append(found.value if found is not None else None)
        for name in NOISY:
            columns[f"rel_err_{name}"].append(case_errors.get(name))
        version = record.case.case_version
        if version not in pairs:
            pairs[version] = pair_digest(record)
        columns["pair_key"].append(pairs[version])
        if id(record.environment) not in environments:
            environments[id(record.environment)] = json.dumps(record.environment, sort_keys=True, default=str)
        columns["environment"].append(environments[id(record.environment)])
        columns["latency_samples"].append((record.metrics.get("latency") or {}).get("samples"))
    arrays = [pa.array([_coerce(v, field.type) for v in columns[field.name]], field.type) for field in SCHEMA]
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def empty_summary(columns: list[str] | None = None) -> pa.Table:
    schema = SCHEMA if columns is None else pa.schema([SCHEMA.field(name) for name in columns])
    return schema.empty_table()


def run_summary(run, columns: list[str] | None = None, ok_only: bool = False) -> pa.Table:
    """A run's summary rows, only these columns (and only ok records with `ok_only`): read from the store's columns
    for a compacted run, computed from its records for a JSON-lines one. Without ok_only, row i is record i."""
    import pyarrow.compute as pc

    reader = getattr(run, "summary", None)
    if reader is not None:
        return reader(columns, ok_only)
    table = summary_table(run.records)
    if ok_only:
        table = table.filter(pc.equal(table["status"], "ok"))
    return table if columns is None else table.select(columns)
