"""Statistics of a paired A/B comparison: from one latency per process for A and for B in each interleaved pair,
the ratio B/A with a confidence interval and a verdict (slower, faster, same). Pure functions.

Method. Each pair gives the log-ratio d = log(b / a). The ratio is exp(median of the d), and its interval is the
distribution-free interval of that median from order statistics (the sign test inverted), as asv computes it
(asv_runner.statistics.quantile_ci): coverage at least 1 - alpha for any n. The verdict is "slower" or
"faster" when the interval excludes 1, so a false alarm (either direction) happens with probability at most alpha.

Why this method:
* Pairing. The two processes of a pair run within a second of each other, so the slow drift of a shared machine
  moves both and cancels in d. An unpaired test (asv's Mann-Whitney U) throws that away.
* The noise of a shared VM is a mixture (measured with qbench/launch/ab_experiment.py on the 2-core dev VM): most pairs
  agree within a few percent, but a pair whose processes met different host conditions is off by 20-60%. For
  such heavy-tailed noise the median is the efficient centre. On the same measured pairs, the Hodges-Lehmann
  estimate with its Wilcoxon signed-rank interval (our first choice) gave wider intervals in 11 of 12 conditions,
  and a mean (t interval, bootstrap) is dominated by the off pairs.
* It assumes only independent pairs: no normality, not even symmetry (which the Wilcoxon interval needs). It is
  exact (conservative through discreteness) at 8 pairs as at 800, and deterministic: no resampling seed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from asv_runner.statistics import quantile_ci

__all__ = ["PairedComparison", "compare_pairs", "median_interval", "min_pairs", "verdict_of"]


@dataclass(frozen=True)
class PairedComparison:
    """ratio = B/A latency (above 1: B is slower); low/high bound it with confidence 1 - alpha (0/inf when there
    are too few pairs for that confidence). a_median/b_median: medians of the per-process values of each side,
    a_spread/b_spread their interquartile range relative to the median."""

    pairs: int
    ratio: float
    low: float
    high: float
    alpha: float
    verdict: str
    a_median: float
    b_median: float
    a_spread: float
    b_spread: float

    def to_dict(self) -> dict:
        return {"pairs": self.pairs, "ratio": self.ratio, "ci_low": _finite(self.low),
                "ci_high": _finite(self.high), "confidence": 1 - self.alpha, "verdict": self.verdict,
                "a_median": self.a_median, "b_median": self.b_median, "a_relative_iqr": self.a_spread,
                "b_relative_iqr": self.b_spread}


def _finite(value: float) -> float | None:
    return value if 0 < value < math.inf else None


def median_interval(d: list[float], alpha: float) -> tuple[float, float, float]:
    """(median, low, high) of d; low/high are -inf/inf when n is too small for confidence 1 - alpha."""
    if not d:
        raise ValueError("no pairs")
    median, (low, high) = quantile_ci(d, 0.5, alpha_min=alpha)
    return median, low, high


def min_pairs(alpha: float) -> int:
    """The fewest pairs for which an interval of confidence 1 - alpha exists (8 for 99%, 6 for 95%)."""
    n = 1
    while not math.isfinite(median_interval(list(range(n)), alpha)[1]):
        n += 1
    return n


def verdict_of(low: float, high: float) -> str:
    """On the ratio's interval: wholly above 1 is slower, wholly below is faster, else the same."""
    if low > 1:
        return "slower"
    if high < 1:
        return "faster"
    return "same"


def _relative_iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return (q3 - q1) / statistics.median(values)


def compare_pairs(a: list[float], b: list[float], alpha: float = 0.01) -> PairedComparison:
    """a[i], b[i]: the latency of A and of B in pair i (positive numbers, e.g. per-process medians)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need equally many A and B values, got {len(a)} and {len(b)}")
    if min(a) <= 0 or min(b) <= 0:
        raise ValueError("latencies must be positive")
    median, low, high = median_interval([math.log(y / x) for x, y in zip(a, b)], alpha)
    ratio, low, high = math.exp(median), math.exp(low), math.exp(high)
    return PairedComparison(pairs=len(a), ratio=ratio, low=low, high=high, alpha=alpha,
                            verdict=verdict_of(low, high), a_median=statistics.median(a),
                            b_median=statistics.median(b), a_spread=_relative_iqr(a), b_spread=_relative_iqr(b))
