"""`qbench list`: the cases of a suite and why any would be skipped, without measuring anything."""

from __future__ import annotations

import json

from qbench.cli import EXIT_OK, Command
from qbench.cli.common import add_suite_arguments
from qbench.plan.plan import plan


class ListCommand(Command):
    name = "list"
    help = "list a suite's cases and skip reasons without measuring"

    def add_arguments(self, parser):
        add_suite_arguments(parser)
        parser.add_argument("--json", action="store_true", help="one JSON object per case")

    def run(self, args) -> int:
        spec, session, catalog, planned = plan(args)
        session.close()
        runnable = sum(1 for p in planned if not p.skip_reason)
        for item in planned:
            if args.json:
                print(json.dumps({"case_id": item.case.case_id, "case_version": item.case.case_version,
                                  "case": item.case.to_dict(), "skip_reason": item.skip_reason}))
            else:
                print(f"{item.case.case_id:58} {'skip: ' + item.skip_reason if item.skip_reason else 'run'}")
        if not args.json:
            engines = ", ".join(f"{e}{'' if r is None else ' (unavailable)'}" for e, r in catalog.engines.items())
            print(f"\nsuite {spec.name}: {len(planned)} cases, {runnable} to run, {len(planned) - runnable} skipped; "
                  f"engines here: {engines}")
        return EXIT_OK


COMMAND = ListCommand
