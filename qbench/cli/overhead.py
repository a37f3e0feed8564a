"""`qbench overhead`: what the harness costs. Per-case worker start-up (fork from the pre-imported zygote vs a
fresh interpreter), and qbench's latency median divided by a bare inference loop's on the same model, same run."""

from __future__ import annotations

from qbench.cli import EXIT_INFRA, EXIT_OK, Command
from qbench.errors import ConfigError
from qbench.records import MODES, Case, MeasureSpec
from qbench.launch.session import Session
from qbench.stats.summary import summarize
from qbench.suite.load import parse_suite


def _ms(summary) -> str:
    return f"median {summary.median * 1e3:.2f} ms, IQR {summary.iqr * 1e3:.2f} ms, n={summary.n}"


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
        spec = parse_suite({"suite": {"name": "overhead"}, "matrix": [{"models": [args.model], "modes": ["fp32"]}]})
        for isolation in ("fork", "spawn"):
            with Session(spec, isolation=isolation) as session:
                walls = [session.run_task({"entry": "qbench.runner.overhead:noop"}, args.threads, 600).wall_s
                         for _ in range(args.tasks + 1)][1:]
                start = session.pool(args.threads).preload_s
            extra = f"; pool start-up once {start:.2f} s" if start else ""
            print(f"empty case, {isolation:5} isolation: {_ms(summarize(walls))}{extra}")
        case = Case(model=args.model, mode=args.mode, engine=args.engine, batch_size=1, threads=args.threads)
        measure = MeasureSpec(min_time_s=1.0, min_rounds=20)
        with Session(spec) as session:
            outcome = session.run_task({"entry": "qbench.runner.overhead:sampler_vs_bare_loop",
                                        "case": case.to_dict(), "measure": measure.to_dict(),
                                        "alternations": args.alternations, "bare_rounds": 20}, args.threads, 1200)
        result = outcome.result or {}
        if result.get("status") != "ok":
            print(f"qbench: error: the comparison failed: {result.get('reason') or outcome.exit_code}")
            return EXIT_INFRA
        harness, bare = summarize(result["metrics"]["harness"]), summarize(result["metrics"]["bare"])
        print(f"{case.case_id}: qbench sampler {_ms(harness)}")
        print(f"{case.case_id}: bare loop      {_ms(bare)}")
        ratios = summarize(result["metrics"]["block_ratios"])
        print(f"harness overhead ratio (qbench median / bare median): {harness.median / bare.median:.4f} overall; "
              f"per ABBA block median {ratios.median:.4f}, IQR {ratios.q1:.4f}-{ratios.q3:.4f}, n={ratios.n}")
        return EXIT_OK


COMMAND = OverheadCommand
