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
from qbench.compare.accuracy_gate import gate_runs, render_findings
from qbench.compare.policy import regressions_in_runs
from qbench.history.merge import merge_results
from qbench.report.history import regression_lines, render_merge

__all__ = ["MergeCommand", "COMMAND"]


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
            print(render_merge(report))
            if args.fail_on_regression:
                print(regression_lines(regressions))
                print(render_findings(findings))
        for error in errors:
            print(f"qbench: error: {error}", file=sys.stderr)
        if regressions or any(f.failing for f in findings):
            return EXIT_REGRESSION
        return EXIT_INFRA if errors else EXIT_OK


COMMAND = MergeCommand
