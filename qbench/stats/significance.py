"""Whether two sides of a noisy metric differ, and the smallest change the comparison could have detected.

The model, on logarithms (a change is a ratio): the value of one process is

    log y = level of the code + run effect (shared by the processes of one run) + process effect

with standard deviations `run` and `process` (Noise). The change is estimated by the difference of the sides' mean
log process values, d = mean(log cand) - mean(log base). Its variance adds two parts:

    SE² = s²·(1/m + 1/n) + run²·(1/r + 1/q)

* s²·(1/m + 1/n), what the processes of these two runs show: s is the pooled standard deviation of the log process
  values within each side (m + n - 2 degrees of freedom) when a side has two or more processes; when both sides
  have a single process it cannot be measured, and the assumed `process` figure is used (noise.json's, else the
  one measured within the runs of the machine's history, else the metric's default). Samples within one process
  never stand in for it: they miss what varies between processes.
* run²·(1/r + 1/q), what r base and q candidate runs of unchanged code show (a side named by a commit can hold
  several runs): `run` is the standard deviation of one run's level (its median over processes), measured from
  consecutive runs in the machine's history (qbench.compare.noise_model.run_noise), else the metric's default.
  It cannot be measured from the two runs compared. A run's level already holds some process noise, so the sum
  counts that twice: it errs towards fewer false alarms. On a shared VM this part dominates: the machine's load
  moves every case of a run together, and more processes per run do not average it away; only more runs do.

Test: t = d / SE, two-sided, Student's t with the Welch–Satterthwaite degrees of freedom of SE² (only a process
part measured from these processes has finite degrees of freedom, m + n - 2; assumed figures count as known, so a
fully assumed SE is a z-test). Significant when p < ALPHA.

Minimum detectable effect (what every verdict reports): the smallest true change that this comparison detects with
probability POWER at level ALPHA, exp((t_{1-ALPHA/2} + t_{POWER}) · SE) - 1. A change smaller than that is not a
"same": the comparison could not have told.
"""

from __future__ import annotations

import functools
import math
import statistics
from dataclasses import dataclass

__all__ = ["ALPHA", "POWER", "Noise", "Significance", "significance", "student_t_p", "student_t_quantile",
           "incomplete_beta", "clopper_pearson", "percent"]

ALPHA = 0.01
POWER = 0.95
_NORMAL = statistics.NormalDist()
_LARGE_DF = 1e4
_MAX_EXPONENT = 700.0  # exp beyond this overflows a float: nothing is detectable


@dataclass(frozen=True)
class Noise:
    """Assumed noise of one case and metric, as standard deviations of natural logarithms (0.05 ≈ 5%): `process`
    of one process's value around its run's level, `run` of a run's level between runs; `source` and `run_source`
    say where they came from."""

    process: float
    run: float
    source: str = "default"
    run_source: str = "default"


@dataclass(frozen=True)
class Significance:
    """Outcome of the test; `significant` is None when no test was possible (no positive values)."""

    test: str
    p_value: float | None
    significant: bool | None
    processes: tuple[int, int] = (0, 0)
    runs: tuple[int, int] = (1, 1)
    detectable: float | None = None
    standard_error: float | None = None
    df: float | None = None
    process_sd: float | None = None
    measured: bool = False
    noise: Noise | None = None
    alpha: float = ALPHA
    power: float = POWER

    @property
    def process_noise(self) -> str:
        base, cand = self.processes
        if self.measured:
            return f"process noise {percent(self.process_sd)} measured over {base} vs {cand} processes"
        return f"process noise {percent(self.process_sd)} assumed ({self.noise.source}; one process a side)"

    def describe(self) -> str:
        base, cand = self.processes
        if self.significant is None:
            return f"untested: {base} vs {cand} processes without positive values"
        p = "p<0.0001" if self.p_value < 1e-4 else f"p={self.p_value:.2g}"
        runs = "" if self.runs == (1, 1) else f" over {self.runs[0]} vs {self.runs[1]} runs"
        return (f"t-test over {base} vs {cand} processes, {p} ({self.process_noise}; run-to-run "
                f"{percent(self.noise.run)}{runs}, {self.noise.run_source})")

    def detectable_text(self) -> str:
        """The smallest change this comparison detects, for every verdict's reason."""
        return f"detectable ±{percent(self.detectable)}"


def percent(fraction: float | None) -> str:
    """0.034 → "3.4%", 0.25 → "25%", 120 → "1.2e+04%"; "-" for None, "∞%" for no limit."""
    if fraction is None:
        return "-"
    if math.isinf(fraction):
        return "∞%"
    return f"{fraction * 100:.1f}%" if fraction < 0.1 else f"{fraction * 100:.0f}%" if fraction < 100 else \
        f"{fraction * 100:.2g}%"


