"""Two-sided significance tests of two samples: Mann–Whitney U, Welch t on logarithms, Student t, incomplete beta."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["ALPHA", "Significance", "significance", "student_t_p"]

ALPHA = 0.01


@dataclass(frozen=True)
class Significance:
    """Outcome of the two-sided test; `significant` is None when no test was possible."""

    test: str
    over: str
    p_value: float | None
    significant: bool | None
    processes: tuple[int, int] = (0, 0)

    @property
    def pooled(self) -> bool:
        return self.over == "pooled samples"

    def describe(self) -> str:
        base, cand = self.processes
        if self.significant is None:
            return f"untested: {base} vs {cand} processes, too few values for a test (use --repeat 3 or more)"
        name = {"mann-whitney": "Mann–Whitney U", "welch-t": "Welch t-test"}[self.test]
        if self.pooled:
            where = f"over the pooled samples of {base} vs {cand} processes (within-process noise only)"
        else:
            where = f"over {base} vs {cand} processes"
        return f"{name} {where}, p={self.p_value:.2g}"


def significance(base_values: list[float], cand_values: list[float], base_samples: Iterable[float] = (),
                 cand_samples: Iterable[float] = (), alpha: float = ALPHA) -> Significance:
    """Two-sided test that the sides differ: over per-process values when there are enough of them, else over the
    pooled samples of single processes (flagged), else none (significant=None). See the module docstring."""
    m, n = len(base_values), len(cand_values)
    if _rank_test_can_reach(m, n, alpha):
        p = _mann_whitney_p(base_values, cand_values)
        return Significance("mann-whitney", "processes", p, p < alpha, (m, n))
    if m >= 2 and n >= 2:
        p = _welch_p(base_values, cand_values)
        return Significance("welch-t", "processes", p, p < alpha, (m, n))
    base_samples, cand_samples = list(base_samples), list(cand_samples)
    if _rank_test_can_reach(len(base_samples), len(cand_samples), alpha):
        p = _mann_whitney_p(base_samples, cand_samples)
        return Significance("mann-whitney", "pooled samples", p, p < alpha, (m, n))
    return Significance("none", "", None, None, (m, n))


def _rank_test_can_reach(m: int, n: int, alpha: float) -> bool:
    """Whether a two-sided Mann–Whitney U over m and n values can give p < alpha at all (2 / C(m+n, m))."""
    return m >= 1 and n >= 1 and math.comb(m + n, m) > 2.0 / alpha


def _mann_whitney_p(x: list[float], y: list[float]) -> float:
    from asv._stats import mann_whitney_u

    return min(1.0, mann_whitney_u(list(x), list(y))[1])


def _welch_p(x: list[float], y: list[float]) -> float:
    """Welch's two-sided t-test on the logarithms (ratios, not differences, are what change), with the
    Welch–Satterthwaite degrees of freedom."""
    if min(x) > 0 and min(y) > 0:
        x, y = [math.log(v) for v in x], [math.log(v) for v in y]
    m, n = len(x), len(y)
    var_x, var_y = _variance(x) / m, _variance(y) / n
    difference = statistics.fmean(y) - statistics.fmean(x)
    if var_x + var_y == 0:
        return 1.0 if difference == 0 else 0.0
    t = difference / math.sqrt(var_x + var_y)
    df = (var_x + var_y) ** 2 / (var_x ** 2 / (m - 1) + var_y ** 2 / (n - 1))
    return student_t_p(t, df)


def _variance(values: list[float]) -> float:
    """Sample variance in floats (statistics.variance is exact, in Fractions: too slow for a full grid's compare)."""
    mean = statistics.fmean(values)
    return math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1)


def student_t_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with df degrees of freedom (fractional for Welch, as scipy's ttest_ind):
    the regularized incomplete beta I_x(df/2, 1/2) at x = df / (df + t^2)."""
    if t == 0:
        return 1.0
    return min(1.0, max(0.0, _incomplete_beta(df / 2.0, 0.5, df / (df + t * t))))


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz; Numerical Recipes 6.4)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * fraction / a
