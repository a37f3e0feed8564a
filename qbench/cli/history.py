"""`qbench history`: step detection over every machine × case × metric series of the history, listing the
regressions still present with their last good and first bad runs.

Exit codes (nightly CI gates on them): 0 no regression starts in a machine's latest complete run (older regressions
that are still present are listed, but do not fail); 1 at least one regression's first bad run is its machine's
latest run (also when some files were unreadable); 2 bad arguments or no run files; 3 a results or noise file could
not be read and nothing new regressed (each is named on stderr; the other files are still analysed and printed).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys

from qbench.cli import EXIT_INFRA, EXIT_OK, EXIT_REGRESSION, Command
from qbench.errors import ConfigError, StoreError
from qbench.compare.steps import (Regression, find_regressions, git_commit_order, latest_runs, threshold_for,
                                  unjudged)
from qbench.history.noise import load_noise, noise_path
from qbench.history.series import Series, build_series, format_series_value, order_by_commits, series_metrics
from qbench.history.sides import History
from qbench.history.store import run_files
from qbench.thresholds import DEFAULT_THRESHOLDS, ThresholdPolicy

__all__ = ["HistoryCommand", "COMMAND", "load_policy", "render_table"]

EPILOG = """\
Series: one point per run for every machine x case (same definition) x metric, the median over the run's
processes; plus speedup (fp32/int8 latency) and compression (fp32/int8 size) per quantized case. Steps are found
with asv's Potts solver and regression rule; thresholds are compare's defaults raised to the case's measured noise
(<results>/<machine>/noise.json from qbench noise).

exit codes (a nightly CI job can gate on them):
  0  no regression starts in a machine's latest complete run (older, still-present ones are listed)
  1  a regression's first bad run is its machine's latest run (also when some files were unreadable)
  2  bad arguments, an unknown machine, or no run files
  3  a results or noise file was unreadable and nothing new regressed (each named on stderr; the rest is analysed)
"""


class HistoryCommand(Command):
    name = "history"
    help = "find steps in history and list regressions (exit 1 when one starts in the latest run)"

    def add_arguments(self, parser):
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.add_argument("--results", default="results", help="history folder (default: results)")
        parser.add_argument("--machine", action="append", default=[], metavar="ID",
                            help="only this machine id (repeatable; default: all)")
        parser.add_argument("--metric", action="append", default=[], choices=sorted(series_metrics()),
                            help="only this metric (repeatable; default: all)")
        parser.add_argument("--filter", action="append", default=[], metavar="GLOB",
                            help="only cases whose id matches (repeatable)")
        parser.add_argument("--order", choices=("time", "commit"), default="time",
                            help="order runs by start time (default) or by the commit order of --repo")
        parser.add_argument("--repo", default=".", help="git repository giving the commit order (default: .)")
        parser.add_argument("--format", choices=("table", "json"), default="table")

    def run(self, args) -> int:
        if not run_files(args.results):
            raise ConfigError(f"no run files under {args.results}")
        history = History(args.results)
        pairs = [(run, record) for run in history.runs for record in run.records]
        series = _select(build_series(pairs, args.metric or None), args)
        dropped: set[str] = set()
        if args.order == "commit":
            series, dropped = order_by_commits(series, git_commit_order(args.repo))
        policy = load_policy(args.results, {s.machine_id for s in series}, history.errors)
        regressions = find_regressions(series, policy)
        latest = latest_runs(history.runs)
        new = {id(r) for r in regressions if latest.get(r.machine_id) == r.first_bad.run_id}
        if args.format == "json":
            print(json.dumps({"results": str(args.results), "series": len(series),
                              "runs": len({p.run_id for s in series for p in s.points}), "latest_runs": latest,
                              "regressions": [{**r.to_dict(), "in_latest_run": id(r) in new} for r in regressions],
                              "unjudged": [{"machine_id": s.machine_id, "case_id": s.case_id, "metric": s.metric,
                                            "why": unjudged(s)} for s in series if unjudged(s)],
                              "errors": [str(e) for e in history.errors]}, indent=2))
        else:
            print(render_table(regressions, new, series, policy))
        if dropped:
            print(f"qbench: note: {len(dropped)} run(s) with commits not in {args.repo} were left out",
                  file=sys.stderr)
        for error in history.errors:
            print(f"qbench: error: {error}", file=sys.stderr)
        if new:
            return EXIT_REGRESSION
        return EXIT_INFRA if history.errors else EXIT_OK


def load_policy(results, machine_ids, errors: list) -> ThresholdPolicy:
    """compare's threshold policy with each machine's noise.json; an unreadable one is added to `errors`."""
    noise = {}
    for machine_id in sorted(machine_ids):
        try:
            noise[machine_id] = load_noise(noise_path(results, machine_id))
        except StoreError as exc:
            errors.append(exc)
    return ThresholdPolicy(noise=noise)


def _select(series: list[Series], args) -> list[Series]:
    machines = {s.machine_id for s in series}
    unknown = [m for m in args.machine if m not in machines]
    if unknown:
        raise ConfigError(f"unknown machine id {', '.join(unknown)}; machines with history: "
                          f"{', '.join(sorted(machines)) or 'none'}")
    return [s for s in series if (not args.machine or s.machine_id in args.machine)
            and (not args.filter or any(fnmatch.fnmatch(s.case_id, g) for g in args.filter))]


def _where(point, label: str, latest: bool) -> str:
    commit = (point.commit or "unknown")[:10] + ("+dirty" if point.dirty else "")
    return (f"  {label:10} {point.started_at[:19]}  run {point.run_id[:8]}  commit {commit}  torch {point.torch}"
            f"{'  (latest run)' if latest else ''}")


def _unset(value: str | None) -> str:
    return "(unset)" if value is None else value


def render_table(regressions: list[Regression], new: set[int], series: list[Series],
                 policy: ThresholdPolicy) -> str:
    runs = {p.run_id for s in series for p in s.points}
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
    if not regressions:
        lines.append("no regressions")
        return "\n".join(lines)
    lines.append(f"{len(regressions)} regression(s), {len(new)} starting in the latest run")
    for r in regressions:
        lines += ["", f"REGRESSION {r.metric} {r.change:+.1%}  {r.case_id}  ({r.machine_id})",
                  f"  {format_series_value(r.before, r.metric)} -> {format_series_value(r.after, r.metric)} (now "
                  f"{format_series_value(r.latest, r.metric)}); threshold {r.threshold:.1%} from "
                  f"{r.threshold_source}", _where(r.last_good, "last good", False),
                  _where(r.first_bad, "first bad", id(r) in new)]
        if r.environment_changes:
            lines.append("  changed    " + ", ".join(f"{name} {_unset(a)} -> {_unset(b)}"
                                                    for name, (a, b) in r.environment_changes.items()))
    return "\n".join(lines)


COMMAND = HistoryCommand
