"""`qbench sensitivity MODEL --engine E`: per-layer SQNR and a one-at-a-time pass (only this layer int8, all but this
layer int8) in an isolated worker, stored as a run of suite "sensitivity"; prints the most sensitive layers.
Exit codes as for `qbench run`: 0; 2 on bad input; 3 when the worker failed or timed out and --fail-on-error is
given (the failed record is stored either way, and its reason goes to stderr)."""

from __future__ import annotations

import sys

from qbench.cli import EXIT_OK, Command
from qbench.cli.common import add_fail_on_error, add_results_argument, exit_for_cases
from qbench.errors import ConfigError
from qbench.records import ENGINES, CalibrationSpec, Case
from qbench.launch.sensitivity import EVAL_BATCH, METHODS, SUPPORTED_MODES, run_sensitivity
from qbench.report.tables import db, sensitivity_top

__all__ = ["SensitivityCommand", "COMMAND"]


class SensitivityCommand(Command):
    name = "sensitivity"
    help = "rank a model's layers by how much quantizing them costs (per-layer SQNR, one-at-a-time pass)"

    def add_arguments(self, parser):
        parser.add_argument("model", help="torchvision model name or package.module:factory")
        parser.add_argument("--engine", required=True, choices=ENGINES, help="quantized engine")
        parser.add_argument("--mode", default="static_fx", choices=SUPPORTED_MODES, help="quantization mode")
        parser.add_argument("--weights", default="random", help="random (default), pretrained or checkpoint:PATH")
        parser.add_argument("--images", type=int, default=16,
                            help="seeded synthetic images to evaluate on (default 16)")
        parser.add_argument("--layers", default=None, metavar="GLOB",
                            help="only the quantized layers whose name matches, e.g. 'layer4.*'")
        parser.add_argument("--method", default="swap", choices=METHODS,
                            help="swap: one calibration, layers swapped (default); mapping: PyTorch's "
                                 "QConfigMapping recipe per layer (exact, much slower)")
        parser.add_argument("--threads", type=int, default=2, help="torch threads in the worker (default 2)")
        parser.add_argument("--seed", type=int, default=0, help="seed of weights and images (default 0)")
        add_results_argument(parser)
        parser.add_argument("--top", type=int, default=10, metavar="K", help="layers to print (default 10)")
        parser.add_argument("--timeout", type=float, default=1800.0, help="worker timeout in seconds")
        add_fail_on_error(parser)

    def run(self, args) -> int:
        if args.top < 1 or args.threads < 1:
            raise ConfigError("--top and --threads must be at least 1")
        case = Case(model=args.model, mode=args.mode, engine=args.engine, batch_size=EVAL_BATCH,
                    threads=args.threads, weights=args.weights, calibration=CalibrationSpec(), seed=args.seed)
        record, path = run_sensitivity(case, images=args.images, layers=args.layers, method=args.method,
                                       results=args.results, timeout_s=args.timeout)
        if record.status != "ok":
            print(f"qbench: error: sensitivity of {args.model} on {args.engine} {record.status}: {record.reason}",
                  file=sys.stderr)
            print(f"history   {path}")
            return exit_for_cases([record], args.fail_on_error)
        figures = record.metrics["sensitivity"]
        weights = record.details.get("weights", {}).get("kind")
        print(f"model {args.model}, {args.mode} on {args.engine}, weights {weights}"
              f"{' (RANDOM-INIT: only SQNR is meaningful, agreement is not)' if weights == 'random' else ''}; "
              f"{figures['images']['count']} synthetic images (seed {figures['images']['seed']}); "
              f"method {figures['method']}")
        print(f"fully quantized: agreement {figures['full']['agreement']:.3f}, logits SQNR "
              f"{db(figures['full']['sqnr_db'])} dB; {len(figures['per_layer'])} of {figures['layers_total']} "
              f"layers analysed, most sensitive first (ranked by {figures['ranked_by']}):\n")
        print(sensitivity_top(figures, args.top))
        print(f"\ntook {record.duration_s:.1f} s; history   {path}")
        return EXIT_OK


COMMAND = SensitivityCommand
