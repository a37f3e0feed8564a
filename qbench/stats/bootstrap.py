"""Seeded percentile bootstrap of the ratio of two medians (both sides resampled), vectorised with numpy: a report
of the full grid bootstraps ~1,700 speedups of 2,000 resamples each, which took minutes as Python loops."""

from __future__ import annotations

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
    `resamples` times from numpy.random.default_rng(seed): seeded, so repeatable."""
    import numpy as np

    rng = np.random.default_rng(seed)
    a, b = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    tops = np.median(a[rng.integers(0, len(a), size=(resamples, len(a)))], axis=1)
    bottoms = np.median(b[rng.integers(0, len(b), size=(resamples, len(b)))], axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(tops / bottoms, [tail, 100.0 - tail])
    return float(low), float(high)
