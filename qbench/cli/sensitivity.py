"""`qbench sensitivity MODEL --engine E`: per-layer SQNR and a one-at-a-time pass (only this layer int8, all but this
layer int8) in an isolated worker, stored as a run of suite "sensitivity"; prints the most sensitive layers.
Exit 0; 2 on bad input; 3 when the worker failed or timed out (the failed record is still stored)."""

from __future__ import annotations

from qbench.cli import EXIT_INFRA, EXIT_OK, Command
from qbench.errors import ConfigError
from qbench.records import ENGINES, CalibrationSpec, Case
from qbench.runner.sensitivity import EVAL_BATCH, METHODS, SUPPORTED_MODES, run_sensitivity

__all__ = ["SensitivityCommand", "COMMAND", "render_top"]


def _db(value) -> str:
    return "exact" if value is None else f"{value:.1f}"


def render_top(figures: dict, top: int) -> str:
    """The `top` most sensitive layers of a metrics.sensitivity dict as a table."""
    from tabulate import tabulate

    by_name = {entry["layer"]: entry for entry in figures["per_layer"]}
    rows = []
    for name in figures["ranking"][:top]:
        entry = by_name[name]
        only, all_but = entry["only_this_quantized"], entry["all_but_this"]
        rows.append([entry["rank"], name, entry["type"], _db(entry["sqnr_db"]), f"{only['agreement']:.3f}",
                     _db(only["sqnr_db"]), f"{all_but['agreement']:.3f}", _db(all_but["sqnr_db"])])
    headers = ["rank", "layer", "type", "act SQNR dB", "only-this agree", "only-this SQNR dB",
               "all-but agree", "all-but SQNR dB"]
    return tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True)


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
        parser.add_argument("--results", default="results", help="history folder (default: results)")
        parser.add_argument("--top", type=int, default=10, metavar="K", help="layers to print (default 10)")
        parser.add_argument("--timeout", type=float, default=1800.0, help="worker timeout in seconds")

    def run(self, args) -> int:
        if args.top < 1 or args.threads < 1:
            raise ConfigError("--top and --threads must be at least 1")
        case = Case(model=args.model, mode=args.mode, engine=args.engine, batch_size=EVAL_BATCH,
                    threads=args.threads, weights=args.weights, calibration=CalibrationSpec(), seed=args.seed)
        record, path = run_sensitivity(case, images=args.images, layers=args.layers, method=args.method,
                                       results=args.results, timeout_s=args.timeout)
        if record.status != "ok":
            print(f"qbench: error: sensitivity of {args.model} on {args.engine} {record.status}: {record.reason}")
            print(f"history   {path}")
            return EXIT_INFRA
        figures = record.metrics["sensitivity"]
        weights = record.details.get("weights", {}).get("kind")
        print(f"model {args.model}, {args.mode} on {args.engine}, weights {weights}"
              f"{' (RANDOM-INIT: only SQNR is meaningful, agreement is not)' if weights == 'random' else ''}; "
              f"{figures['images']['count']} synthetic images (seed {figures['images']['seed']}); "
              f"method {figures['method']}")
        print(f"fully quantized: agreement {figures['full']['agreement']:.3f}, logits SQNR "
              f"{_db(figures['full']['sqnr_db'])} dB; {len(figures['per_layer'])} of {figures['layers_total']} "
              f"layers analysed, most sensitive first (ranked by {figures['ranked_by']}):\n")
        print(render_top(figures, args.top))
        print(f"\ntook {record.duration_s:.1f} s; history   {path}")
        return EXIT_OK


COMMAND = SensitivityCommand
