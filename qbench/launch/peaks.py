"""The parent side of `qbench peaks`: measure this machine's bandwidth and compute peaks in a fresh worker."""

from __future__ import annotations

from qbench.errors import InfraError
from qbench.launch.session import PEAKS_ENTRY, Session
from qbench.suite.load import parse_suite

__all__ = ["DEFAULT_REPEATS", "DEFAULT_GEMM_N", "PEAKS_TIMEOUT_S", "measure_machine_peaks"]

PEAKS_TIMEOUT_S = 900.0
DEFAULT_REPEATS, DEFAULT_GEMM_N = 5, 2048
# Session wants a suite; the peaks task names no model, so any valid one does.
_SPEC = {"suite": {"name": "peaks"}, "matrix": [{"models": ["resnet18"], "modes": ["fp32"]}]}


def measure_machine_peaks(machine_id: str, runner: str, threads: int, *, repeats: int = DEFAULT_REPEATS,
                          gemm_n: int = DEFAULT_GEMM_N, array_mb: int | None = None) -> dict:
    """The peaks dict the worker measured (spawned, so nothing else shares its process); InfraError if it failed."""
    task = {"entry": PEAKS_ENTRY, "runner": runner, "machine_id": machine_id, "repeats": repeats,
            "gemm_n": gemm_n, "array_bytes": array_mb * 2**20 if array_mb else None}
    with Session(parse_suite(_SPEC), isolation="spawn") as session:
        outcome = session.run_task(task, threads, PEAKS_TIMEOUT_S, runner=runner)
    result = outcome.result or {}
    if result.get("status") != "ok":
        detail = result.get("reason") or outcome.pool_error or f"worker exit code {outcome.exit_code}"
        raise InfraError(f"the peaks probe failed: {detail}")
    return result["peaks"]
