"""The one table of metrics that qbench compares and tracks: name, units, direction, kind, and how to read each
process's value (and its raw samples) out of a RunRecord. Adding a metric is one entry in METRICS.

Values are kept in the unit the records store (`unit`); `display_unit` and `scale` (display = value * scale) are
what people read and what absolute thresholds are written in (`latency:0.5` is 0.5 ms). Pure and stdlib only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from qbench.errors import ConfigError
from qbench.records import RunRecord
from qbench.stats.summary import percentile

__all__ = ["Metric", "MetricValue", "METRICS", "DIRECTIONS", "KINDS", "get_metric", "metric_names",
           "default_metric_names", "format_value", "achieved_gbps", "peak_bandwidth_pct"]

DIRECTIONS = ("lower", "higher")
KINDS = ("noisy", "deterministic")


@dataclass(frozen=True)
class MetricValue:
    """One process's value of a metric, with the raw samples it was derived from (empty if it has none)."""

    value: float
    samples: tuple[float, ...] = ()


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str
    display_unit: str
    scale: float
    direction: str
    kind: str
    extract: Callable[[RunRecord], MetricValue | None]
    description: str
    compared_by_default: bool = True
    # What the value was measured on (e.g. the accuracy evaluation subset): values on different bases never compare.
    basis: Callable[[RunRecord], str | None] | None = None

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(f"metric {self.name}: direction must be one of {DIRECTIONS}")
        if self.kind not in KINDS:
            raise ValueError(f"metric {self.name}: kind must be one of {KINDS}")

    @property
    def noisy(self) -> bool:
        return self.kind == "noisy"

    def is_worse(self, base: float, candidate: float) -> bool:
        return candidate > base if self.direction == "lower" else candidate < base


def _latency_samples(record: RunRecord) -> list[float]:
    samples = (record.metrics.get("latency") or {}).get("samples") or []
    return [float(s) for s in samples if isinstance(s, (int, float)) and math.isfinite(s) and s > 0]


def _latency(record: RunRecord) -> MetricValue | None:
    samples = _latency_samples(record)
    if not samples:
        return None
    return MetricValue(percentile(sorted(samples), 50), tuple(samples))


def _throughput(record: RunRecord) -> MetricValue | None:
    samples = _latency_samples(record)
    if not samples:
        return None
    batch = record.case.batch_size
    return MetricValue(batch / percentile(sorted(samples), 50), tuple(batch / s for s in samples))


def _field(section: str, key: str) -> Callable[[RunRecord], MetricValue | None]:
    def extract(record: RunRecord) -> MetricValue | None:
        value = (record.metrics.get(section) or {}).get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        return MetricValue(float(value))
    return extract


def _evaluation_subset(record: RunRecord) -> str | None:
    subset = (record.metrics.get("accuracy") or {}).get("subset") or {}
    return subset.get("files_sha256")


def achieved_gbps(bytes_moved: float | None, latency_s: float | None) -> float | None:
    """Achieved memory bandwidth, the one definition: bytes moved per forward / seconds per forward, in GB/s (1e9
    bytes); None when either is missing or the latency is not positive."""
    if not isinstance(bytes_moved, (int, float)) or not isinstance(latency_s, (int, float)) or latency_s <= 0:
        return None
    return bytes_moved / latency_s / 1e9


def peak_bandwidth_pct(gbps: float | None, peaks: dict | None) -> float | None:
    """`gbps` as % of the machine's measured STREAM triad peak (details.peaks): a read-read-write stream, like an
    operator's traffic. The one ceiling every report, claim and roofline uses."""
    triad = (peaks or {}).get("triad_gbps")
    if gbps is None or not isinstance(triad, (int, float)) or triad <= 0:
        return None
    return 100.0 * gbps / triad


