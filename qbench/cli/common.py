"""Arguments shared by several commands, and the one exit-code rule for commands that measure."""

from __future__ import annotations

import argparse

from qbench.cli import EXIT_INFRA, EXIT_OK
from qbench.suite.profiles import RUNNERS

__all__ = ["add_suite_arguments", "add_results_argument", "add_fail_on_error", "exit_for_cases"]


def add_suite_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", required=True, help="suite name (suites/<name>.toml) or path to a .toml file")
    parser.add_argument("--filter", action="append", default=[], metavar="GLOB",
                        help="keep cases whose id (model/mode/engine/bN/tN/weights) matches; repeatable")
    parser.add_argument("--isolation", choices=("fork", "spawn"), default=None,
                        help="fork from a pre-imported worker (default) or spawn a fresh interpreter per case")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="run only shard I of N, balanced by expected cost from history in --results")
    parser.add_argument("--runner", action="append", default=[], metavar="PROFILE",
                        help=f"ISA profile(s) to run every case under, instead of the suite's "
                             f"({', '.join(RUNNERS)}); repeatable")


def add_results_argument(parser: argparse.ArgumentParser, help: str = "history folder (default: results)") -> None:
    parser.add_argument("--results", default="results", help=help)


def add_fail_on_error(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fail-on-error", action="store_true",
                        help="exit 3 when any case failed or timed out (they are recorded either way)")


def exit_for_cases(records, fail_on_error: bool) -> int:
    """The rule of every command that measures (run, noise, ab, microbench, sensitivity): a failed or timed-out case
    is recorded and named on stderr, and makes the command exit 3 only with --fail-on-error."""
    broken = [r for r in records if r.status in ("failed", "timeout")]
    return EXIT_INFRA if fail_on_error and broken else EXIT_OK


def add_paired_arguments(parser: argparse.ArgumentParser, default_threshold: str) -> None:
    """The measuring arguments of `qbench ab` and `qbench bisect` (both use qbench.launch.ab's paired loop)."""
    from qbench.launch.ab import DEFAULT_ALPHA, DEFAULT_SECONDS, STATISTICS

    parser.add_argument("--suite", required=True, help="suite name (suites/<name>.toml) or path to a .toml file")
    parser.add_argument("--filter", action="append", default=[], metavar="GLOB",
                        help="keep cases whose id (model/mode/engine/bN/tN/weights) matches; repeatable")
    parser.add_argument("--repo", default=None, metavar="PATH",
                        help="git refs name commits of the repository holding PATH (a folder of your models' code, "
                             "which goes first on the workers' PYTHONPATH; this qbench measures them); default: "
                             "qbench's own repository")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--pairs", type=int, default=None, metavar="N", help="measure N pairs per case")
    amount.add_argument("--seconds-per-pair", type=float, default=None, metavar="T",
                        help=f"seconds of measuring for each case's A/B comparison (both sides, after one "
                             f"warm-up pair); pairs are added until they are spent (default {DEFAULT_SECONDS:g})")
    parser.add_argument("--threshold", default=default_threshold, metavar="latency:N%",
                        help=f"a slowdown is B significantly slower by more than this (default "
                             f"{default_threshold.replace('%', '%%')})")
    parser.add_argument("--statistic", choices=STATISTICS, default="median",
                        help="what each process contributes: the median of its latency samples (default), "
                             "its fastest sample, or the median of its CPU time per inference (cpu: steadier on a "
                             "busy machine, where a descheduled process waits without spending CPU)")
    parser.add_argument("--sample-seconds", type=float, default=None, metavar="S",
                        help="latency sampling time per process (default: the suite's [measure] min_time_s); "
                             "shorter gives more pairs")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help=f"false-alarm probability of a verdict per case (default {DEFAULT_ALPHA:g})")
    parser.add_argument("--isolation", choices=("fork", "spawn"), default=None,
                        help="fork from each side's pre-imported worker (default) or spawn per process")
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")
