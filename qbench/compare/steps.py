"""Step detection over history series: which steps made a metric worse, between which runs, and by how much.

asv's machinery does the work: its L1 Potts solver (`asv.step_detect.solve_potts_approx`, weighted medians per
segment) fits a piecewise-constant level to each series, and its rule (`asv.step_detect.detect_regressions`) keeps
the upward steps that are still present at the end of the series and larger than
max(threshold × level before, the mean deviation within the segments on either side).

One part differs from asv's `detect_steps`: the jump penalty γ. asv picks γ by an information criterion that also
fits AR(1)-correlated noise; on short histories (nightly runs, a dozen points) that correlation absorbs clear steps.
Measured on synthetic series (12 points, 3% Gaussian noise, a 20% step after point 6, 200 trials): asv's
`detect_steps` found the step in 63% of series, the γ below in 99%, with 2% false alarms on flat series (asv 0%).
Here γ = 2 · b · ln(n), b the Laplace scale of the noise estimated robustly from the median absolute first
difference (a step moves one difference, not the median), i.e. a BIC penalty for the L1 (Laplace) likelihood.

Weights are asv's: the inverse width of each point's 99% interval (points measured in more processes or with tighter
samples count more), normalised to their median as detect_steps does, and clipped to [1/4, 4] so that one
point with unusually tight samples cannot outvote a run of others. Higher-is-better metrics (throughput, speedup,
compression) are analysed as their reciprocals, so that a regression is always an upward step.

Steps are relative (a threshold is a fraction of the level before), so a series is judged only when every value is
a finite number > 0. One with a 0, a negative or a non-finite value (agreement 0 and SQNR 0 dB of a model with
random weights, say) cannot be judged: `unjudged` names it and why, and it never counts as a regression.

A step must also be larger than the smallest step the series could have detected (`detectable`, reported with each
regression), so that noise is never called a regression: with σ the noise of one point (the robust scale above,
1.4826 · median |first difference| / √2, which includes run-to-run noise since each point is a run), the levels of
the n_b points before and the n_a points after the step differ by noise with standard error
SE = σ·√(1/n_b + 1/n_a), and the detectable step is (z_{1-ALPHA/2} + z_POWER)·SE relative to the level before
(ALPHA and POWER of qbench.stats.significance; a step found in the latest run alone has n_a = 1).

Thresholds (the minimum relative step) are compare's (qbench.thresholds.ThresholdPolicy): the metric's default,
raised to the case's measured noise from `results/<machine_id>/noise.json` (qbench noise) when that is larger. A
speedup's threshold is latency's, its noise that of its two latencies in quadrature; compression's is size's.
"""

from __future__ import annotations

import itertools
import math
import statistics
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from qbench.errors import ConfigError
from qbench.history.series import DERIVED_FROM, Point, Series
from qbench.history.store import RunFile
from qbench.history.validate import finite_positive
from qbench.stats.significance import ALPHA, POWER
from qbench.thresholds import ThresholdPolicy

__all__ = ["Regression", "detect_steps", "detect", "point_noise", "detectable_step", "threshold_for", "find_regressions", "unjudged", "can_rise",
           "latest_runs", "git_commit_order"]

GAMMA_FACTOR = 2.0
WEIGHT_CLIP = 4.0


@dataclass(frozen=True)
class Regression:
    """A step that made `metric` worse and is still there in the series' latest point.

    before: the level of the last good segment; after: the best level after the step (asv's definitions); both in
    the metric's units. change: after / before - 1 (positive for latency, negative for speedup).
    """

    machine_id: str
    case_id: str
    case_version: str
    metric: str
    last_good: Point
    first_bad: Point
    before: float
    after: float
    latest: float
    threshold: float
    threshold_source: str
    detectable: float = 0.0
    run_shift: float = 0.0

    @property
    def change(self) -> float:
        return self.after / self.before - 1.0

    @property
    def environment_changes(self) -> dict[str, tuple[str | None, str | None]]:
        """What differs in the worker environment between the last good and the first bad run: name → (before,
        after), None when unset (a torch build, an ISA variable, a thread count)."""
        before, after = dict(self.last_good.environment), dict(self.first_bad.environment)
        return {name: (before.get(name), after.get(name)) for name in sorted(set(before) | set(after))
                if before.get(name) != after.get(name)}

    def to_dict(self) -> dict:
        def point(p: Point) -> dict:
            return {"run_id": p.run_id, "started_at": p.started_at, "commit": p.commit, "dirty": p.dirty,
                    "torch": p.torch, "value": p.value, "file": p.file}

        return {"machine_id": self.machine_id, "case_id": self.case_id, "case_version": self.case_version,
                "metric": self.metric, "before": self.before, "after": self.after, "latest": self.latest,
                "change": self.change, "threshold": self.threshold, "threshold_source": self.threshold_source,
                "detectable": self.detectable, "run_shift": self.run_shift,
                "environment_changes": {k: list(v) for k, v in self.environment_changes.items()},
                "last_good": point(self.last_good), "first_bad": point(self.first_bad)}


