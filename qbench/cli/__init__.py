"""The `qbench` command: one class per subcommand, each in its own module. Only this package prints and exits.

Exit codes: 0 ok; 1 a regression was found (commands that compare); 2 bad input (suite file, names, arguments);
3 infrastructure failure (unreadable results, a worker pool that cannot start, failed cases with --fail-on-error);
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from qbench.errors import ConfigError, InfraError, StoreError

__all__ = ["main", "Command", "EXIT_OK", "EXIT_REGRESSION", "EXIT_BAD_INPUT", "EXIT_INFRA"]

EXIT_OK, EXIT_REGRESSION, EXIT_BAD_INPUT, EXIT_INFRA, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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


def _commands() -> list[Command]:
    """Every module of this package that defines COMMAND is a subcommand (asv's pattern: one class per command)."""
    commands = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "COMMAND"):
            commands.append(module.COMMAND())
    return sorted(commands, key=lambda c: c.name)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="qbench", description="Benchmark PyTorch quantization on CPUs and track regressions.",
                     epilog="exit codes: 0 ok, 1 regression, 2 bad input, 3 infrastructure failure")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for command in _commands():
        command_parser = sub.add_parser(command.name, help=command.help, description=command.help)
        command.add_arguments(command_parser)
        command_parser.set_defaults(handler=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler.run(args)
    except ConfigError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (StoreError, InfraError) as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return EXIT_INFRA
    except KeyboardInterrupt:
        print("qbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
