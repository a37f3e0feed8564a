"""`qbench claims`: PyTorch's four INT8 claims (4x smaller, 2-4x less bandwidth, 2-4x faster, about the same
accuracy) judged per model × mode × engine × runner of a run, against each case's fp32 parent. Exit 0; 2 on bad
input or no data; 3 when a results file could not be read (the table of the others is still printed)."""

from __future__ import annotations

import sys

from qbench.compare.claims import FORMATS, claim_rows
from qbench.cli import EXIT_INFRA, EXIT_OK, Command
from qbench.errors import ConfigError
from qbench.history.sides import ResultsFolder, resolve_side
from qbench.report.claims import render_claims

__all__ = ["ClaimsCommand", "COMMAND"]


class ClaimsCommand(Command):
    name = "claims"
    help = "judge PyTorch's INT8 claims (size, bandwidth, speed, accuracy) per case of a run"

    def add_arguments(self, parser):
        parser.add_argument("--results", default="results", help="history folder (default: results)")
        parser.add_argument("--run", default="latest", metavar="SIDE",
                            help="latest (default), latest~N, a run id, a commit, or a run file or folder")
        parser.add_argument("--fp32-run", default=None, metavar="SIDE",
                            help="take fp32 parents from this side instead of each int8 case's own run")
        parser.add_argument("--machine", default=None, metavar="ID", help="only runs of this machine id")
        parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")

    def run(self, args) -> int:
        history = ResultsFolder.of_machine(args.results, args.machine)
        side = resolve_side(args.run, history)
        parents = None if args.fp32_run is None else resolve_side(args.fp32_run, history).records
        rows = claim_rows(side.records, parents)
        if not rows and history.errors:  # its int8 cases may be among the records left out: name them
            for error in history.errors:
                print(f"qbench: error: {error}", file=sys.stderr)
            print(f"qbench: error: {side.label} has no readable int8 cases to judge", file=sys.stderr)
            return EXIT_INFRA
        if not rows:
            raise ConfigError(f"{side.label} has no int8 cases to judge")
        if args.format != "json":
            print(f"claims of {side.label}\n")
        print(render_claims(rows, args.format))
        for error in history.errors:
            print(f"qbench: error: {error}", file=sys.stderr)
        return EXIT_INFRA if history.errors else EXIT_OK


COMMAND = ClaimsCommand
