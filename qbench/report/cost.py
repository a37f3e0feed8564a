"""What a case costs, from its records: the per-phase wall (and CPU) seconds of every case-process (the worker's
phases from details.phases_s, what the worker did outside them, the launch and the parent's own share), a table of
their medians and spread, and the wall time of a whole grid scaled from a sample of its cases, with the runner count
a time budget then needs. Records without details.phases_s (older runs) count by their duration only."""

from __future__ import annotations

import math
import random
import statistics

__all__ = ["case_costs", "phase_table", "grid_estimate", "amortized_estimate", "render_estimate"]

# Worker phases whose seconds are booked inside another (the recipe's steps inside "build") are listed by the record
# in details.phases_nested and left out of the sums here.
_SKIP = ("total",)
_ORDER = ("imports", "probe", "open_model", "build", "size", "check_output", "latency", "traffic", "accuracy",
          "reference_logits", "reuse_store", "other", "worker_rest", "launch", "parent")


def case_costs(records, cpu: bool = False) -> list[dict]:
    """One dict per measured case-process: case_id, repeat, duration_s, phases (wall s), cpu (CPU s, worker phases
    only), reused (figure names). The phases sum to duration_s: worker_rest is the worker's time outside
    measure_case (entry, environment probe, result file), launch the pool's overhead, parent the rest.
    cpu=True: duration_s is the worker's CPU seconds in measure_case plus the wall seconds outside it, a proxy for
    the case on an unloaded machine (a descheduled process burns no CPU); records without CPU seconds are left out."""
    costs = []
    for record in records:
        worker = record.worker or {}
        if record.status in ("skipped",) or "wall_s" not in worker:
            continue
        details = record.details or {}
        nested = {name for names in (details.get("phases_nested") or {}).values() for name in names}
        raw = details.get("phases_s") or {}
        phases = {k: v for k, v in raw.items() if k not in nested and k not in _SKIP}
        inside = worker["wall_s"] - worker.get("overhead_s", 0.0)
        if "total" in raw:
            phases["worker_rest"] = max(0.0, inside - raw["total"])
        else:
            phases["worker"] = inside
        phases["launch"] = worker.get("overhead_s", 0.0)
        phases["parent"] = max(0.0, record.duration_s - worker["wall_s"])
        cpu_phases = {k: v for k, v in (details.get("phases_cpu_s") or {}).items() if k not in _SKIP}
        cpu_total = (details.get("phases_cpu_s") or {}).get("total")
        duration = record.duration_s
        if cpu:
            if cpu_total is None:
                continue
            duration = cpu_total + sum(phases[k] for k in ("worker_rest", "launch", "parent"))
        costs.append({"case_id": record.case_id, "repeat": worker.get("repeat", 0), "status": record.status,
                      "duration_s": duration, "phases": phases, "cpu": cpu_phases,
                      "cpu_total_s": cpu_total,
                      "reused": sorted((details.get("reused") or {}))})
    return costs


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def phase_table(costs: list[dict]) -> str:
    """Per phase over the case-processes: median, interquartile range, mean, share of the mean case, and the median
    CPU seconds where recorded."""
    names = sorted({name for cost in costs for name in cost["phases"]},
                   key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n))
    mean_case = statistics.fmean(c["duration_s"] for c in costs)
    lines = [f"{'phase':<18}{'median s':>10}{'IQR s':>18}{'mean s':>9}{'share':>8}{'cpu med s':>11}"]
    for name in names:
        values = [c["phases"].get(name, 0.0) for c in costs]
        cpu = [c["cpu"][name] for c in costs if name in c["cpu"]]
        mean = statistics.fmean(values)
        lines.append(f"{name:<18}{statistics.median(values):>10.3f}"
                     f"{f'{_quantile(values, .25):.3f}–{_quantile(values, .75):.3f}':>18}{mean:>9.3f}"
                     f"{mean / mean_case:>8.1%}{(f'{statistics.median(cpu):.3f}' if cpu else '-'):>11}")
    cpu_totals = [c["cpu_total_s"] for c in costs if c["cpu_total_s"] is not None]
    if cpu_totals:
        lines.append(f"{'worker cpu total':<18}{'':>10}{'':>18}{'':>9}{'':>8}{statistics.median(cpu_totals):>11.3f}")
    durations = [c["duration_s"] for c in costs]
    lines.append(f"{'case-process':<18}{statistics.median(durations):>10.3f}"
                 f"{f'{_quantile(durations, .25):.3f}–{_quantile(durations, .75):.3f}':>18}{mean_case:>9.3f}"
                 f"{1:>8.1%}{'':>11}")
    return "\n".join(lines)


