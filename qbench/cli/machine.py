"""`qbench machine`: this machine's fingerprint, the identity its history is filed under."""

from __future__ import annotations

import json

from qbench.cli import EXIT_OK, Command
from qbench.launch.machine import collect_machine, describe


class MachineCommand(Command):
    name = "machine"
    help = "print this machine's fingerprint"

    def add_arguments(self, parser):
        parser.add_argument("--machine", default=None, help="name to file history under instead of the derived id")
        parser.add_argument("--json", action="store_true", help="print the fingerprint as JSON")

    def run(self, args) -> int:
        machine = collect_machine(args.machine)
        print(json.dumps(machine, indent=2, sort_keys=True) if args.json else describe(machine))
        return EXIT_OK


COMMAND = MachineCommand