def significance(base_values: list[float], cand_values: list[float], noise: Noise, alpha: float = ALPHA,
                 power: float = POWER, runs: tuple[int, int] = (1, 1)) -> Significance:
    """The two-sided test of the module docstring over per-process values, with its minimum detectable effect."""
    m, n = len(base_values), len(cand_values)
    if not m or not n or min(base_values) <= 0 or min(cand_values) <= 0:
        return Significance("none", None, None, (m, n), runs, noise=noise, alpha=alpha, power=power)
    x, y = [math.log(v) for v in base_values], [math.log(v) for v in cand_values]
    difference = statistics.fmean(y) - statistics.fmean(x)
    squares = sum((v - statistics.fmean(x)) ** 2 for v in x) + sum((v - statistics.fmean(y)) ** 2 for v in y)
    process_df = m + n - 2
    measured = process_df > 0
    process_var = squares / process_df if measured else noise.process ** 2
    process_part = process_var * (1.0 / m + 1.0 / n)
    run_part = noise.run ** 2 * (1.0 / max(runs[0], 1) + 1.0 / max(runs[1], 1))
    variance = process_part + run_part
    df = variance ** 2 / (process_part ** 2 / process_df) if measured and process_part > 0 else math.inf
    se = math.sqrt(variance)
    if se == 0:
        p = 1.0 if difference == 0 else 0.0
        detectable = 0.0
    else:
        p = student_t_p(difference / se, df)
        exponent = (student_t_quantile(1 - alpha / 2, df) + student_t_quantile(power, df)) * se
        detectable = math.expm1(exponent) if exponent < _MAX_EXPONENT else math.inf
    return Significance("t", p, p < alpha, (m, n), runs, detectable, se, df, math.sqrt(process_var), measured,
                        noise, alpha, power)


def student_t_p(t: float, df: float) -> float:
    """Two-sided p-value of Student's t with df degrees of freedom (fractional for Welch, as scipy's ttest_ind):
    the regularized incomplete beta I_x(df/2, 1/2) at x = df / (df + t^2); the normal one for df = inf."""
    if t == 0:
        return 1.0
    if df > _LARGE_DF:
        return min(1.0, 2.0 * (1.0 - _NORMAL.cdf(abs(t))))
    return min(1.0, max(0.0, incomplete_beta(df / 2.0, 0.5, df / (df + t * t))))


def student_t_quantile(q: float, df: float) -> float:
    """The q quantile (0.5 < q < 1) of Student's t with df degrees of freedom, to a relative 1e-10 (Newton's method
    on the distribution function, `_student_t_quantile`). Welch's df is rounded to 3 significant digits first (the
    quantile moves by less than 1e-3 of itself), so that a grid's thousands of comparisons share a few hundred
    cached quantiles."""
    return _student_t_quantile(q, float(f"{df:.3g}") if math.isfinite(df) else df)


@functools.lru_cache(maxsize=8192)
def _student_t_quantile(q: float, df: float) -> float:
    """Newton's method from the normal quantile, which lies below t's: the distribution function is concave right
    of 0, so every step stays below the root and the iterates rise to it (a few evaluations of the incomplete beta,
    where bisection needed ~40); bisection (`_bisected_quantile`) if they have not settled after 200 steps."""
    if df > _LARGE_DF:
        return _NORMAL.inv_cdf(q)
    log_density = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    t = _NORMAL.inv_cdf(q)
    for _ in range(200):
        shortfall = q - (1.0 - student_t_p(t, df) / 2.0)
        step = shortfall / math.exp(log_density - (df + 1) / 2 * math.log1p(t * t / df))
        t += step
        if abs(step) <= 1e-12 * t:
            return t
    return _bisected_quantile(q, df)


def _bisected_quantile(q: float, df: float) -> float:
    """The quantile by bisection on student_t_p to a relative 1e-10 (the reference Newton's method is tested
    against)."""
    target = 2.0 * (1.0 - q)
    low, high = 0.0, 1.0
    while student_t_p(high, df) > target:
        low, high = high, high * 2.0
    while high - low > 1e-10 * high:
        middle = (low + high) / 2.0
        low, high = (middle, high) if student_t_p(middle, df) > target else (low, middle)
    return (low + high) / 2.0


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper–Pearson) two-sided `level` interval of a binomial proportion: the beta quantiles
    B(a/2; k, n-k+1) and B(1-a/2; k+1, n-k), found by bisection on the regularized incomplete beta."""
    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes} of {trials}")
    tail = (1.0 - level) / 2.0

    def beta_quantile(q: float, a: float, b: float) -> float:
        low, high = 0.0, 1.0
        for _ in range(200):
            middle = (low + high) / 2.0
            low, high = (middle, high) if incomplete_beta(a, b, middle) < q else (low, middle)
        return (low + high) / 2.0

    lower = 0.0 if successes == 0 else beta_quantile(tail, successes, trials - successes + 1)
    upper = 1.0 if successes == trials else beta_quantile(1.0 - tail, successes + 1, trials - successes)
    return lower, upper


def incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (modified Lentz; Numerical Recipes 6.4)."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - incomplete_beta(b, a, 1.0 - x)
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