def _weights(y: list[float], rel_errs: list[float | None]) -> list[float]:
    raw = [1.0 / (e * v) if e and v else None for v, e in zip(y, rel_errs)]
    known = [w for w in raw if w is not None]
    if not known:
        return [1.0] * len(y)
    middle = statistics.median(known)
    return [1.0 if w is None else min(max(w / middle, 1 / WEIGHT_CLIP), WEIGHT_CLIP) for w in raw]


def detect_steps(y: list[float], w: list[float] | None = None) -> list[tuple]:
    """asv's step list (left, right, value, min, mean deviation) for y, with the γ described in the module doc."""
    from asv.step_detect import solve_potts_approx

    n = len(y)
    if n == 0:
        return []
    w = w or [1.0] * n
    scale = max(0.8 * point_noise(y), 1e-9 * abs(statistics.median(y)), 1e-300)
    right, values, dists = solve_potts_approx(y, w, gamma=GAMMA_FACTOR * scale * math.log(max(n, 2)))
    steps, left = [], 0
    for r, value, dist in zip(right, values, dists):
        steps.append((left, r, value, min(y[left:r]), abs(dist / (r - left))))
        left = r
    return steps


def point_noise(y: list[float]) -> float:
    """The robust standard deviation of one point of a series: 1.4826 · median |first difference| / √2."""
    diffs = [abs(b - a) for a, b in zip(y, y[1:])]
    return 1.4826 * statistics.median(diffs) / math.sqrt(2) if diffs else 0.0


def detectable_step(y: list[float], steps: list[tuple], good: int, bad: int) -> float:
    """The smallest relative step between the segment holding point `good` and the one holding `bad` that the
    series' noise lets through at ALPHA with POWER (module docstring)."""
    before = next(s for s in steps if s[0] <= good < s[1])
    after = next(s for s in steps if s[0] <= bad < s[1])
    se = point_noise(y) * math.sqrt(1.0 / (before[1] - before[0]) + 1.0 / (after[1] - after[0]))
    z = statistics.NormalDist().inv_cdf(1 - ALPHA / 2) + statistics.NormalDist().inv_cdf(POWER)
    return z * se / abs(before[2]) if before[2] else math.inf


def _above_the_level_before(y: list[float], steps: list[tuple], bad: int, after: float, threshold: float) -> bool:
    """asv measures a step from the best segment before it; on a noisy series one short lucky segment then makes
    an ordinary level look like a step. So the level after must also clear the threshold and the detectable step
    against the median of every point before the first bad one (measured on the A/A runs of quick: a 2-run dip
    followed by the usual level was a +15% "regression")."""
    overall = statistics.median(y[:bad])
    if overall <= 0:
        return False
    segment = next(s for s in steps if s[0] <= bad < s[1])
    se = point_noise(y) * math.sqrt(1.0 / bad + 1.0 / (segment[1] - segment[0]))
    z = statistics.NormalDist().inv_cdf(1 - ALPHA / 2) + statistics.NormalDist().inv_cdf(POWER)
    return after / overall - 1.0 > max(threshold, z * se / overall)


def detect(series: Series, threshold: float, source: str = "given", shifts: list[float] | None = None
           ) -> list[Regression]:
    """The regressions still present at the end of one series. shifts: each point's run-wide factor
    (qbench.compare.run_shifts, > 1 is worse), divided out before the steps are fitted."""
    from asv.step_detect import detect_regressions

    points = series.points
    if len(points) < 3 or unjudged(series):
        return []
    if min(series.values) == max(series.values):
        return []  # a flat series has no step (most deterministic metrics): no need to fit one
    lower = series.info.direction == "lower"
    y = [v if lower else 1.0 / v for v in series.values]
    if shifts:
        y = [v / f for v, f in zip(y, shifts)]
    if not can_rise(y, threshold):
        return []
    steps = detect_steps(y, _weights(y, series.rel_errs))
    latest, _, jumps = detect_regressions(steps, threshold)
    if not jumps:
        return []

    def back(v: float) -> float:
        return v if lower else 1.0 / v

    found = []
    for good, bad, before, after in jumps:
        detectable = detectable_step(y, steps, good, bad)
        if after / before - 1.0 > detectable and _above_the_level_before(y, steps, bad, after, threshold):
            found.append(Regression(machine_id=series.machine_id, case_id=series.case_id,
                                    case_version=series.case_version, metric=series.metric, last_good=points[good],
                                    first_bad=points[bad], before=back(before), after=back(after),
                                    latest=back(latest), threshold=threshold, threshold_source=source,
                                    detectable=detectable,
                                    run_shift=shifts[bad] / shifts[good] - 1.0 if shifts else 0.0))
    return found


