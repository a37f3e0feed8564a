"""What `qbench history` and `qbench merge` print: regressions with their last good and first bad runs, and what a
merge brought in."""

from __future__ import annotations

from qbench.compare.steps import Regression, threshold_for, unjudged
from qbench.history.merge import MergeReport
from qbench.history.series import Series, format_series_value
from qbench.thresholds import DEFAULT_THRESHOLDS, ThresholdPolicy

__all__ = ["render_regressions", "regression_lines", "render_merge"]


def _where(point, label: str, latest: bool) -> str:
    commit = (point.commit or "unknown")[:10] + ("+dirty" if point.dirty else "")
    return (f"  {label:10} {point.started_at[:19]}  run {point.run_id[:8]}  commit {commit}  torch {point.torch}"
            f"{'  (latest run)' if latest else ''}")


def _unset(value: str | None) -> str:
    return "(unset)" if value is None else value


def render_regressions(regressions: list[Regression], new: set[int], series: list[Series],
                 policy: ThresholdPolicy, machine_shifts: list[Regression] = ()) -> str:
    runs = {run_id for s in series for run_id in s.run_ids}
    from_noise = sum(1 for s in series if threshold_for(s, policy)[1] == "noise.json")
    defaults = ", ".join(f"{name} {t.describe()}" for name, t in DEFAULT_THRESHOLDS.items())
    lines = [f"history   {len(series)} series over {len(runs)} runs on {len({s.machine_id for s in series})} "
             f"machine(s); thresholds: measured noise on {from_noise} series, else defaults ({defaults}; speedup "
             f"as latency, compression as size)"]
    cannot = [s for s in series if unjudged(s)]
    if cannot:
        named = ", ".join(f"{s.case_id} {s.metric}" for s in cannot[:3]) + (", …" if len(cannot) > 3 else "")
        lines.append(f"{len(cannot)} series cannot be judged (a value is 0, negative or not finite; relative steps "
                     f"need values > 0): {named}")
    for shift in machine_shifts:
        lines.append(f"machine shift {shift.metric} {shift.change:+.1%} of every case from run {shift.first_bad.run_id[:8]} "
                     f"({shift.first_bad.started_at[:10]}; {shift.machine_id}) with no qbench or environment change: "
                     f"the machine's level, divided out of each case's series, not a regression")
    if not regressions:
        lines.append("no regressions")
        return "\n".join(lines)
    lines.append(f"{len(regressions)} regression(s), {len(new)} starting in the latest run")
    for r in regressions:
        lines += ["", f"REGRESSION {r.metric} {r.change:+.1%}  {r.case_id}  ({r.machine_id})",
                  f"  {format_series_value(r.before, r.metric)} -> {format_series_value(r.after, r.metric)} (now "
                  f"{format_series_value(r.latest, r.metric)}); threshold {r.threshold:.1%} from "
                  f"{r.threshold_source}; detectable {r.detectable:.1%}", _where(r.last_good, "last good", False),
                  _where(r.first_bad, "first bad", id(r) in new)]
        if r.environment_changes:
            lines.append("  changed    " + ", ".join(f"{name} {_unset(a)} -> {_unset(b)}"
                                                    for name, (a, b) in r.environment_changes.items()))
    return "\n".join(lines)


def regression_lines(regressions: list[Regression]) -> str:
    """ResultsFolder's regression blocks (its header line, about all series, left out), then the verdict."""
    blocks = render_regressions(regressions, set(), [], ThresholdPolicy()).splitlines()[2:] if regressions else []
    return "\n".join(blocks + [f"verdict   {len(regressions)} regression(s) start in the merged runs"])


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def render_merge(report: MergeReport) -> str:
    lines = [f"merged    {_count(len(report.sources), 'source')} into {report.into}: "
             f"{_count(len(report.copied), 'run file')} copied ({_count(report.records, 'record')}), "
             f"{len(report.identical)} identical already there, {len(report.superseded)} superseded partial"]
    for path in report.copied:
        lines.append(f"copied    {path}")
    if report.machines_added:
        lines.append(f"machines  added {', '.join(report.machines_added)}")
    for path in report.documents:
        if path.name != "machine.json":
            lines.append(f"updated   {path}")
    for source in report.empty_sources:
        lines.append(f"warning   {source} holds no run files")
    for path in report.ignored:
        lines.append(f"ignored   {path}")
    return "\n".join(lines)
