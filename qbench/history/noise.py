"""A/A noise: how far apart repeated measurements of unchanged code land, per case and noisy metric, kept as
`results/<machine_id>/noise.json` for compare and history to use as minimum effects.

The estimate for one case and metric is the 95th percentile, over all pairs of repeats (each repeat a separate
process), of max/min - 1: the relative step that two measurements of the same code show without any change.
Why this and not a standard deviation: it answers the detector's question directly (a step smaller than this is
what A/A repeats already produce), it makes no assumption about the shape of the noise (VM hiccups give heavy
tails, and they show up here instead of being averaged away), and max/min - 1 is symmetric, so latency and the
throughput derived from it get the same figure. With few repeats it is close to the relative range (max/min - 1)
of the repeats, a conservative figure. Repeats taken within minutes miss slower drift (other tenants, thermal
state), so a floor applies (NOISE_FLOOR).

noise.json (schema_version 1): {"schema_version": 1, "machine_id", "created_at" (ISO UTC), "suite": {name, sha256},
"repeats", "thresholds": {"<case_id>": {"<metric>": fraction}}}.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

from qbench.errors import StoreError
from qbench.history.files import read_versioned, write_json_atomic
from qbench.metrics import METRICS
from qbench.records import RunRecord
from qbench.history.series import record_values
from qbench.stats.summary import percentile

__all__ = ["NOISE_SCHEMA_VERSION", "NOISY_METRICS", "QUANTILE", "NOISE_FLOOR", "relative_noise",
           "estimate_thresholds", "noise_document", "noise_path", "write_noise", "load_noise"]

NOISE_SCHEMA_VERSION = 1
NOISY_METRICS = tuple(name for name, metric in METRICS.items() if metric.noisy)
QUANTILE = 95.0
NOISE_FLOOR = 0.01
FILE_NAME = "noise.json"


def relative_noise(values: Iterable[float], quantile: float = QUANTILE) -> float | None:
    """The `quantile` percentile of max/min - 1 over all pairs of values; None with fewer than two."""
    values = [v for v in values if v > 0]
    if len(values) < 2:
        return None
    steps = sorted(max(a, b) / min(a, b) - 1.0 for a, b in itertools.combinations(values, 2))
    return percentile(steps, quantile)


def estimate_thresholds(records: Iterable[RunRecord], floor: float = NOISE_FLOOR) -> dict[str, dict[str, float]]:
    """case_id → metric → threshold, from the ok records of A/A repeats (one record per process)."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if record.status != "ok":
            continue
        for metric, value in record_values(record).items():
            if metric in NOISY_METRICS:
                values[record.case_id][metric].append(value)
    thresholds = {}
    for case_id, by_metric in sorted(values.items()):
        found = {m: relative_noise(v) for m, v in by_metric.items()}
        kept = {m: round(max(v, floor), 6) for m, v in sorted(found.items()) if v is not None}
        if kept:
            thresholds[case_id] = kept
    return thresholds


def noise_document(machine_id: str, suite: dict, repeats: int, thresholds: dict[str, dict[str, float]],
                   created_at: str | None = None) -> dict:
    created_at = created_at or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"schema_version": NOISE_SCHEMA_VERSION, "machine_id": machine_id, "created_at": created_at,
            "suite": {"name": suite.get("name"), "sha256": suite.get("sha256")}, "repeats": repeats,
            "thresholds": thresholds}


def noise_path(root: Path | str, machine_id: str) -> Path:
    return Path(root) / machine_id / FILE_NAME


def write_noise(root: Path | str, document: dict) -> Path:
    """Write (atomically, replacing any earlier one) the machine's noise.json; returns its path."""
    return write_json_atomic(noise_path(root, document["machine_id"]), document)


def load_noise(path: Path | str) -> dict[str, dict[str, float]]:
    """case_id → metric → fraction from a noise.json; {} when the file does not exist."""
    path = Path(path)
    data = read_versioned(path, "noise thresholds", NOISE_SCHEMA_VERSION, missing={})
    if not data:
        return {}
    thresholds = data.get("thresholds")
    valid = isinstance(thresholds, dict) and all(
        isinstance(m, dict) and all(isinstance(v, (int, float)) and v >= 0 for v in m.values())
        for m in thresholds.values())
    if not valid:
        raise StoreError(f"{path}: thresholds must map case ids to {{metric: non-negative fraction}}")
    return {case: {metric: float(v) for metric, v in metrics.items()} for case, metrics in thresholds.items()}
