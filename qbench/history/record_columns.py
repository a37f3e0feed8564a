"""A record as the columns of a store v2 file and back (qbench.history.columnar): its parts as JSON columns, and the
fields qbench.metrics extracts as summary columns (qbench.history.summary)."""

from __future__ import annotations

import json

__all__ = ["SECTIONS", "SHARED", "ABSENT", "METRIC_FIELDS", "sections", "decoded", "metrics_from",
           "checked_case"]

# Parts of a record kept as JSON columns of their own; every other field goes into `json_rest`.
SECTIONS = ("case", "metrics", "details", "machine", "environment", "qbench", "suite", "worker")
SHARED = ("case", "machine", "environment", "qbench", "suite")  # few distinct values per run: parsed once each


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False)


def sections(dicts: list[dict]) -> dict[str, list]:
    columns = {f"json_{name}": [] for name in (*SECTIONS, "rest")}
    for line in dicts:
        for name in SECTIONS:
            columns[f"json_{name}"].append(_dumps(line[name]) if name in line else None)
        columns["json_rest"].append(_dumps({k: v for k, v in line.items() if k not in SECTIONS}))
    return columns


ABSENT = object()
# Summary column -> where qbench.metrics reads it in a record (section, field, ...).
METRIC_FIELDS = {"latency_samples": ("latency", "samples"), "size_bytes": ("size", "state_dict_bytes"),
                  "peak_rss_run_bytes": ("memory", "peak_rss_run"), "bytes_moved": ("bandwidth", "bytes_total"),
                  "top1": ("accuracy", "top1"), "top5": ("accuracy", "top5"), "agreement": ("accuracy", "agreement"),
                  "sqnr_db": ("accuracy", "sqnr_db"), "labelled": ("accuracy", "labelled"),
                  "eval_subset": ("accuracy", "subset", "files_sha256")}


def checked_case(data: dict, version):
    """The Case of a record that passed compaction's checks, its case_version (checked then: it matched the
    definition) taken as stored instead of hashed again."""
    from qbench.records import Case

    case = Case.from_dict(data)
    if isinstance(version, str):
        case.__dict__["case_version"] = version  # functools.cached_property's slot
    return case


def metrics_from(values: dict) -> dict:
    metrics: dict = {}
    for name, path in METRIC_FIELDS.items():
        if values[name] is None:
            continue
        place = metrics
        for part in path[:-1]:
            place = place.setdefault(part, {})
        place[path[-1]] = values[name]
    return metrics


def decoded(column) -> list:
    """The JSON values of a column, row by row (ABSENT for null); a dictionary column's values are parsed once each,
    so rows with the same text share one (read-only) object."""
    import pyarrow as pa

    column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_dictionary(column.type):
        values = [json.loads(text) for text in column.dictionary.to_pylist()]
        return [ABSENT if i is None else values[i] for i in column.indices.to_pylist()]
    return [ABSENT if text is None else json.loads(text) for text in column.to_pylist()]