def grid_estimate(costs: list[dict], grid_cases: int, repeat: int, budget_h: float, *, resamples: int = 2000,
                  seed: int = 0) -> dict:
    """The grid's wall time on one runner: the mean case-process of the sample × grid_cases × repeat, with a 95%
    bootstrap interval that resamples cases (each with all its processes), and the runners a budget_h nightly
    needs. A sample's first process of each case pays what the grid shares more widely (calibration, reused
    figures), so on a sample of scattered cases this leans high."""
    by_case: dict[str, list[float]] = {}
    for cost in costs:
        by_case.setdefault(cost["case_id"], []).append(cost["duration_s"])
    cases = list(by_case.values())
    mean = statistics.fmean(d for durations in cases for d in durations)
    rng = random.Random(seed)
    means = []
    for _ in range(resamples):
        drawn = [rng.choice(cases) for _ in cases]
        means.append(sum(map(sum, drawn)) / sum(map(len, drawn)))
    low, high = _quantile(means, 0.025), _quantile(means, 0.975)
    hours = [m * grid_cases * repeat / 3600 for m in (mean, low, high)]
    return {"cases": len(cases), "processes": sum(map(len, cases)), "mean_case_process_s": mean,
            "ci95_s": [low, high], "grid_cases": grid_cases, "repeat": repeat, "hours": hours[0],
            "hours_ci95": hours[1:], "budget_h": budget_h,
            "runners": math.ceil(hours[0] / budget_h), "runners_ci95": [math.ceil(h / budget_h) for h in hours[1:]]}


def amortized_estimate(costs: list[dict], grid_cases: int, repeat: int, budget_h: float, cold_share: float, *,
                       resamples: int = 2000, seed: int = 0) -> dict | None:
    """The grid's wall time when a case's first process pays its cold-start work (calibration, the figures the
    reuse store then serves) once per `cold_share` cases (the grid's batch sizes share a converted model, its size
    and accuracy): per case, repeat × its warm mean + (its first process - its warm mean) / cold_share, scaled like
    grid_estimate. None without cases measured in more than one process."""
    per_case: dict[str, list[tuple[int, float]]] = {}
    for cost in costs:
        per_case.setdefault(cost["case_id"], []).append((cost["repeat"], cost["duration_s"]))
    units, processes = [], 0
    for runs in per_case.values():
        first = [d for r, d in runs if r == 0]
        warm = [d for r, d in runs if r > 0]
        if first and warm:
            processes += len(runs)
            warm_mean = statistics.fmean(warm)
            units.append((repeat * warm_mean + (first[0] - warm_mean) / cold_share) / repeat)
    if not units:
        return None
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choice(units) for _ in units) for _ in range(resamples))
    mean = statistics.fmean(units)
    low, high = _quantile(means, 0.025), _quantile(means, 0.975)
    hours = [m * grid_cases * repeat / 3600 for m in (mean, low, high)]
    return {"cases": len(units), "processes": processes, "mean_case_process_s": mean,
            "ci95_s": [low, high], "grid_cases": grid_cases, "repeat": repeat, "hours": hours[0],
            "hours_ci95": hours[1:], "budget_h": budget_h,
            "runners": math.ceil(hours[0] / budget_h), "runners_ci95": [math.ceil(h / budget_h) for h in hours[1:]]}


def render_estimate(estimate: dict, label: str) -> str:
    e = estimate
    return (f"{label}: {e['processes']} processes of {e['cases']} cases, mean {e['mean_case_process_s']:.2f} s per "
            f"case-process (95% CI {e['ci95_s'][0]:.2f}–{e['ci95_s'][1]:.2f}); grid {e['grid_cases']} cases × "
            f"{e['repeat']} = {e['hours']:.1f} h on one runner ({e['hours_ci95'][0]:.1f}–{e['hours_ci95'][1]:.1f}); "
            f"a {e['budget_h']:g} h nightly needs {e['runners']} runners ({e['runners_ci95'][0]}–"
            f"{e['runners_ci95'][1]})")
