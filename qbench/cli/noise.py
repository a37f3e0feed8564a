"""`qbench noise`: run a suite's cases N times in separate processes (A/A repeats, interleaved rounds, the same
worker path as `qbench run`), keep the run in history, and write per-case thresholds to
results/<machine_id>/noise.json for compare and history."""

from __future__ import annotations

import sys

from qbench.cli import Command
from qbench.cli.common import add_fail_on_error, add_results_argument, add_suite_arguments, exit_for_cases
from qbench.errors import ConfigError
from qbench.history.noise import estimate_thresholds, noise_document, write_noise
from qbench.launch.lifecycle import open_run
from qbench.launch.machine import collect_machine
from qbench.plan.plan import plan
from qbench.report.tables import noise_table

__all__ = ["NoiseCommand", "COMMAND"]

DEFAULT_REPEATS = 5


class NoiseCommand(Command):
    name = "noise"
    help = "measure A/A noise by repeating a suite's cases and write per-case thresholds (noise.json)"

    def add_arguments(self, parser):
        add_suite_arguments(parser)
        parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, metavar="N",
                            help=f"processes per case, at least 2 (default: {DEFAULT_REPEATS})")
        add_results_argument(parser)
        parser.add_argument("--machine", default=None,
                            help="the history folder's machine name, as given to qbench run --machine")
        parser.add_argument("--no-progress", action="store_true", help="no progress output while running")
        add_fail_on_error(parser)

    def run(self, args) -> int:
        if args.repeats < 2:
            raise ConfigError(f"--repeats must be at least 2 to measure noise, got {args.repeats}")
        machine = collect_machine(args.machine)
        spec, session, catalog, planned = plan(args, machine)
        total = sum(1 if p.skip_reason else args.repeats for p in planned)

        def progress(record):
            if not args.no_progress:
                print(f"[{len(run.records)}/{total}] {record.case_id} {record.status}", file=sys.stderr, flush=True)

        with session, open_run(spec.identity(), machine, args.results, planned_cases=len(planned),
                               repeat=args.repeats, filter=args.filter, isolation=session.isolation) as run:
            session.run(planned, catalog=catalog, writer=run, context=run.context, on_record=progress,
                        repeat=args.repeats)
        thresholds = estimate_thresholds(run.records)
        path = write_noise(args.results, noise_document(machine["machine_id"], spec.identity(), args.repeats,
                                                        thresholds))
        print(noise_table(run.records, thresholds))
        print(f"noise     {path} ({len(thresholds)} cases, {args.repeats} repeats)")
        print(f"history   {run.path} ({len(run.records)} records)")
        return exit_for_cases(run.records, args.fail_on_error)


COMMAND = NoiseCommand
