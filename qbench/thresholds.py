"""Regression thresholds: the grammar, the defaults, and which threshold applies to one case and metric.

Grammar (pytest-benchmark's compare-fail, per metric): `metric:N%` is a relative change (`latency:5%`), `metric:N`
an absolute one in the metric's display unit (`latency:0.5` is 0.5 ms, `size:0.1` is 0.1 MB). Several are given as
repeated options or comma-separated (`latency:5%,size:0.1%`). A change regresses only when it is larger than the
threshold (strictly), so `size:0%` flags any change.

Which threshold applies (ThresholdPolicy): one given on the command line is used as is. Otherwise the candidate
run's suite file ([thresholds] table), else the default below. For history's step detection that configured
threshold is raised to the case's measured noise (noise.json written by `qbench noise`) when the noise is larger,
never lowered by it; compare leaves the threshold as configured and puts the noise into its test instead
(ThresholdPolicy.noise_for, DEFAULT_NOISE, qbench.stats.significance; docs/compare.md).

DEFAULT_NOISE (log standard deviations, used when neither noise.json nor the machine's history gives a figure:
qbench.compare.noise_model): latency 9% per process and 8% per run, which add up to the A/A pair of `quick` on the
AVX2 fixture host (tests/fixtures/records/avx2-amd-epyc-zen3: RMS log ratio 0.174 over 12 single-process cases,
0.123 per run); memory 0.6% and 0.5% from the same pair (RMS 1.18%, 0.83% per run).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from qbench.errors import ConfigError
from qbench.metrics import METRICS, Metric, get_metric
from qbench.stats.significance import Noise

__all__ = ["Threshold", "ThresholdPolicy", "DEFAULT_THRESHOLDS", "DEFAULT_NOISE", "parse_threshold",
           "parse_thresholds", "parse_threshold_table", "noise_from_fraction", "GRAMMAR"]

GRAMMAR = "metric:N% (relative) or metric:N (absolute, in the metric's display unit)"
_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)")


@dataclass(frozen=True)
class Threshold:
    """The largest change of `metric` that is not a regression: a fraction when `relative`, else an amount in the
    metric's stored unit (seconds, bytes). `source` says where it came from, for the reasons people read."""

    metric: str
    value: float
    relative: bool
    source: str = "command line"

    def allowed_fraction(self, base: float) -> float:
        """This threshold as a fraction of `base` (an absolute one relative to the base value)."""
        if self.relative:
            return self.value
        return self.value / abs(base) if base else (0.0 if self.value == 0 else float("inf"))

    def exceeded(self, base: float, candidate: float) -> bool:
        """Whether the change from base to candidate is larger than this threshold (float rounding aside)."""
        if self.relative and base == 0:
            return candidate != 0
        change = abs(candidate - base)
        limit = self.value * abs(base) if self.relative else self.value
        return change > limit and not math.isclose(change, limit, rel_tol=1e-9)

    def describe(self, table: Mapping[str, Metric] | None = None) -> str:
        if self.relative:
            return f"{self.value * 100:g}%"
        metric = get_metric(self.metric, table)
        return f"{self.value * metric.scale:g} {metric.display_unit}"

    def spec(self, table: Mapping[str, Metric] | None = None) -> str:
        """The grammar form that parses back to this threshold (without its source)."""
        if self.relative:
            return f"{self.metric}:{self.value * 100:g}%"
        return f"{self.metric}:{self.value * get_metric(self.metric, table).scale:g}"


DEFAULT_THRESHOLDS: dict[str, Threshold] = {
    "latency": Threshold("latency", 0.10, True, "default"),
    "throughput": Threshold("throughput", 0.10, True, "default"),
    "memory": Threshold("memory", 0.05, True, "default"),
    "size": Threshold("size", 0.001, True, "default"),
    "bytes_moved": Threshold("bytes_moved", 0.001, True, "default"),
    "bandwidth": Threshold("bandwidth", 0.10, True, "default"),
    # Accuracy on a fixed subset is deterministic on one ISA: absolute changes, in the stored unit (a fraction).
    "top1": Threshold("top1", 0.005, False, "default"),
    "top5": Threshold("top5", 0.005, False, "default"),
    "agreement": Threshold("agreement", 0.01, False, "default"),
    "sqnr": Threshold("sqnr", 1.0, False, "default"),
}


