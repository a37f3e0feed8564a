"""Seeded percentile bootstrap of the ratio of two medians (both sides resampled); standard library only."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

from qbench.stats.summary import percentile

__all__ = ["percentile_interval", "ratio_of_medians_interval"]


def percentile_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """The central `confidence` interval of `values` by linear interpolation (numpy.percentile's default)."""
    tail = (1.0 - confidence) / 2.0 * 100.0
    ordered = sorted(values)
    return percentile(ordered, tail), percentile(ordered, 100.0 - tail)


def ratio_of_medians_interval(numerator: Sequence[float], denominator: Sequence[float], resamples: int,
                              confidence: float, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of median(numerator) / median(denominator) with both sides resampled with replacement
    `resamples` times from random.Random(seed): seeded, so repeatable."""
    rng = random.Random(seed)
    a, b = [float(v) for v in numerator], [float(v) for v in denominator]
    tops = [statistics.median(rng.choices(a, k=len(a))) for _ in range(resamples)]
    bottoms = [statistics.median(rng.choices(b, k=len(b))) for _ in range(resamples)]
    return percentile_interval([top / bottom for top, bottom in zip(tops, bottoms)], confidence)
