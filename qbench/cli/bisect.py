"""`qbench bisect`: find the first bad commit or environment between a good and a bad side, telling crash, accuracy
drop and slowdown apart with `qbench ab`'s paired statistics (qbench.launch.bisect), as a driver that runs the whole
search or as one `git bisect run` step (--step)."""

from __future__ import annotations

import argparse
import json
import sys

from qbench.cli import EXIT_OK, EXIT_REGRESSION, Command
from qbench.cli.common import add_paired_arguments
from qbench.errors import ConfigError, QBenchError
from qbench.launch.ab import ABSettings, latency_threshold, with_sample_seconds
from qbench.launch.bisect import DEFAULT_THRESHOLD, KINDS, STEP_EXIT, Step, bisect, bisect_step
from qbench.launch.lifecycle import sigterm_as_interrupt
from qbench.report.ab import render_bisect, render_step
from qbench.suite.load import load_suite

__all__ = ["BisectCommand", "COMMAND"]

EPILOG = """
Driver (default): judges the bad side, then binary-searches the sides between good and bad (git: the first-parent
commits of --repo from good to bad; env: the versions `pip index versions` offers between the two pins; else
--between), each against the good side in interleaved pairs of fresh processes. Exit 1 when a first bad side is
found (or narrowed to a few, when skipped candidates hide it), 0 when the bad side is not bad, 2 bad input,
3 infrastructure failure, 130 interrupted.

Step (--step), for `git bisect run`: judges --candidate (default HEAD, the commit git bisect checked out) against
--good once, and exits as git bisect run expects: 0 good, 1 slowdown, 4 accuracy drop, 5 crash (bad), 125 skip
(cannot be judged), 128 abort (bad input, the good side failing, an infrastructure failure), 130 interrupted:
    git bisect start BAD GOOD && git bisect run qbench bisect --step --good GOOD --repo . --suite S --pairs 8
"""


def _say(args):
    return None if args.no_progress else (lambda line: print(f"qbench: {line}", file=sys.stderr, flush=True))


def _on_step(step: Step, number: int) -> None:
    name = f"{step.commit[:12]} {step.subject or ''}".strip() if step.commit else step.side
    print(f"[step {number}] {name}: {step.kind}: {step.reason}"[:300], file=sys.stderr, flush=True)


class BisectCommand(Command):
    name = "bisect"
    help = ("find the first bad commit or environment between a good and a bad side (crash, accuracy drop or "
            "slowdown), as a driver or as a git bisect run step")

    def add_arguments(self, parser):
        parser.epilog = EPILOG
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.add_argument("--good", required=True, metavar="SIDE",
                            help="the good side: a git ref (of --repo), env:REQUIREMENTS, python:PATH or current")
        parser.add_argument("--bad", default=None, metavar="SIDE", help="the bad side (driver), same forms")
        parser.add_argument("--between", nargs="+", default=None, metavar="SIDE",
                            help="the sides between good and bad, oldest first (for sides that are neither two git "
                                 "refs nor two env: pins of one package)")
        parser.add_argument("--step", action="store_true",
                            help="judge one candidate and exit with git bisect run's codes (see below)")
        parser.add_argument("--candidate", default="HEAD", metavar="SIDE",
                            help="with --step: the side to judge (default HEAD of --repo)")
        parser.add_argument("--kind", action="append", choices=KINDS, default=None,
                            help="what counts as bad (repeatable; default all: crash, accuracy, slowdown); a crash "
                                 "that is not hunted makes the candidate a skip")
        parser.add_argument("--min-sqnr", type=float, default=None, metavar="DB",
                            help="an output whose SQNR against the good side's is below this is an accuracy drop "
                                 "(default 40 dB; another top-1 class always is)")
        add_paired_arguments(parser, f"latency:{DEFAULT_THRESHOLD:.0%}")
        parser.add_argument("--format", choices=("table", "json"), default="table")

    def _common(self, args) -> dict:
        settings = ABSettings(pairs=args.pairs, seconds=args.seconds_per_pair, alpha=args.alpha,
                              statistic=args.statistic)
        options = dict(threshold=latency_threshold(args.threshold), kinds=tuple(args.kind or KINDS),
                       repo=args.repo, filters=args.filter, isolation=args.isolation, say=_say(args))
        if args.min_sqnr is not None:
            options["min_sqnr_db"] = args.min_sqnr
        return {"spec": with_sample_seconds(load_suite(args.suite), args.sample_seconds), "settings": settings,
                **options}

    def _step(self, args) -> int:
        try:
            with sigterm_as_interrupt():
                step = bisect_step(good=args.good, candidate=args.candidate, **self._common(args))
        except QBenchError as exc:  # bad input and infrastructure failures abort git bisect run
            print(f"qbench: error: {exc}", file=sys.stderr)
            return STEP_EXIT["abort"]
        print(json.dumps(step.to_dict(), indent=2) if args.format == "json" else render_step(step))
        return STEP_EXIT[step.kind]

    def run(self, args) -> int:
        if args.step:
            return self._step(args)
        if args.bad is None:
            raise ConfigError("give --bad SIDE (or --step to judge one candidate for git bisect run)")
        with sigterm_as_interrupt():
            result = bisect(good=args.good, bad=args.bad, between=args.between,
                            on_step=None if args.no_progress else _on_step, **self._common(args))
        print(json.dumps(result.to_dict(), indent=2) if args.format == "json" else render_bisect(result))
        return EXIT_REGRESSION if (result.first_bad or result.unresolved) else EXIT_OK


COMMAND = BisectCommand
