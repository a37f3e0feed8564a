"""`qbench compare BASE CAND`: judge every case and metric of two runs, commits or results folders, print the verdicts
as a table, JSON or markdown, and exit 1 on any regression."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qbench.cli import EXIT_INFRA, EXIT_OK, EXIT_REGRESSION, Command
from qbench.cli.common import add_results_argument
from qbench.compare.policy import compare_sides
from qbench.errors import ConfigError, StoreError
from qbench.history.sides import ResultsFolder, resolve_side
from qbench.report.compare import render_json, render_markdown, render_table
from qbench.thresholds import GRAMMAR, parse_thresholds

__all__ = ["CompareCommand", "COMMAND"]

EPILOG = f"""\
sides: a run id (or a unique prefix of 6+ hex digits), a commit (prefix of the commit runs were made with, or any
git ref of the current repository: HEAD~1, main), a results folder or run file, or latest / latest~N.

thresholds: {GRAMMAR},
e.g. latency:5% size:0.1% latency:0.5 (ms); repeat --threshold or separate with commas. Which applies:
--threshold as given; else the candidate suite file's [thresholds], else the default (latency 10%, memory 5%,
size 0.1%), raised to the case's measured noise (--noise, else <results>/<machine>/noise.json).

exit codes: 0 no regression; 1 a regression (also when some results files were unreadable: what was read shows
it); 2 bad input (unknown or ambiguous side, bad threshold); 3 a results file was unreadable and nothing regressed
(each is named on stderr, the rest is compared, so a clean verdict is incomplete), or a side was not found while
some files were unreadable (it may be in them).
"""


class CompareCommand(Command):
    name = "compare"
    help = "compare two runs, commits or results folders case by case and metric by metric; exit 1 on regression"

    def add_arguments(self, parser):
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.add_argument("base", metavar="BASE", help="the baseline side")
        parser.add_argument("cand", metavar="CAND", help="the candidate side")
        add_results_argument(parser)
        parser.add_argument("--threshold", action="append", default=[], metavar="T",
                            help="metric:N%% or metric:N (display unit); repeatable or comma-separated")
        parser.add_argument("--format", choices=("table", "json", "markdown"), default="table")
        parser.add_argument("--noise", default=None, metavar="FILE",
                            help="noise.json with per-case thresholds (default: the candidate machine's)")
        parser.add_argument("--only-changed", action="store_true",
                            help="table: leave out the unchanged rows")

    def run(self, args) -> int:
        command_line = parse_thresholds(args.threshold)
        if args.noise is not None and not Path(args.noise).is_file():
            raise ConfigError(f"--noise {args.noise}: no such file")
        history = ResultsFolder(args.results)
        try:
            base = resolve_side(args.base, history)
            cand = resolve_side(args.cand, history)
        except (ConfigError, StoreError) as exc:
            others = [error for error in history.errors if error is not exc]
            _print_errors(others)
            if others and isinstance(exc, ConfigError):
                print(f"qbench: error: {exc}", file=sys.stderr)
                return EXIT_INFRA
            raise
        report = compare_sides(base, cand, history, results=args.results, command_line=command_line,
                               noise_file=args.noise)
        unreadable = report.unreadable
        _print_errors(history.errors)
        renderer = {"json": render_json, "markdown": render_markdown}.get(args.format)
        print(renderer(report) if renderer else render_table(report, only_changed=args.only_changed))
        if report.regressed:
            return EXIT_REGRESSION
        return EXIT_INFRA if unreadable else EXIT_OK


def _print_errors(errors: list[StoreError]) -> None:
    for error in errors:
        print(f"qbench: error: {error}", file=sys.stderr)


COMMAND = CompareCommand
