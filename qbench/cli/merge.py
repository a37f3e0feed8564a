"""`qbench merge SRC... --into RESULTS`: fold results folders (CI shards' artifacts) into one history, and with
--fail-on-regression say whether any regression starts in the runs it brought in.

Exit codes: 0 merged; 1 with --fail-on-regression, a regression whose first bad run is one of the merged runs;
2 a source that is not a folder; 3 an unreadable file or a conflict (a different file under a name the history
already has): nothing is written then.
"""

from __future__ import annotations

import json
import sys

from qbench.cli import EXIT_INFRA, EXIT_OK, EXIT_REGRESSION, Command
from qbench.cli.history import load_policy, render_table
from qbench.compare.accuracy_gate import gate_runs, render_findings
from qbench.compare.steps import Regression, find_regressions
from qbench.history.merge import MergeReport, merge_results
from qbench.history.series import build_series
from qbench.history.sides import History
from qbench.thresholds import ThresholdPolicy

__all__ = ["MergeCommand", "COMMAND", "regressions_in_runs", "render_report"]


class MergeCommand(Command):
    name = "merge"
    help = "merge results folders (e.g. CI shards' artifacts) into one history, never overwriting"

    def add_arguments(self, parser):
        parser.add_argument("sources", nargs="+", metavar="SRC", help="results folders to merge from")
        parser.add_argument("--into", required=True, metavar="RESULTS", help="the history to merge into")
        parser.add_argument("--fail-on-regression", action="store_true",
                            help="after merging, find steps in the history (as `qbench history`) and exit 1 when "
                                 "a regression's first bad run is one of the merged runs (e.g. any shard of tonight)")
        parser.add_argument("--format", choices=("table", "json"), default="table")

    def run(self, args) -> int:
        report = merge_results(args.sources, args.into)
        regressions, errors, findings = [], [], []
        if args.fail_on_regression:
            regressions, errors = regressions_in_runs(args.into, set(report.run_ids))
            findings, _ = gate_runs(args.into, set(report.run_ids))
        if args.format == "json":
            print(json.dumps({**report.to_dict(), "regressions": [r.to_dict() for r in regressions],
                              "accuracy_gate": [f.to_dict() for f in findings],
                              "errors": [str(e) for e in errors]}, indent=2))
        else:
            print(render_report(report))
            if args.fail_on_regression:
                print(_regression_lines(regressions))
                print(render_findings(findings))
        for error in errors:
            print(f"qbench: error: {error}", file=sys.stderr)
        if regressions or any(f.failing for f in findings):
            return EXIT_REGRESSION
        return EXIT_INFRA if errors else EXIT_OK


def regressions_in_runs(results, run_ids: set[str]) -> tuple[list[Regression], list]:
    """History's regressions (same series, noise and thresholds as `qbench history`) whose first bad run is one of
    `run_ids`, and the files that could not be read."""
    history = History(results)
    pairs = [(run, record) for run in history.runs for record in run.records]
    series = build_series(pairs)
    policy = load_policy(results, {s.machine_id for s in series}, history.errors)
    found = [r for r in find_regressions(series, policy) if r.first_bad.run_id in run_ids]
    return found, history.errors


def _regression_lines(regressions: list[Regression]) -> str:
    """History's regression blocks (its header line, about all series, left out), then the verdict."""
    blocks = render_table(regressions, set(), [], ThresholdPolicy()).splitlines()[2:] if regressions else []
    return "\n".join(blocks + [f"verdict   {len(regressions)} regression(s) start in the merged runs"])


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def render_report(report: MergeReport) -> str:
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


COMMAND = MergeCommand
