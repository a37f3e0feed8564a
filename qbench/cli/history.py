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
from qbench.cli.common import add_results_argument
from qbench.compare.accuracy_gate import gate, render_findings
from qbench.compare.policy import load_policy
from qbench.compare.steps import find_regressions, git_commit_order, latest_runs, unjudged
from qbench.errors import ConfigError
from qbench.history.series import Series, order_by_commits, series_metrics
from qbench.history.sides import ResultsFolder
from qbench.history.store import run_files
from qbench.report.history import render_regressions

__all__ = ["HistoryCommand", "COMMAND"]

EPILOG = """\
Series: one point per run for every machine x case (same definition) x metric, the median over the run's
processes; plus speedup (fp32/int8 latency) and compression (fp32/int8 size) per quantized case. Steps are found
with asv's Potts solver and regression rule; thresholds are compare's defaults raised to the case's measured noise
(<results>/<machine>/noise.json from qbench noise). Latency, throughput and bandwidth are judged with each run's
shared shift divided out (the median over its cases): a shift with a new qbench commit or torch/torchvision/torchao
build is one regression of "(every case)"; one with nothing changed is the machine's level, listed, never a
regression (qbench.compare.run_shifts).

exit codes (a nightly CI job can gate on them):
  0  no regression starts in a machine's latest complete run (older, still-present ones are listed)
  1  a regression's first bad run is its machine's latest run (also when some files were unreadable), or the
     accuracy gate (qbench.compare.accuracy_gate) fails a case of a machine's latest run
  2  bad arguments, an unknown machine, or no run files
  3  a results or noise file was unreadable and nothing new regressed (each named on stderr; the rest is analysed)
"""


class HistoryCommand(Command):
    name = "history"
    help = "find steps in history and list regressions (exit 1 when one starts in the latest run)"

    def add_arguments(self, parser):
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        add_results_argument(parser)
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
        history = ResultsFolder(args.results)
        series = _select(history.series(args.metric or None), args)
        dropped: set[str] = set()
        if args.order == "commit":
            series, dropped = order_by_commits(series, git_commit_order(args.repo))
        policy = load_policy(args.results, {s.machine_id for s in series}, history.errors)
        shifts: list = []
        regressions = find_regressions(series, policy, machine_shifts=shifts)
        latest = latest_runs(history.runs)
        new = {id(r) for r in regressions if latest.get(r.machine_id) == r.first_bad.run_id}
        records = history.accuracy_records()
        findings = gate([r for r in records if r.run_id in set(latest.values())], records)
        if args.format == "json":
            print(json.dumps({"results": str(args.results), "series": len(series),
                              "runs": len({run_id for s in series for run_id in s.run_ids}), "latest_runs": latest,
                              "regressions": [{**r.to_dict(), "in_latest_run": id(r) in new} for r in regressions],
                              "machine_shifts": [r.to_dict() for r in shifts],
                              "accuracy_gate": [f.to_dict() for f in findings],
                              "unjudged": [{"machine_id": s.machine_id, "case_id": s.case_id, "metric": s.metric,
                                            "why": unjudged(s)} for s in series if unjudged(s)],
                              "errors": [str(e) for e in history.errors]}, indent=2))
        else:
            print(render_regressions(regressions, new, series, policy, shifts))
            print(render_findings(findings))
        if dropped:
            print(f"qbench: note: {len(dropped)} run(s) with commits not in {args.repo} were left out",
                  file=sys.stderr)
        for error in history.errors:
            print(f"qbench: error: {error}", file=sys.stderr)
        if new or any(f.failing for f in findings):
            return EXIT_REGRESSION
        return EXIT_INFRA if history.errors else EXIT_OK


def _select(series: list[Series], args) -> list[Series]:
    machines = {s.machine_id for s in series}
    unknown = [m for m in args.machine if m not in machines]
    if unknown:
        raise ConfigError(f"unknown machine id {', '.join(unknown)}; machines with history: "
                          f"{', '.join(sorted(machines)) or 'none'}")
    return [s for s in series if (not args.machine or s.machine_id in args.machine)
            and (not args.filter or any(fnmatch.fnmatch(s.case_id, g) for g in args.filter))]


COMMAND = HistoryCommand
