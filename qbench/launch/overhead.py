"""What the harness costs: per-case worker start-up (fork from the pre-imported zygote vs a fresh interpreter), and
qbench's latency median against a bare inference loop on the same model in the same worker (ABBA blocks)."""

from __future__ import annotations

from dataclasses import dataclass

from qbench.errors import InfraError
from qbench.launch.session import Session
from qbench.records import Case, MeasureSpec
from qbench.suite.load import parse_suite

__all__ = ["Overhead", "measure_overhead"]


@dataclass(frozen=True)
class Overhead:
    empty_case_s: dict[str, list[float]]   # isolation → wall seconds of each empty case
    preload_s: dict[str, float | None]     # isolation → one-off pool start-up
    case: Case
    harness: list[float]                   # the sampler's latency samples
    bare: list[float]                      # the bare loop's
    block_ratios: list[float]              # per ABBA block, harness median / bare median


def measure_overhead(case: Case, *, tasks: int = 10, alternations: int = 5) -> Overhead:
    spec = parse_suite({"suite": {"name": "overhead"}, "matrix": [{"models": [case.model], "modes": ["fp32"]}]})
    walls, preload = {}, {}
    for isolation in ("fork", "spawn"):
        with Session(spec, isolation=isolation) as session:
            walls[isolation] = [session.run_task({"entry": "qbench.runner.overhead:noop"}, case.threads, 600).wall_s
                                for _ in range(tasks + 1)][1:]
            preload[isolation] = session.pool(case.threads).preload_s
    measure = MeasureSpec(min_time_s=1.0, min_rounds=20)
    with Session(spec) as session:
        outcome = session.run_task({"entry": "qbench.runner.overhead:sampler_vs_bare_loop", "case": case.to_dict(),
                                    "measure": measure.to_dict(), "alternations": alternations, "bare_rounds": 20},
                                   case.threads, 1200)
    result = outcome.result or {}
    if result.get("status") != "ok":
        raise InfraError(f"the comparison failed: {result.get('reason') or f'worker exit code {outcome.exit_code}'}")
    metrics = result["metrics"]
    return Overhead(walls, preload, case, metrics["harness"], metrics["bare"], metrics["block_ratios"])
