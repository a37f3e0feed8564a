"""Summaries derived from raw samples on read (never trusted from disk). Pure functions, stdlib only."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

__all__ = ["Summary", "summarize", "percentile"]


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    q1: float
    q3: float
    p90: float
    p99: float
    mean: float
    stdev: float
    minimum: float
    maximum: float

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    @property
    def relative_iqr(self) -> float:
        return self.iqr / self.median if self.median else math.nan


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), q in [0, 100]."""
    if not sorted_values:
        return math.nan
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summarize(samples: list[float]) -> Summary | None:
    if not samples:
        return None
    values = sorted(samples)
    mean = statistics.fmean(values)
    return Summary(
        n=len(values),
        median=percentile(values, 50),
        q1=percentile(values, 25),
        q3=percentile(values, 75),
        p90=percentile(values, 90),
        p99=percentile(values, 99),
        mean=mean,
        # float arithmetic (statistics.stdev is exact, in Fractions: 1 ms per record, minutes over a full grid)
        stdev=math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0,
        minimum=values[0],
        maximum=values[-1],
    )
