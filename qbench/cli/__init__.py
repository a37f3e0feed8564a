"""The `qbench` command: one class per subcommand, each in its own module. Only this package prints and exits.

Exit codes: 0 ok; 1 a regression was found (commands that compare); 2 bad input (suite file, names, arguments);
3 infrastructure failure (unreadable results, a worker pool that cannot start, failed cases with --fail-on-error);
130 interrupted; 141 standard output closed before the command finished (`qbench compare | head`), as a tool
killed by SIGPIPE reports it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from qbench.errors import ConfigError, QBenchError

__all__ = ["main", "Command", "COMMANDS", "EXIT_OK", "EXIT_REGRESSION", "EXIT_BAD_INPUT", "EXIT_INFRA"]

EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT, EXIT_INFRA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_BROKEN_PIPE = 141


class Command:
    name: str = ""
    help: str = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        pass

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        self.print_usage(sys.stderr)
        print(f"qbench: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


# Every subcommand, in the order of the workflow (asv's command_order), with its one-line help. A command's module is
# imported only when that command runs, so `qbench --help` and the parent-side commands load only what they use.
# tests/test_layout.py checks that each module's Command.help is the text given here.
COMMANDS = {
    "machine": "print this machine's fingerprint",
    "list": "list a suite's cases and skip reasons without measuring",
    "run": "measure a suite and append the run to the history in --results",
    "report": "write a markdown and HTML report of a run, with plots and history's regressions",
    "publish": "export qbench history to asv's format and publish asv's dashboard so that it works without internet",
    "export": "export runs as PyTorch OSS benchmark database records (schema v3) for HUD's dashboards",
    "compare": "compare two runs, commits or results folders case by case and metric by metric; exit 1 on regression",
    "history": "find steps in history and list regressions (exit 1 when one starts in the latest run)",
    "claims": "judge PyTorch's INT8 claims (size, bandwidth, speed, accuracy) per case of a run",
    "compact": "compact finished runs into Parquet (results/<machine>/store/v2/month=…); readers read both kinds",
    "merge": "merge results folders (e.g. CI shards' artifacts) into one history, never overwriting",
    "noise": "measure A/A noise by repeating a suite's cases and write per-case thresholds (noise.json)",
    "ab": "compare two sides (git refs, Python environments) in interleaved pairs of fresh processes",
    "bisect": ("find the first bad commit or environment between a good and a bad side (crash, accuracy drop or "
               "slowdown), as a driver or as a git bisect run step"),
    "microbench": "benchmark int8 kernels (quantize, dequantize, quantized conv2d and linear) with pytest-benchmark",
    "peaks": "measure this machine's copy/triad bandwidth and fp32/int8 GEMM peaks (the roofline's ceilings)",
    "sensitivity": "rank a model's layers by how much quantizing them costs (per-layer SQNR, one-at-a-time pass)",
    "data": "fetch and inspect the named labelled image sets suites use (source = \"data:<name>/<split>\")",
    "cache": "list, inspect or clear the cache of quantized artifacts",
    "overhead": "measure qbench's own per-case overhead and its latency sampler against a bare loop",
    "cost": "show where a run's time went per phase and scale it to a suite's grid and a nightly's runner count",
}


def load_command(name: str) -> Command:
    """The Command of subcommand `name`, from its module qbench.cli.<name>."""
    return importlib.import_module(f"{__name__}.{name}").COMMAND()


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named on the command line: the first argument that is not an option."""
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    return first if first in COMMANDS else None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of the one command `argv` names (all of them when argv is None)."""
    parser = _Parser(prog="qbench", description="Benchmark PyTorch quantization on CPUs and track regressions.",
                     epilog="exit codes: 0 ok, 1 regression, 2 bad input, 3 infrastructure failure, 130 interrupted, 141 output closed early")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    wanted = COMMANDS if argv is None else [_chosen(argv)]
    for name, help_text in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name in wanted:
            command = load_command(name)
            command.add_arguments(command_parser)
            command_parser.set_defaults(handler=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else [*argv]  # not list(): the `list` command module shadows it here
    args = build_parser(argv).parse_args(argv)
    try:
        return args.handler.run(args)
    except ConfigError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except QBenchError as exc:  # StoreError, InfraError and any other deliberate failure
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_INFRA
    except KeyboardInterrupt:
        print("qbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head`): nothing more can be shown, and Python must not report the failed flush of
        # stdout at exit either (https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
