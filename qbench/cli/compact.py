"""`qbench compact`: move finished runs from JSON lines into the columnar store (qbench.history.columnar), and
rewrite runs of older store versions (v1) in the current one."""

from __future__ import annotations

import sys

from qbench.cli import EXIT_INFRA, EXIT_OK, Command
from qbench.history.columnar import compact

__all__ = ["CompactCommand", "COMMAND"]


class CompactCommand(Command):
    name = "compact"
    help = "compact finished runs into Parquet (results/<machine>/store/v2/month=…); readers read both kinds"

    def add_arguments(self, parser):
        parser.add_argument("--results", default="results", help="history folder (default: results)")

    def run(self, args) -> int:
        written, kept = compact(args.results)
        print(f"compacted {len(written)} run{'' if len(written) == 1 else 's'} into {args.results}")
        for line in kept:
            print(f"qbench: error: {line}", file=sys.stderr)
        return EXIT_INFRA if any("not compacted: the run has no footer" not in k for k in kept) else EXIT_OK


COMMAND = CompactCommand