# Assumed noise of compare's test (qbench.stats.significance), log standard deviations: `process` is used when
# both sides have a single process, `run` when the machine's history has too few runs to measure it.
DEFAULT_NOISE: dict[str, Noise] = {
    "latency": Noise(0.09, 0.08),
    "throughput": Noise(0.09, 0.08),
    "bandwidth": Noise(0.09, 0.08),
    "memory": Noise(0.006, 0.005),
}


def parse_threshold(text: str, source: str = "command line", table: Mapping[str, Metric] | None = None) -> Threshold:
    """One `metric:N%` or `metric:N`; a ConfigError naming the mistake and the allowed metrics otherwise."""
    table = METRICS if table is None else table
    allowed = ", ".join(table)
    spec = text.strip()
    name, colon, amount = spec.partition(":")
    name, amount = name.strip(), amount.strip()
    if not colon or not name:
        raise ConfigError(f"threshold {text!r} must be {GRAMMAR}; metrics: {allowed}")
    if name not in table:
        raise ConfigError(f"threshold {text!r}: unknown metric {name!r}; allowed: {allowed}")
    metric = table[name]
    relative = amount.endswith("%")
    number = amount[:-1].strip() if relative else amount
    if not _NUMBER.fullmatch(number):
        raise ConfigError(f"threshold {text!r}: {amount or 'nothing'!r} is not a non-negative number such as "
                          f"{name}:5% or {name}:0.5 ({metric.display_unit})")
    value = float(number) / 100.0 if relative else float(number) / metric.scale
    return Threshold(name, value, relative, source)


def parse_thresholds(texts: Iterable[str], source: str = "command line",
                     table: Mapping[str, Metric] | None = None) -> tuple[Threshold, ...]:
    """Several specs, each possibly comma-separated; a metric given twice is an error."""
    parsed: dict[str, Threshold] = {}
    for text in texts:
        for part in text.split(","):
            if not part.strip():
                raise ConfigError(f"threshold {text!r} has an empty part; expected {GRAMMAR}")
            threshold = parse_threshold(part, source, table)
            if threshold.metric in parsed:
                raise ConfigError(f"threshold for {threshold.metric} given twice ({part.strip()!r} and "
                                  f"{parsed[threshold.metric].describe(table)!r})")
            parsed[threshold.metric] = threshold
    return tuple(parsed.values())


def parse_threshold_table(data: Mapping, where: str, source: str,
                          table: Mapping[str, Metric] | None = None) -> tuple[Threshold, ...]:
    """A suite file's [thresholds] table: metric = "5%" or metric = "0.5" (display unit); strict."""
    table = METRICS if table is None else table
    thresholds = []
    for name, value in data.items():
        if name not in table:
            raise ConfigError(f"{where}: unknown metric {name!r}; allowed: {', '.join(table)}")
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {name} must be a string such as \"5%\" (relative) or \"0.5\" "
                              f"(absolute, {table[name].display_unit}), got {value!r}")
        try:
            thresholds.append(parse_threshold(f"{name}:{value}", source, table))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(thresholds)


