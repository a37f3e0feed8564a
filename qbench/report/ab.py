"""Render `qbench ab` results: the comparison table and markdown, and the sensitivity experiment's summary."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

from qbench.errors import InfraError
from qbench.launch.ab import STATISTICS, ABReport, CaseComparison, Pair, is_regression, output_changed, pair_values
from qbench.launch.ab_experiment import MODEL_MODULE
from qbench.stats.paired import compare_pairs, median_interval
from qbench.stats.significance import clopper_pearson

__all__ = ["render_table", "render_markdown", "interval_text", "output_text", "render_step", "render_bisect",
           "summarize"]

QUIET_BUSY = 0.6
POWER_GRID = (0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.10, 0.15, 0.20)
COLUMNS = ("case", "pairs", "A median (IQR)", "B median (IQR)", "B/A", "CI", "verdict")


def _duration(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.4g} {unit}"
    return f"{seconds * 1e9:.4g} ns"


def interval_text(comparison: CaseComparison) -> str:
    stats = comparison.stats
    if stats is None:
        return ""
    low = f"{stats.low:.3f}" if stats.low > 0 else "0"
    high = f"{stats.high:.3f}" if stats.high != float("inf") else "inf"
    return f"{low}-{high}"


def output_text(comparison: CaseComparison) -> str:
    """"; output changed (SQNR 12.1 dB, top-1 50%)" when B's model output differs from A's, else ""."""
    check = comparison.outputs
    if not output_changed(comparison):
        return ""
    if not check["same_shape"]:
        return "; output changed (another shape)"
    return f"; output changed (SQNR {check['sqnr_db']:.1f} dB, top-1 agreement {check['top1_agreement']:.0%})"


def _row(comparison: CaseComparison, threshold: float) -> tuple[str, ...]:
    stats = comparison.stats
    if stats is None:
        return (comparison.case_id, str(len(comparison.pairs)), "", "", "", "",
                f"{comparison.status}: {comparison.reason}")
    verdict = (stats.verdict + (" REGRESSION" if is_regression(comparison, threshold) else "")
               + output_text(comparison))
    return (comparison.case_id, str(stats.pairs), f"{_duration(stats.a_median)} ({stats.a_spread:.1%})",
            f"{_duration(stats.b_median)} ({stats.b_spread:.1%})", f"{stats.ratio:.3f}", interval_text(comparison), verdict)


def _side_lines(result: ABReport) -> list[str]:
    lines = []
    for label, side in result.sides.items():
        commit = (side.get("commit") or "unknown")[:12]
        packages = side.get("packages") or {}
        extra = "".join(f", {name} {version}" for name, version in packages.items() if name != "torch" and version)
        where = f" of {side['repo']}" if side.get("repo") else ""
        own = side.get("qbench_commit")
        qbench_at = f", qbench {own[:12]}" if own and own != side.get("commit") else ""
        lines.append(f"{label}: {side['side']} — commit {commit}{where}{qbench_at}, torch {side.get('torch')}{extra}, "
                     f"python {side.get('python_version')} ({side['qbench_file']})")
    return lines


def _method(result: ABReport, threshold: float) -> str:
    settings = result.settings
    amount = (f"{settings.pairs} pairs" if settings.pairs is not None
              else f"{settings.budget_s:g} s of pairs")
    return (f"{amount} per case after {settings.warmup_pairs} warm-up pair(s), a fresh process per side, order "
            f"AB/BA; IQR across processes; B/A = median over pairs of the ratio of per-process "
            f"{settings.statistic}s, {100 * (1 - settings.alpha):g}% sign-test interval (false alarm <= "
            f"{100 * settings.alpha:g}% per case); regression = slower and B/A > {1 + threshold:g}")


def _verdict_line(result: ABReport, threshold: float) -> str:
    regressed = [c.case_id for c in result.cases if is_regression(c, threshold)]
    failed = [c.case_id for c in result.cases if c.status == "failed"]
    parts = [f"{len(regressed)} regression(s)" + (f": {', '.join(regressed)}" if regressed else "")]
    if failed:
        parts.append(f"{len(failed)} failed: {', '.join(failed)}")
    return "; ".join(parts)


def _columns(result: ABReport) -> tuple[str, ...]:
    return COLUMNS[:5] + (f"{100 * (1 - result.settings.alpha):g}% CI",) + COLUMNS[6:]


def render_table(result: ABReport, threshold: float) -> str:
    rows = [_columns(result)] + [_row(c, threshold) for c in result.cases]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    body = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    return "\n".join(_side_lines(result) + [_method(result, threshold), ""] + body
                     + ["", _verdict_line(result, threshold)])


def render_markdown(result: ABReport, threshold: float) -> str:
    sides = [f"- **{line.split(':', 1)[0]}**:{line.split(':', 1)[1]}" for line in _side_lines(result)]
    header = "| " + " | ".join(_columns(result)) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(cell.replace("|", "\\|") for cell in _row(c, threshold)) + " |" for c in result.cases]
    return "\n".join(["### qbench ab", ""] + sides + ["", _method(result, threshold), "", header, rule] + rows
                     + ["", f"**{_verdict_line(result, threshold)}**"])


# ---- qbench bisect ----

def _step_name(step) -> str:
    if step.commit:
        return f"{step.commit[:12]} {step.subject or ''}".strip()
    return step.side


def render_step(step) -> str:
    """One judged candidate (qbench.launch.bisect.Step): what it is, why, and each case's figures."""
    lines = [f"{_step_name(step)}: {step.kind} (exit {step.to_dict()['exit_code']}): {step.reason}"]
    for case in step.cases:
        figures = (f"B/A {case['ratio']:.3f} ({case['ci_low']:.3f}-{case['ci_high']:.3f}), {case['pairs']} pairs"
                   if case.get("ratio") else f"{case['status']}: {case['reason']}")
        check = case.get("outputs")
        if check:
            figures += f", output SQNR {check['sqnr_db']:.1f} dB, top-1 agreement {check['top1_agreement']:.0%}"
        lines.append(f"  {case['case_id']}: {figures}")
    return "\n".join(lines)


