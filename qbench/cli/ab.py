"""`qbench ab`: measure a suite's cases on two sides (git refs of qbench or of --repo, environments built from
requirement specs, other interpreters) in interleaved pairs of fresh processes and report each case's latency ratio
B/A with a confidence interval and a verdict."""

from __future__ import annotations

import json
import sys

from qbench.launch.ab import (ABSettings, CaseComparison, is_regression, latency_threshold, run_ab,
                              with_sample_seconds)
from qbench.launch.ab_sides import open_sides, parse_side
from qbench.cli import EXIT_REGRESSION, Command
from qbench.cli.common import add_fail_on_error, add_paired_arguments, exit_for_cases
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
        parser.add_argument("--a", required=True, metavar="SIDE",
                            help="baseline: a git ref (of --repo, default the qbench repository), env:REQUIREMENTS "
                                 "(a cached virtualenv built on demand, e.g. env:torchao==0.17.0 or "
                                 "env:@requirements.txt), python:/path/to/python, or current")
        parser.add_argument("--b", required=True, metavar="SIDE", help="candidate, same forms as --a")
        add_paired_arguments(parser, "latency:0%")
        parser.add_argument("--format", choices=("table", "json", "markdown"), default="table")
        add_fail_on_error(parser)

    def run(self, args) -> int:
        threshold = latency_threshold(args.threshold)
        settings = ABSettings(pairs=args.pairs, seconds=args.seconds_per_pair, alpha=args.alpha,
                              statistic=args.statistic)
        specs = parse_side(args.a), parse_side(args.b)
        spec = with_sample_seconds(load_suite(args.suite), args.sample_seconds)
        # SIGTERM (a CI time limit) unwinds like Ctrl-C, so that the temporary worktrees are removed.
        say = None if args.no_progress else (lambda line: print(f"qbench: {line}", file=sys.stderr, flush=True))
        with sigterm_as_interrupt(), open_sides(*specs, repo=args.repo, say=say) as sides:
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