@dataclass(frozen=True)
class ThresholdPolicy:
    """Chooses the threshold for one case and metric.

    command_line: used as is. suites: thresholds per suite key (the candidate record's suite sha256, else its
    name). noise: measured relative noise, machine_id (or "*" for any machine) → case_id → metric → fraction.
    assumed: the noise compare's test assumes per metric where it cannot measure it (DEFAULT_NOISE).
    run_noise: machine_id → metric → case_id or "*" (all cases) → (SD of a run's log level, where from), measured
    from history (qbench.compare.noise_model.run_noise); the larger of the case's and the machine's beats
    `assumed`. process_noise: the same for one process around its run's level (noise_model.process_noise).
    """

    command_line: tuple[Threshold, ...] = ()
    suites: Mapping[str, tuple[Threshold, ...]] = field(default_factory=dict)
    noise: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)
    defaults: Mapping[str, Threshold] = field(default_factory=lambda: dict(DEFAULT_THRESHOLDS))
    assumed: Mapping[str, Noise] = field(default_factory=lambda: dict(DEFAULT_NOISE))
    run_noise: Mapping[str, Mapping[str, Mapping[str, tuple[float, str]]]] = field(default_factory=dict)
    process_noise: Mapping[str, Mapping[str, Mapping[str, tuple[float, str]]]] = field(default_factory=dict)

    def threshold_for(self, metric: str, base: float, *, case_id: str, machine_id: str | None = None,
                      suite: str | None = None, raise_to_noise: bool = True) -> Threshold:
        """The threshold of one case and metric; `raise_to_noise=False` leaves noise.json out (compare, whose test
        takes the noise into its variance instead, so that it is not counted twice)."""
        given = _find(self.command_line, metric)
        if given is not None:
            return given
        configured = _find(self.suites.get(suite, ()), metric) if suite is not None else None
        configured = configured or self.defaults.get(metric) or Threshold(metric, 0.0, True, "no default")
        if not raise_to_noise:
            return configured
        fraction = self.noise_fraction(metric, case_id=case_id, machine_id=machine_id)
        if fraction is not None and fraction > configured.allowed_fraction(base):
            return Threshold(metric, fraction, True, "noise.json")
        return configured

    def noise_for(self, metric: str, *, case_id: str, machine_id: str | None = None) -> Noise:
        """The noise compare's test assumes for one case and metric. Process part: the case's noise.json figure
        (noise_from_fraction), else measured within the runs of the machine's history (process_noise), else the
        metric's default. Run part: measured from the machine's history (run_noise), else the default. A measured
        figure is the larger of the case's and the machine's."""
        default = self.assumed.get(metric) or DEFAULT_NOISE.get(metric) or DEFAULT_NOISE["latency"]
        fraction = self.noise_fraction(metric, case_id=case_id, machine_id=machine_id)
        process, source = _measured(self.process_noise, machine_id, metric, case_id) or \
            (default.process, default.source)
        if fraction is not None:
            process, source = noise_from_fraction(fraction), "noise.json"
        run, run_source = _measured(self.run_noise, machine_id, metric, case_id) or (default.run, default.run_source)
        return Noise(process, run, source, run_source)

    def noise_fraction(self, metric: str, *, case_id: str, machine_id: str | None) -> float | None:
        for key in (machine_id, "*"):
            value = ((self.noise.get(key) or {}).get(case_id) or {}).get(metric)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None


def noise_from_fraction(fraction: float) -> float:
    """noise.json's figure (the 95th percentile of max/min - 1 between two processes) as the standard deviation of
    one process's log value: for two values with log SD σ each, |log a - log b| is half-normal with scale σ·√2, so
    its 95th percentile is 1.96·√2·σ."""
    return math.log1p(max(fraction, 0.0)) / (1.959964 * math.sqrt(2.0))


def _measured(figures: Mapping, machine_id: str | None, metric: str, case_id: str) -> tuple[float, str] | None:
    """The larger of the machine's ("*") and the case's measured figure, None when neither is known."""
    measured = (figures.get(machine_id) or {}).get(metric) or {}
    found = [measured[key] for key in ("*", case_id) if key in measured]
    return max(found) if found else None


def _find(thresholds: Iterable[Threshold], metric: str) -> Threshold | None:
    return next((t for t in thresholds if t.metric == metric), None)