def render_bisect(result) -> str:
    """A bisection (qbench.launch.bisect.BisectResult): the steps in the order they were judged, then the answer."""
    lines = [f"bisect: good {result.good}, bad {result.bad}; {len(result.candidates)} candidate(s) after good; "
             f"bad means: {', '.join(result.kinds)}", ""]
    for number, step in enumerate(result.steps, 1):
        lines.append(f"step {number}: " + render_step(step).replace("\n", "\n    "))
    lines.append("")
    if result.first_bad:
        step = result.first_bad
        lines.append(f"first bad: {_step_name(step)} ({step.side}): {step.kind}: {step.reason}")
    elif result.unresolved:
        lines.append(f"the first bad is one of {', '.join(result.unresolved)} (the others could not be judged)")
    else:
        kind = result.steps[-1].kind if result.steps else "unknown"
        lines.append(f"the bad side {result.bad} is not confirmed bad against {result.good} ({kind}): nothing to "
                     f"bisect (more pairs or --statistic min narrow the interval on a busy machine)")
    return "\n".join(lines)


# ---- the sensitivity experiment (python -m qbench.launch.ab_experiment) ----

def _resampled_power(d: list[float], pairs: int, shift: float, alpha: float, sims: int, seed: int = 0) -> float:
    """Detection rate of a slowdown when a comparison draws `pairs` log-ratios from a measured A/A pool."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(sims):
        _, low, _ = median_interval([rng.choice(d) + shift for _ in range(pairs)], alpha)
        hits += low > 0
    return hits / sims


def _verdicts(runs: list[dict], statistic: str, alpha: float) -> list[dict]:
    """Each compared case of these comparisons, judged again from its pairs by the current qbench.stats.paired."""
    judged = []
    for line in runs:
        for case in line["result"]["cases"]:
            if case["status"] != "compared":
                continue
            pairs = [Pair(p["a"], p["b"], p["order"], p["started_s"], p["a_min"], p["b_min"],
                          a_cpu_time=p.get("a_cpu_time"), b_cpu_time=p.get("b_cpu_time")) for p in case["per_pair"]]
            try:
                judged.append(compare_pairs(*pair_values(pairs, statistic), alpha).to_dict())
            except InfraError:  # comparisons measured before CPU time was recorded
                continue
    return judged


def _rate(name: str, runs: list[dict], statistic: str, alpha: float) -> tuple[float, str] | None:
    """(detection rate, table row) of one condition; for A/A the rate is of any verdict other than same."""
    judged = _verdicts(runs, statistic, alpha)
    if not judged:
        return None
    slower = sum(case["verdict"] == "slower" for case in judged)
    faster = sum(case["verdict"] == "faster" for case in judged)
    hits = slower + faster if name == "A/A" else slower
    low, high = clopper_pearson(hits, len(judged))
    loads = sorted(v for line in runs for v in (line["load_before"][0], line["load_after"][0]))
    busy = [line["busy_share"] for line in runs if line.get("busy_share") is not None]
    row = (f"| {name} | {statistic} | {len(judged)} | {slower} | {faster} | {hits}/{len(judged)} = "
           f"{hits / len(judged):.1%} ({low:.1%}-{high:.1%}) | "
           f"{statistics.median(case['ratio'] for case in judged):.4f} | "
           f"{statistics.median(case['pairs'] for case in judged):g} | "
           f"{loads[0]:.2f} / {statistics.median(loads):.2f} / {loads[-1]:.2f} | "
           f"{f'{statistics.median(busy):.0%}' if busy else 'n/a'} |")
    return hits / len(judged), row


def _rate_tables(lines: list[dict], conditions: dict, alpha: float) -> list[str]:
    quiet = [line for line in lines if (line.get("busy_share") or 1.0) <= QUIET_BUSY]
    header = ["| condition | per-process statistic | comparisons | 'slower' | 'faster' | detection (A/A: false-alarm) "
              "rate, 95% CI | median B/A | median pairs | load avg 1 min min / median / max | CPUs busy (median) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    report = []
    for title, subset in (("All comparisons", lines), (f"Quiet comparisons (CPUs busy <= {QUIET_BUSY:.0%})", quiet)):
        rows, smallest = [], {}
        for statistic in STATISTICS:
            for name in conditions:
                rated = _rate(name, [line for line in subset if line["condition"] == name], statistic, alpha)
                if rated:
                    rows.append(rated[1])
                    if name != "A/A" and rated[0] >= 0.95:
                        smallest.setdefault(statistic, name)
        if rows:
            report += ["", f"{title}:", ""] + header + rows + [""] + [
                f"Smallest slowdown tried that was detected in >= 95% of comparisons, per-process {statistic}: "
                f"{smallest.get(statistic, 'none')}" for statistic in STATISTICS]
    return report


def _power_tables(lines: list[dict], alpha: float, sims: int) -> list[str]:
    pairs = [case["pairs"] for line in lines for case in line["result"]["cases"] if case["status"] == "compared"]
    aa = [line for line in lines if line["condition"] == "A/A"]
    report = []
    for statistic in STATISTICS:
        pool = []
        for case in (case for line in aa for case in line["result"]["cases"] if case["status"] == "compared"):
            try:
                pool += [math.log(b / a) for a, b in zip(*pair_values([Pair(**p) for p in case["per_pair"]], statistic))]
            except InfraError:  # measured before CPU time was recorded
                continue
        if len(pool) < 50:
            continue
        centre = statistics.median(pool)
        pool = [d - centre for d in pool]
        q1, _, q3 = statistics.quantiles(pool, n=4, method="inclusive")
        n = int(statistics.median(pairs))
        powers = [_resampled_power(pool, n, math.log1p(s), alpha, sims) for s in POWER_GRID]
        report += ["", f"Resampled power, per-process {statistic}: {len(pool)} A/A pairs (centred; their median was "
                       f"{centre:+.4f}, IQR {q1:+.4f} to {q3:+.4f} after centring), {n} drawn per simulated "
                       f"comparison, {sims} simulations; optimistic, as it assumes independent pairs:", "",
                   "| slowdown | " + " | ".join(f"{s:.1%}" for s in POWER_GRID) + " |",
                   "|---|" + "---|" * len(POWER_GRID),
                   "| power | " + " | ".join(f"{p:.0%}" for p in powers) + " |"]
    return report


def summarize(out: Path, sims: int = 2000) -> str:
    """OUT/summary.md of a sensitivity experiment (qbench.launch.ab_experiment) from the comparisons it stored."""
    meta = json.loads((out / "conditions.json").read_text())
    lines = [json.loads(line) for line in (out / "comparisons.jsonl").read_text().splitlines() if line.strip()]
    settings, conditions = meta["settings"], meta["conditions"]
    alpha = settings["alpha"]
    report = [f"# qbench ab sensitivity ({out})", "",
              f"Settings: {settings['seconds_per_case']:g} s per case pair, per-process sampling "
              f"{settings['sample_s']:g} s, {settings['threads']} thread(s), {settings['cpus']} CPUs, verdict at "
              f"{100 * (1 - alpha):g}% (false alarm <= {100 * alpha:g}% per comparison), model {MODEL_MODULE} with "
              f"{settings['blocks']} blocks; {len(lines)} comparisons. Verdicts are recomputed from the stored "
              f"pairs by the current qbench.stats.paired, for each per-process statistic.", "",
              "| condition | tag | blocks | MACs ratio | CPU-time ratio in one process (median, IQR) "
              "| wall-time ratio |", "|---|---|---|---|---|---|"]
    for name, c in conditions.items():
        cpu, wall = c["timed"]["cpu"], c["timed"]["wall"]
        report.append(f"| {name} | {c['tag']} | {c['blocks']} | {c['macs_ratio']:.4f} | {cpu['median_ratio']:.4f} "
                      f"({cpu['iqr'][0]:.4f}-{cpu['iqr'][1]:.4f}) | {wall['median_ratio']:.4f} |")
    report += _rate_tables(lines, conditions, alpha) + _power_tables(lines, alpha, sims)
    return "\n".join(report) + "\n"
