"""`qbench compare BASE CAND`: judge every case and metric of two runs, commits or results folders, print the verdicts
as a table, JSON or markdown, and exit 1 on any regression."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from qbench.cli import EXIT_INFRA, EXIT_OK, EXIT_REGRESSION, Command
from qbench.compare.pairwise import CompareReport, compare, environment_differences, suite_key
from qbench.errors import ConfigError, StoreError
from qbench.history.noise import load_noise, noise_path
from qbench.records import RunRecord
from qbench.report.compare import render_json, render_markdown, render_table
from qbench.history.sides import History, Side, resolve_side
from qbench.suite.load import load_suite, resolve_suite_path
from qbench.thresholds import GRAMMAR, ThresholdPolicy, parse_thresholds

__all__ = ["CompareCommand", "COMMAND", "suite_thresholds"]

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
        parser.add_argument("--results", default="results", help="history folder (default: results)")
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
        history = History(args.results)
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


def compare_sides(base: Side, cand: Side, history: History, *, results: str, command_line=(),
                  noise_file: str | None = None) -> CompareReport:
    """The comparison of two resolved sides under the threshold policy (command line > suite > default, raised
    to measured noise); also used by `qbench report --compare`."""
    policy = ThresholdPolicy(command_line=command_line, suites=suite_thresholds(cand.records),
                             noise=_noise(results, noise_file, history, cand.records))
    comparisons = compare(base.records, cand.records, policy)
    return CompareReport(base.label, cand.label, tuple(comparisons),
                         tuple(environment_differences(base.records, cand.records)),
                         tuple(str(error) for error in history.errors))


def _print_errors(errors: list[StoreError]) -> None:
    for error in errors:
        print(f"qbench: error: {error}", file=sys.stderr)


def suite_thresholds(records: list[RunRecord]) -> dict:
    """Thresholds of the candidate's suite files that can still be found, by suite key: at the path the run
    recorded, else by name among the known suites when that file is the one (sha256) the run read."""
    found = {}
    for record in records:
        key = suite_key(record)
        if key not in found:
            path = _suite_file(record.suite)
            found[key] = load_suite(str(path.resolve())).thresholds if path is not None else ()
    return found


def _suite_file(suite: dict) -> Path | None:
    recorded = suite.get("path")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    if suite.get("name") and suite.get("sha256"):
        try:
            path = resolve_suite_path(suite["name"])
        except ConfigError:
            return None
        if hashlib.sha256(path.read_bytes()).hexdigest() == suite["sha256"]:
            return path
    return None


def _noise(results: str, noise_file: str | None, history: History, records: list[RunRecord]) -> dict:
    """machine_id (or "*" for --noise) → case_id → metric → fraction; an unreadable file is named and skipped."""
    if noise_file is not None:
        sources = {"*": Path(noise_file)}
    else:
        machines = sorted({str(r.machine.get("machine_id")) for r in records})
        sources = {machine: noise_path(results, machine) for machine in machines}
    noise = {}
    for machine, path in sources.items():
        try:
            noise[machine] = load_noise(path)
        except StoreError as exc:
            history.errors.append(exc)
    return noise


COMMAND = CompareCommand
