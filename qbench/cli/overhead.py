"""`qbench overhead`: what the harness costs. Per-case worker start-up (fork from the pre-imported zygote vs a
fresh interpreter), and qbench's latency median divided by a bare inference loop's on the same model, same run."""

from __future__ import annotations

from qbench.cli import EXIT_OK, Command
from qbench.errors import ConfigError
from qbench.launch.overhead import measure_overhead
from qbench.records import MODES, Case
from qbench.report.tables import overhead_table


class OverheadCommand(Command):
    name = "overhead"
    help = "measure qbench's own per-case overhead and its latency sampler against a bare loop"

    def add_arguments(self, parser):
        parser.add_argument("--model", default="resnet18")
        parser.add_argument("--mode", default="fp32", choices=MODES)
        parser.add_argument("--engine", default=None)
        parser.add_argument("--threads", type=int, default=1)
        parser.add_argument("--tasks", type=int, default=10, help="empty cases per isolation kind")
        parser.add_argument("--alternations", type=int, default=5)

    def run(self, args) -> int:
        if (args.mode == "fp32") != (args.engine is None):
            raise ConfigError("--engine is required for quantized modes and not allowed with fp32")
        case = Case(model=args.model, mode=args.mode, engine=args.engine, batch_size=1, threads=args.threads)
        print(overhead_table(measure_overhead(case, tasks=args.tasks, alternations=args.alternations)))
        return EXIT_OK


COMMAND = OverheadCommand
