"""Render a comparison report (qbench.compare.pairwise) as a terminal table, JSON, or markdown for a pull request."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

from qbench.compare.pairwise import VERDICTS, Comparison, CompareReport, SideSummary
from qbench.metrics import METRICS, format_value
from qbench.stats.significance import Significance

__all__ = ["JSON_SCHEMA_VERSION", "render_table", "render_json", "render_markdown"]

JSON_SCHEMA_VERSION = 2


def _cell(metric_name: str, summary: SideSummary | None) -> str:
    if summary is None:
        return "-"
    metric = METRICS.get(metric_name)
    if metric is None:
        return f"{summary.value:g}"
    text = format_value(metric, summary.value, (summary.q3 - summary.q1) / 2)
    return text + (f" ({summary.processes}p)" if summary.processes > 1 else "")


def _ratio(comparison: Comparison) -> str:
    return "-" if comparison.ratio is None else f"{comparison.ratio:.3f}"


def _rows(report: CompareReport, verdicts: Iterable[str] | None = None) -> list[list[str]]:
    wanted = set(verdicts or VERDICTS)
    multi_machine = len({c.machine_id for c in report.comparisons}) > 1
    rows = []
    for c in report.comparisons:
        if c.verdict in wanted:
            case = f"{c.case_id} @ {c.machine_id}" if multi_machine else c.case_id
            rows.append([c.verdict, case, c.metric, _cell(c.metric, c.base), _cell(c.metric, c.cand), _ratio(c),
                         c.reason])
    return rows


def _summary_line(report: CompareReport) -> str:
    return ", ".join(f"{n} {verdict}" for verdict, n in report.counts.items())


def render_table(report: CompareReport, only_changed: bool = False) -> str:
    lines = [f"base       {report.base}", f"candidate  {report.cand}"]
    for d in report.differences:
        lines.append(f"differs    {d.field}: {', '.join(d.base) or '-'} → {', '.join(d.cand) or '-'}")
    for path in report.unreadable:
        lines.append(f"unreadable {path}")
    header = ["verdict", "case", "metric", "base", "candidate", "ratio", "why"]
    rows = _rows(report, [v for v in VERDICTS if v != "unchanged"] if only_changed else None)
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    lines.append("")
    for row in [header, *rows]:
        lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[-1])
    lines.append("")
    lines.append(_summary_line(report))
    return "\n".join(lines)


def _summary_json(summary: SideSummary | None) -> dict | None:
    if summary is None:
        return None
    return {"value": summary.value, "q1": summary.q1, "q3": summary.q3, "processes": summary.processes,
            "samples": summary.samples, "values": list(summary.values)}


def _test_json(test: Significance | None) -> dict | None:
    """The test of a noisy metric; log standard deviations and standard error as fractions (0.05 ≈ 5%)."""
    if test is None:
        return None
    noise = test.noise
    return {"name": test.test, "p_value": test.p_value, "significant": test.significant, "alpha": test.alpha,
            "power": test.power, "detectable": _finite(test.detectable), "standard_error": test.standard_error,
            "df": None if test.df is None or math.isinf(test.df) else test.df, "processes": list(test.processes), "runs": list(test.runs),
            "process_sd": test.process_sd, "process_sd_measured": test.measured,
            "run_sd": None if noise is None else noise.run, "assumed_from": None if noise is None else noise.source}


def _finite(value: float | None) -> float | None:
    """JSON has no infinity: an unbounded figure (nothing detectable) is null."""
    return value if value is None or math.isfinite(value) else None


def render_json(report: CompareReport) -> str:
    comparisons = []
    for c in report.comparisons:
        metric = METRICS.get(c.metric)
        comparisons.append({
            "case_id": c.case_id, "machine_id": c.machine_id, "metric": c.metric,
            "unit": metric.unit if metric else None, "verdict": c.verdict, "reason": c.reason, "ratio": c.ratio,
            "base": _summary_json(c.base), "candidate": _summary_json(c.cand), "threshold": c.threshold,
            "test": _test_json(c.test),
        })
    document = {"schema_version": JSON_SCHEMA_VERSION, "base": report.base, "candidate": report.cand,
                "counts": report.counts, "regressed": report.regressed,
                "environment_differences": [{"field": d.field, "base": list(d.base), "candidate": list(d.cand)}
                                            for d in report.differences],
                "unreadable": list(report.unreadable), "comparisons": comparisons}
    return json.dumps(document, indent=2, allow_nan=False)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(rows: list[list[str]]) -> list[str]:
    lines = ["| case | metric | base | candidate | ratio | why |", "|---|---|---|---|---:|---|"]
    for _, case, metric, base, cand, ratio, why in rows:
        lines.append(f"| `{_md(case)}` | {metric} | {_md(base)} | {_md(cand)} | {ratio} | {_md(why)} |")
    return lines


def render_markdown(report: CompareReport) -> str:
    counts = report.counts
    headline = " · ".join(f"**{n} {v}**" if v == "regressed" and n else f"{n} {v}" for v, n in counts.items())
    lines = ["### qbench compare", "", f"**Base:** {_md(report.base)}  ", f"**Candidate:** {_md(report.cand)}", "",
             headline, ""]
    if report.differences:
        lines += ["| environment | base | candidate |", "|---|---|---|"]
        lines += [f"| {d.field} | {_md(', '.join(d.base) or '-')} | {_md(', '.join(d.cand) or '-')} |"
                  for d in report.differences]
        lines.append("")
    if report.unreadable:
        lines += ["**Unreadable results files** (not compared):", ""]
        lines += [f"- `{_md(path)}`" for path in report.unreadable]
        lines.append("")
    for verdict in VERDICTS:
        rows = _rows(report, [verdict])
        if not rows:
            continue
        title = f"{verdict.capitalize()} ({len(rows)})"
        if verdict in ("undetectable", "unchanged"):
            lines += [f"<details><summary>{title}</summary>", "", *_md_table(rows), "", "</details>", ""]
        else:
            lines += [f"#### {title}", "", *_md_table(rows), ""]
    return "\n".join(lines).rstrip() + "\n"
