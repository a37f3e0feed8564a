"""When adaptive latency sampling may stop: the distribution-free 95% interval of the median of the samples so far
(order statistics at ranks n/2 ∓ 1.96·√n/2, the normal approximation of the binomial), and its half-width relative
to the median. Standard library only."""

from __future__ import annotations

import math
import statistics

__all__ = ["Z95", "median_ci", "relative_halfwidth"]

Z95 = 1.959964


def median_ci(samples: list[float], z: float = Z95) -> tuple[float, float] | None:
    """(low, high) order statistics bracketing the median at ~95%, or None with fewer than 6 samples (too few
    for ranks inside the sample)."""
    n = len(samples)
    if n < 6:
        return None
    ordered = sorted(samples)
    half = z * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half) - 1)   # 0-based ranks, widened outwards to stay conservative
    high = min(n - 1, math.ceil(n / 2 + half))
    return ordered[low], ordered[high]


def relative_halfwidth(samples: list[float]) -> float | None:
    """(high - low) / 2 / median of median_ci, or None when it is not defined yet."""
    interval = median_ci(samples)
    if interval is None:
        return None
    median = statistics.median(samples)
    if median <= 0:
        return None
    return (interval[1] - interval[0]) / 2 / median
