"""`qbench cost`: where a run's time went, phase by phase (details.phases_s of every case-process), and the wall time
of a suite's full grid scaled from the run's cases, with the runners a nightly budget needs."""

from __future__ import annotations

from pathlib import Path

from qbench.cli import EXIT_OK, Command
from qbench.errors import ConfigError
from qbench.history.store import iter_records, read_run_file
from qbench.report.cost import amortized_estimate, case_costs, grid_estimate, phase_table, render_estimate


class CostCommand(Command):
    name = "cost"
    help = "show where a run's time went per phase and scale it to a suite's grid and a nightly's runner count"

    def add_arguments(self, parser):
        parser.add_argument("runs", nargs="+", metavar="RUN", help="run files or results folders (all their runs)")
        parser.add_argument("--grid-cases", type=int, default=None, metavar="N",
                            help="cases in the grid to scale to (e.g. 1878 for nightly; `qbench list` counts them)")
        parser.add_argument("--repeat", type=int, default=3, help="processes per case in the grid (default 3)")
        parser.add_argument("--budget-h", type=float, default=2.0, help="the nightly's wall-time budget (default 2)")
        parser.add_argument("--warm", action="store_true",
                            help="also estimate from processes after a case's first (artifact cache and reuse "
                                 "store filled, as on a runner whose cache persists between nightlies), and with "
                                 "each case's cold start shared by --cold-share cases")
        parser.add_argument("--table", choices=("all", "first", "warm"), default="all",
                            help="the phase table over every process (default), each case's first, or the others")
        parser.add_argument("--cpu", action="store_true",
                            help="estimate from each process's CPU seconds in the worker plus the wall seconds "
                                 "outside it: a proxy for an unloaded runner when this machine was loaded")
        parser.add_argument("--cold-share", type=float, default=2.0, metavar="K",
                            help="cases sharing one cold start in the grid (default 2: its two batch sizes share "
                                 "the converted model, size and accuracy)")

    def run(self, args) -> int:
        records = []
        for run in args.runs:
            path = Path(run)
            if path.is_dir():
                records.extend(record for _, record in iter_records(path, errors=[]))
            else:
                records.extend(read_run_file(path).records)
        costs = case_costs(records)
        if not costs:
            raise ConfigError(f"no measured case-process in {' '.join(args.runs)}")
        shown = [c for c in costs if args.table == "all" or (c["repeat"] == 0) == (args.table == "first")]
        print(phase_table(shown) if shown else f"(no {args.table} processes)")
        if args.cpu:
            costs = case_costs(records, cpu=True)
            if not costs:
                raise ConfigError("--cpu: no record carries details.phases_cpu_s")
            print("estimates from CPU seconds (unloaded-runner proxy):")
        if args.grid_cases:
            print(render_estimate(grid_estimate(costs, args.grid_cases, args.repeat, args.budget_h), "all"))
            warm = [c for c in costs if c["repeat"] > 0]
            if args.warm and warm:
                print(render_estimate(grid_estimate(warm, args.grid_cases, args.repeat, args.budget_h), "warm"))
                shared = amortized_estimate(costs, args.grid_cases, args.repeat, args.budget_h, args.cold_share)
                if shared is not None:
                    print(render_estimate(shared, f"cold start shared by {args.cold_share:g}"))
        return EXIT_OK


COMMAND = CostCommand
