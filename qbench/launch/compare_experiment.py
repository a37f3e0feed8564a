"""The sensitivity of `qbench compare` on real A/A runs: how often it calls noise a change, and how often it catches a
known slowdown, per case, on the run files of one results folder.

    python -m qbench.launch.compare_experiment --results DIR [--suite quick] [--processes K] [--slowdowns 1,2,3,5]

A/A. Every run of the suite in DIR (same machine, complete) is an unchanged-code measurement; every pair of runs
(i < j) is compared with compare's real rule (qbench.compare.pairwise.compare, latency, under the results
folder's policy: defaults and noise.json) and each case whose verdict is `regressed` or `improved` is a false
alarm. Pairs sharing a run are not independent (a run measured in a slow minute is slow in all its pairs), so the
rate is also given over consecutive pairs (i, i+1), what a nightly compares (latest~1 against latest), and over
disjoint pairs only ((0,1), (2,3), ...), whose comparisons share no measurement: that Clopper–Pearson interval is
the one to quote (cases of one pair still share their minutes). All pairs include runs an hour apart, whose load
drifted further than consecutive runs' did: compare measures run noise from consecutive runs, so that is a stress
test beyond what it claims.
--processes K keeps the first K processes of each case in each run (worker.repeat < K): runs made with --repeat 3
give single-process runs (K=1) measured in the same minutes.

Power. The candidate's latency samples of each pair are multiplied by 1 + s for each slowdown s, and a case is
caught when compare calls it `regressed`. Multiplying is the model of a slowdown that makes every inference s
slower in proportion (a kernel that got slower), with the machine's noise kept as it was measured; it is fair to a
test on log values by construction, and it cannot show a slowdown that also changes the noise (more memory traffic
meeting a busy neighbour) or an additive one (a fixed cost per call, relatively larger on small models).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import math
import statistics
from collections import defaultdict
from pathlib import Path

from qbench.compare.pairwise import compare
from qbench.compare.policy import compare_policy
from qbench.history.sides import ResultsFolder
from qbench.records import RunRecord
from qbench.stats.significance import ALPHA, POWER, clopper_pearson

__all__ = ["aa_runs", "slowed", "runs_needed", "noise_components", "false_alarms", "power", "main"]

ALARMS = ("regressed", "improved")


def aa_runs(results: str, suite: str, processes: int | None) -> list[tuple[str, list[RunRecord]]]:
    """(run id, ok records) of every complete run of `suite` in `results`, oldest first, keeping the first
    `processes` processes of each case (all when None)."""
    folder = ResultsFolder(results)
    runs = []
    for run in folder.runs:
        if not run.complete or (run.header.get("suite") or {}).get("name") != suite:
            continue
        records = [r for r in run.records if r.status == "ok"
                   and (processes is None or int(r.worker.get("repeat") or 0) < processes)]
        if records:
            runs.append((str(run.header.get("run_id")), records))
    return runs


def slowed(records: list[RunRecord], factor: float) -> list[RunRecord]:
    """The records with every latency sample multiplied by `factor`."""
    out = []
    for record in records:
        latency = dict(record.metrics.get("latency") or {})
        latency["samples"] = [s * factor for s in latency.get("samples") or []]
        out.append(dataclasses.replace(record, metrics={**record.metrics, "latency": latency}))
    return out


def _log_values(records: list[RunRecord]) -> dict[str, list[float]]:
    values = defaultdict(list)
    for record in records:
        samples = sorted((record.metrics.get("latency") or {}).get("samples") or [])
        if samples:
            values[record.case_id].append(math.log(statistics.median(samples)))
    return values


def noise_components(runs) -> dict[str, tuple[float | None, float | None, int]]:
    """case_id → (process SD within runs, run SD, runs) of log latency: the pooled SD of a case's process values
    within each run, and sqrt(max(0, var(run means) - process² / k)) over the runs."""
    by_case = defaultdict(list)
    for _, records in runs:
        for case_id, values in _log_values(records).items():
            by_case[case_id].append(values)
    found = {}
    for case_id, per_run in sorted(by_case.items()):
        within = [v for v in per_run if len(v) > 1]
        df = sum(len(v) - 1 for v in within)
        process = math.sqrt(sum(statistics.variance(v) * (len(v) - 1) for v in within) / df) if df else None
        means = [statistics.fmean(v) for v in per_run]
        k = statistics.harmonic_mean([len(v) for v in per_run])
        run = None
        if len(means) > 1:
            run = math.sqrt(max(0.0, statistics.variance(means) - (process ** 2 / k if process else 0.0)))
        found[case_id] = (process, run, len(per_run))
    return found


PAIRINGS = ("all", "consecutive", "disjoint")


def _pairs(n: int, pairing: str):
    """all: every i < j; consecutive: (i, i+1), what a nightly compares (latest~1 against latest); disjoint:
    (0,1), (2,3), ..., which share no run."""
    if pairing == "disjoint":
        return [(i, i + 1) for i in range(0, n - 1, 2)]
    if pairing == "consecutive":
        return [(i, i + 1) for i in range(n - 1)]
    return list(itertools.combinations(range(n), 2))


def false_alarms(runs, policy, pairing: str = "all") -> tuple[int, int, dict[str, int], list]:
    """(alarms, comparisons, alarms by case, the alarming comparisons) over the pairs of runs `pairing` names."""
    alarms, total, by_case, found = 0, 0, defaultdict(int), []
    for i, j in _pairs(len(runs), pairing):
        for row in compare(runs[i][1], runs[j][1], policy, metrics=("latency",)):
            if row.metric != "latency":
                continue
            total += 1
            if row.verdict in ALARMS:
                alarms += 1
                by_case[row.case_id] += 1
                found.append((runs[i][0][:8], runs[j][0][:8], row))
    return alarms, total, dict(by_case), found


def power(runs, policy, slowdown: float, pairing: str = "all") -> tuple[int, int, list[float], int, int]:
    """(caught, comparisons, detectable sizes, caught where detectable, comparisons where detectable) with the
    candidate of every pair slowed by `slowdown`; "where detectable": the comparisons whose own detectable size
    (computed on the slowed candidate) is at most `slowdown`, which should be caught about POWER of the time."""
    caught, total, detectable, caught_there, there = 0, 0, [], 0, 0
    for i, j in _pairs(len(runs), pairing):
        for row in compare(runs[i][1], slowed(runs[j][1], 1.0 + slowdown), policy, metrics=("latency",)):
            if row.metric != "latency":
                continue
            total += 1
            caught += row.verdict == "regressed"
            if row.test is not None and row.test.detectable is not None:
                detectable.append(row.test.detectable)
                if row.test.detectable <= slowdown:
                    there += 1
                    caught_there += row.verdict == "regressed"
    return caught, total, detectable, caught_there, there


def runs_needed(run_sd: float, slowdown: float, alpha: float = ALPHA, power: float = POWER) -> int:
    """Runs per side whose mean level shows `slowdown` at `alpha` with `power` when one run's log level varies
    by run_sd: (z_{1-alpha/2} + z_power) · run_sd · √(2/R) <= ln(1 + slowdown)."""
    z = statistics.NormalDist().inv_cdf(1 - alpha / 2) + statistics.NormalDist().inv_cdf(power)
    return math.ceil(2 * (z * run_sd / math.log1p(slowdown)) ** 2)


def _rate(k: int, n: int) -> str:
    if not n:
        return "no comparisons"
    low, high = clopper_pearson(k, n)
    return f"{k}/{n} = {k / n * 100:.1f}% (95% CI {low * 100:.1f}-{high * 100:.1f}%)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qbench.launch.compare_experiment", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="results folder holding the A/A runs")
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--processes", type=int, default=None, help="keep the first K processes of each case")
    parser.add_argument("--slowdowns", default="1,2,3,5", help="percent, comma-separated")
    args = parser.parse_args(argv)
    runs = aa_runs(args.results, args.suite, args.processes)
    if len(runs) < 2:
        parser.error(f"need at least two complete runs of suite {args.suite!r} under {args.results}, found "
                     f"{len(runs)}")
    machines = {str(r.machine.get("machine_id")) for _, records in runs for r in records}
    folder = ResultsFolder(args.results)
    policy = compare_policy(args.results, folder, [r for _, records in runs for r in records])
    for error in folder.errors:
        print(f"unreadable {error}")
    for machine, metrics in sorted(policy.run_noise.items()):
        if "latency" in metrics:
            sd, source = metrics["latency"]["*"]
            print(f"run noise  {machine}: latency {sd * 100:.1f}%, {source}; runs per side for {POWER:.0%} power "
                  f"at a 3% slowdown: {runs_needed(sd, 0.03)}")
    counts = [len(_log_values(records)) for _, records in runs]
    per_case = sorted({len(v) for _, records in runs for v in _log_values(records).values()})
    print(f"results    {Path(args.results)}  suite {args.suite}  machines {', '.join(sorted(machines))}")
    print(f"runs       {len(runs)} ({', '.join(run_id[:8] for run_id, _ in runs)}), {max(counts)} cases, "
          f"{'/'.join(map(str, per_case))} processes per case and run")
    print("\nnoise of log latency per case (process: SD within a run; run: SD of run levels beyond it)")
    for case_id, (process, run, n) in noise_components(runs).items():
        text = lambda v: "-" if v is None else f"{v * 100:.1f}%"  # noqa: E731
        print(f"  {case_id:44s} process {text(process):>6s}  run {text(run):>6s}  ({n} runs)")
    for pairing in PAIRINGS:
        k, n, by_case, found = false_alarms(runs, policy, pairing)
        print(f"\nA/A false alarms, {pairing} pairs: {_rate(k, n)}")
        pairs, worst = len(_pairs(len(runs), pairing)), max(by_case.items(), key=lambda kv: kv[1], default=("-", 0))
        print(f"  per case ({pairs} comparisons each): worst {worst[0]} {_rate(worst[1], pairs)}")
        for run_a, run_b, row in found:
            print(f"  {run_a} vs {run_b}  {row.verdict:9s} {row.case_id}  {row.reason}")
    print("\npower (candidate slowed by s; caught = regressed)")
    for text in args.slowdowns.split(","):
        s = float(text) / 100.0
        for pairing in PAIRINGS:
            k, n, detectable, k_there, n_there = power(runs, policy, s, pairing)
            median = statistics.median(detectable) * 100 if detectable else float("nan")
            print(f"  {text:>3s}% {pairing:11s} {_rate(k, n)}; median detectable "
                  f"±{median:.1f}%; where detectable {_rate(k_there, n_there)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
