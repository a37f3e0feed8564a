"""The child side of one case: read a task file, run its entry point, write a result file. Never raises to the
parent: any exception becomes a result with status "failed" (or "skipped" for NotApplicable); a crash or a kill
leaves no result file, which the launcher turns into a record of its own.

Run as `python -m qbench.runner.worker TASK RESULT` (spawn isolation) or called in a forked child of the zygote.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback

__all__ = ["execute", "measure_case", "write_json_atomic"]

TAIL_LINES = 30
# Modes whose recipe observes activations on calibration batches.
NEEDS_CALIBRATION = ("static_eager", "static_fx")


def write_json_atomic(path: str, payload: dict) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as handle:
        json.dump(payload, handle, allow_nan=False)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _resolve(entry: str):
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def _limit_resources(task: dict) -> None:
    threads = task.get("threads")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(threads)
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(threads)
    limit_gb = task.get("memory_limit_gb")
    if limit_gb:
        limit = int(limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _failure(exc: BaseException) -> dict:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    tail = "".join(traceback.format_exception(exc)).splitlines()[-TAIL_LINES:]
    oom = isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "bad_alloc" in str(exc)
    reason = f"out of memory: {type(exc).__name__}: {first}" if oom else f"{type(exc).__name__}: {first}"
    return {"status": "failed", "reason": reason, "error_tail": "\n".join(tail)}


def execute(task_path: str, result_path: str) -> int:
    started = time.time()
    try:
        with open(task_path) as handle:
            task = json.load(handle)
        _limit_resources(task)
        payload = _resolve(task["entry"])(task)
    except BaseException as exc:  # noqa: BLE001 - every failure of a case is data for its record
        from qbench.errors import NotApplicable

        payload = {"status": "skipped", "reason": str(exc)} if isinstance(exc, NotApplicable) else _failure(exc)
    payload.setdefault("worker", {})
    payload["worker"].update({"pid": os.getpid(), "entered_at": started, "left_at": time.time()})
    if "environment" not in payload:
        try:
            from qbench.runner.environment import collect_environment

            payload["environment"] = collect_environment()
        except Exception as exc:  # noqa: BLE001
            payload["environment"] = {"error": f"{type(exc).__name__}: {exc}"}
    write_json_atomic(result_path, payload)
    return 0


def verify_runner(runner: str, kernels: dict) -> None:
    """A runner profile whose ISA cap did not take effect must fail the case, not measure the native machine."""
    from qbench.runners import profile

    wanted = profile(runner)
    if wanted.cpu_capability and kernels["cpu_capability"] != wanted.cpu_capability:
        raise RuntimeError(f"runner {runner}: torch dispatches to {kernels['cpu_capability']}, "
                           f"not {wanted.cpu_capability}; the ISA cap did not take effect")
    if wanted.onednn_isa and wanted.onednn_isa not in (kernels["onednn_isa"] or ""):
        raise RuntimeError(f"runner {runner}: oneDNN runs at {kernels['onednn_isa'] or 'an unknown ISA'}, "
                           f"not {wanted.onednn_isa}; the ISA cap did not take effect")


def measure_case(task: dict) -> dict:
    """The real measurement: build the case's model under its mode and engine, then size, latency and memory."""
    import torch

    from qbench.probes.kernels import probe_kernels
    from qbench.probes.latency import measure_latency
    from qbench.probes.memory import PhasePeaks
    from qbench.probes.size import measure_size
    from qbench.records import Case, MeasureSpec
    from qbench.registry.data import calibration_batches, example_input, transform_for
    from qbench.registry.models import open_model
    from qbench.registry.modes import apply_mode

    case = Case.from_dict(task["case"])
    spec = MeasureSpec.from_dict(task["measure"])
    kernels = probe_kernels(case.engine)  # first: oneDNN names its ISA only at its first use in a process
    verify_runner(case.runner, kernels)
    torch.manual_seed(case.seed)
    peaks = PhasePeaks()
    source = open_model(case.model, case.weights, seed=case.seed)
    example = example_input(case.batch_size, source.input_size, case.seed)
    calibration, calibration_identity = [], None
    if case.mode in NEEDS_CALIBRATION:
        calibration, calibration_identity = calibration_batches(case.calibration, source.input_size,
                                                                transform_for(source))
    prepared = apply_mode(case.mode, source, engine=case.engine, calibration=calibration, example_input=example)
    model = prepared.model
    peaks.end_phase("build")
    size = measure_size(model)
    with torch.inference_mode():
        output = model(example)
        if not torch.isfinite(output).all():
            raise RuntimeError("the model's output holds NaN or Inf values")
        latency = measure_latency(lambda: model(example), spec)
    peaks.end_phase("run")
    return {
        "status": "ok",
        "metrics": {"latency": latency, "size": size, "memory": peaks.as_metric()},
        "details": {
            "qconfig": prepared.qconfig,
            "phases_s": prepared.phases,
            "notes": prepared.notes,
            "calibration": calibration_identity,
            "weights": source.weights_info(),
            "kernels": kernels,
            "input_shape": list(example.shape),
            "output_shape": list(output.shape),
        },
    }


def main(argv: list[str] | None = None) -> int:
    task_path, result_path = (argv or sys.argv[1:])[:2]
    return execute(task_path, result_path)


if __name__ == "__main__":
    raise SystemExit(main())
