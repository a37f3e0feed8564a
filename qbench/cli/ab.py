"""`qbench ab`: measure a suite's cases on two sides (git refs of qbench, Python environments) in interleaved pairs
of fresh processes and report each case's latency ratio B/A with a confidence interval and a verdict."""

from __future__ import annotations

import json
import sys

from qbench.launch.ab import (DEFAULT_ALPHA, DEFAULT_SECONDS, STATISTICS, ABSettings, CaseComparison, is_regression,
                       latency_threshold, run_ab, with_sample_seconds)
from qbench.launch.ab_sides import open_sides, parse_side
from qbench.cli import EXIT_REGRESSION, Command
from qbench.cli.common import add_fail_on_error, exit_for_cases
from qbench.launch.lifecycle import sigterm_as_interrupt
from qbench.report.ab import interval_text, render_markdown, render_table
from qbench.suite.load import load_suite

__all__ = ["ABCommand", "COMMAND"]

def _progress(comparison: CaseComparison, done: int, total: int) -> None:
    stats = comparison.stats
    summary = (f"B/A {stats.ratio:.3f} ({interval_text(comparison)}) {stats.verdict}" if stats
               else f"{comparison.status}: {comparison.reason}")
    print(f"[{done}/{total}] {comparison.case_id}: {len(comparison.pairs)} pairs, {summary}, "
          f"{comparison.seconds:.0f} s, load {comparison.load.get('end', [None])[0]}"[:200],
          file=sys.stderr, flush=True)


class ABCommand(Command):
    name = "ab"
    help = "compare two sides (git refs, Python environments) in interleaved pairs of fresh processes"

    def add_arguments(self, parser):
        parser.add_argument("--suite", required=True, help="suite name (suites/<name>.toml) or path to a .toml file")
        parser.add_argument("--filter", action="append", default=[], metavar="GLOB",
                            help="keep cases whose id (model/mode/engine/bN/tN/weights) matches; repeatable")
        parser.add_argument("--a", required=True, metavar="SIDE",
                            help="baseline: a git ref of the qbench repository, python:/path/to/python, or current")
        parser.add_argument("--b", required=True, metavar="SIDE", help="candidate, same forms as --a")
        amount = parser.add_mutually_exclusive_group()
        amount.add_argument("--pairs", type=int, default=None, metavar="N", help="measure N pairs per case")
        amount.add_argument("--seconds-per-pair", type=float, default=None, metavar="T",
                            help=f"seconds of measuring for each case's A/B comparison (both sides, after one "
                                 f"warm-up pair); pairs are added until they are spent (default {DEFAULT_SECONDS:g})")
        parser.add_argument("--threshold", default="latency:0%", metavar="latency:N%",
                            help="exit 1 when B is significantly slower by more than this (default latency:0%%)")
        parser.add_argument("--statistic", choices=STATISTICS, default="median",
                            help="what each process contributes: the median of its latency samples (default) or "
                                 "its fastest sample")
        parser.add_argument("--sample-seconds", type=float, default=None, metavar="S",
                            help="latency sampling time per process (default: the suite's [measure] min_time_s); "
                                 "shorter gives more pairs")
        parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                            help=f"false-alarm probability of a verdict per case (default {DEFAULT_ALPHA:g})")
        parser.add_argument("--isolation", choices=("fork", "spawn"), default=None,
                            help="fork from each side's pre-imported worker (default) or spawn per process")
        parser.add_argument("--format", choices=("table", "json", "markdown"), default="table")
        parser.add_argument("--no-progress", action="store_true", help="no per-case progress on stderr")
        add_fail_on_error(parser)

    def run(self, args) -> int:
        threshold = latency_threshold(args.threshold)
        settings = ABSettings(pairs=args.pairs, seconds=args.seconds_per_pair, alpha=args.alpha,
                              statistic=args.statistic)
        specs = parse_side(args.a), parse_side(args.b)
        spec = with_sample_seconds(load_suite(args.suite), args.sample_seconds)
        # SIGTERM (a CI time limit) unwinds like Ctrl-C, so that the temporary worktrees are removed.
        with sigterm_as_interrupt(), open_sides(*specs) as sides:
            on_case = None if args.no_progress else _progress
            result = run_ab(spec, sides, settings, filters=args.filter, isolation=args.isolation, on_case=on_case)
        if args.format == "json":
            print(json.dumps(result.to_dict(threshold), indent=2))
        elif args.format == "markdown":
            print(render_markdown(result, threshold))
        else:
            print(render_table(result, threshold))
        for case in result.cases:
            if case.status == "failed":
                print(f"qbench: error: {case.case_id} failed: {case.reason}", file=sys.stderr)
        if any(is_regression(c, threshold) for c in result.cases):
            return EXIT_REGRESSION
        return exit_for_cases(result.cases, args.fail_on_error)


COMMAND = ABCommand