def can_rise(y: list[float], threshold: float) -> bool:
    """Whether some point exceeds an earlier one by more than `threshold` (relative): without that no fit of y can
    hold a regression, so it is not fitted. asv's rule keeps a step only when a later segment's level exceeds an
    earlier one's by more than threshold × that level, and a segment's level (a weighted median of its points) lies
    between its lowest and highest point. The margin of 1e-12 only ever lets more series through."""
    import numpy as np

    values = np.asarray(y, dtype=float)
    lowest_before = np.minimum.accumulate(values)[:-1]
    return bool((values[1:] > lowest_before * (1.0 + threshold) * (1.0 - 1e-12)).any())


def unjudged(series: Series) -> str | None:
    """Why step detection cannot judge this series (None when it can): relative steps need values > 0."""
    import numpy as np

    values = series.values
    try:  # a year of nightlies is millions of points: check them as an array
        judged = np.asarray(values, dtype=float)
        bad = np.flatnonzero(~(np.isfinite(judged) & (judged > 0))).tolist()
        bad += [i for i, value in enumerate(values) if isinstance(value, bool)]
    except (TypeError, ValueError):
        bad = [i for i, value in enumerate(values) if not finite_positive(value)]
    bad = sorted(set(bad))
    if not bad:
        return None
    first = series.points[bad[0]]
    return (f"{len(bad)} of {len(values)} values are 0, negative or not finite (first: {first.value!r} in "
            f"run {first.run_id[:8]}); relative steps need values > 0")


def threshold_for(series: Series, policy: ThresholdPolicy) -> tuple[float, str]:
    """(minimum relative step, where it came from) for one series."""
    base = statistics.median(series.values)
    if series.metric not in DERIVED_FROM:
        threshold = policy.threshold_for(series.metric, base, case_id=series.case_id, machine_id=series.machine_id)
        return threshold.allowed_fraction(base), threshold.source
    measured = DERIVED_FROM[series.metric]
    configured = policy.defaults.get(measured)
    fraction, source = (configured.value, configured.source) if configured and configured.relative else (0.0, "none")
    noise = [policy.noise_fraction(measured, case_id=case, machine_id=series.machine_id) for case in series.sources]
    if noise and all(n is not None for n in noise) and math.hypot(*noise) > fraction:
        return math.hypot(*noise), "noise.json"
    return fraction, source


def find_regressions(series: Iterable[Series], policy: ThresholdPolicy | None = None,
                     machine_shifts: list[Regression] | None = None) -> list[Regression]:
    """Every current regression over all series, worst relative step first. The timing metrics are judged with each
    run's shared shift divided out (qbench.compare.run_shifts): a shift that came with a qbench or environment change
    is one regression of case "(every case)"; one that came with nothing is appended to `machine_shifts` (when
    given), never returned. Series are read one metric at a time, as they come (a year of one metric fits in memory,
    a year of all of them may not)."""
    from qbench.compare.run_shifts import run_shifts

    policy = policy or ThresholdPolicy()
    found = []
    if isinstance(series, (list, tuple)):
        series = sorted(series, key=lambda one: one.metric)
    for _, group in itertools.groupby(series, key=lambda one: one.metric):
        group = list(group)
        shifts = run_shifts(group, lambda one: threshold_for(one, policy))
        found.extend(shifts.regressions)
        if machine_shifts is not None:
            machine_shifts.extend(shifts.machine)
        for one in group:
            if unjudged(one):
                continue
            threshold, source = threshold_for(one, policy)
            found.extend(detect(one, threshold, source, shifts.of(one)))
    return sorted(found, key=lambda r: (-abs(math.log(r.after / r.before)), r.machine_id, r.case_id, r.metric))


def latest_runs(runs: Iterable[RunFile]) -> dict[str, str]:
    """machine_id → run_id of its newest complete run (by start time), whether or not any of its cases succeeded;
    runs still being written or killed (`.jsonl.partial`) do not count, as for compare's `latest`."""
    newest: dict[str, tuple[str, str]] = {}
    for run in (r for r in runs if r.complete):
        machine_id = (run.header.get("machine") or {}).get("machine_id")
        stamp = (run.header.get("started_at") or "", run.header.get("run_id") or "")
        if machine_id and stamp > newest.get(machine_id, ("", "")):
            newest[machine_id] = stamp
    return {machine_id: stamp[1] for machine_id, stamp in newest.items()}


def git_commit_order(repo: Path | str) -> list[str]:
    """The commits reachable from HEAD of `repo`, oldest first (topological order)."""
    try:
        done = subprocess.run(["git", "-C", str(repo), "rev-list", "--topo-order", "--reverse", "HEAD"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"cannot list the commits of {repo}: {exc}") from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["git failed"])[-1]
        raise ConfigError(f"cannot list the commits of {repo}: {reason}")
    return done.stdout.split()