def _achieved_bandwidth(record: RunRecord) -> MetricValue | None:
    moved = (record.metrics.get("bandwidth") or {}).get("bytes_total")
    samples = _latency_samples(record)
    median = achieved_gbps(moved, percentile(sorted(samples), 50)) if samples else None
    if median is None:
        return None
    return MetricValue(median, tuple(achieved_gbps(moved, s) for s in samples))


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("latency", "s", "ms", 1e3, "lower", "noisy", _latency,
           "seconds per inference: the median of one process's samples"),
    Metric("throughput", "images/s", "images/s", 1.0, "higher", "noisy", _throughput,
           "batch size / median latency; redundant with latency, so compared only when a threshold names it",
           compared_by_default=False),
    Metric("memory", "bytes", "MB", 1e-6, "lower", "noisy", _field("memory", "peak_rss_run"),
           "peak resident memory of the worker while running the model"),
    Metric("size", "bytes", "MB", 1e-6, "lower", "deterministic", _field("size", "state_dict_bytes"),
           "bytes of the serialized state_dict"),
    Metric("bytes_moved", "bytes", "MB", 1e-6, "lower", "deterministic", _field("bandwidth", "bytes_total"),
           "bytes read and written per forward (weights + activations, counted from one forward's tensors)"),
    Metric("bandwidth", "GB/s", "GB/s", 1.0, "higher", "noisy", _achieved_bandwidth,
           "achieved memory bandwidth: bytes moved per forward / median latency; derived, so compared only "
           "when a threshold names it", compared_by_default=False),
    Metric("top1", "fraction", "%", 100.0, "higher", "deterministic", _field("accuracy", "top1"),
           "top-1 accuracy on the labelled evaluation subset", basis=_evaluation_subset),
    Metric("top5", "fraction", "%", 100.0, "higher", "deterministic", _field("accuracy", "top5"),
           "top-5 accuracy on the labelled evaluation subset", compared_by_default=False, basis=_evaluation_subset),
    Metric("agreement", "fraction", "%", 100.0, "higher", "deterministic", _field("accuracy", "agreement"),
           "share of evaluation images whose top-1 class equals the fp32 parent's", basis=_evaluation_subset),
    Metric("sqnr", "dB", "dB", 1.0, "higher", "deterministic", _field("accuracy", "sqnr_db"),
           "signal-to-quantization-noise ratio of the logits against the fp32 parent's", basis=_evaluation_subset),
)}


def metric_names(table: dict[str, Metric] | None = None) -> tuple[str, ...]:
    return tuple(METRICS if table is None else table)


def default_metric_names(table: dict[str, Metric] | None = None) -> tuple[str, ...]:
    return tuple(name for name, metric in (METRICS if table is None else table).items() if metric.compared_by_default)


def get_metric(name: str, table: dict[str, Metric] | None = None) -> Metric:
    table = METRICS if table is None else table
    if name not in table:
        raise ConfigError(f"unknown metric {name!r}; allowed: {', '.join(table)}")
    return table[name]


_PREFIXES = {"s": ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs"), (1e-9, "ns")),
             "bytes": ((1e9, "GB"), (1e6, "MB"), (1e3, "kB"), (1.0, "B"))}


def format_value(metric: Metric, value: float | None, spread: float | None = None) -> str:
    """A human-readable value with three significant figures in the best-fitting prefix of the metric's unit
    (`12.3 ms`), with `±spread` in the same prefix when given."""
    if value is None or not math.isfinite(value):
        return "-"
    prefixes = _PREFIXES.get(metric.unit)
    if prefixes:
        factor, label = next(((f, l) for f, l in prefixes if abs(value) >= f), prefixes[-1])
    else:
        factor, label = 1.0 / metric.scale, metric.display_unit
    text = _three_figures(value / factor)
    if spread:
        text += f"±{_two_figures(spread / factor)}"
    return f"{text} {label}"


def _three_figures(number: float) -> str:
    return f"{number:.0f}" if abs(number) >= 1000 else f"{number:.3g}"


def _two_figures(number: float) -> str:
    return f"{number:.0f}" if abs(number) >= 100 else f"{number:.2g}"
