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
from pathlib import Path

from qbench.history.files import write_json_atomic

__all__ = ["execute", "measure_case", "verify_runner"]

TAIL_LINES = 30
# qbench's own frames kept in a failure's error_tail even when the library's frames below them fill TAIL_LINES.
OWN_FRAMES = 6
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent) + os.sep
# Modes whose recipe observes activations on calibration batches.
NEEDS_CALIBRATION = ("static_eager", "static_fx", "qat", "pt2e")
# Modes whose kernels are chosen by the packed weights of torch.backends.quantized.engine (pt2e compiles its own).
ENGINE_PACKED_MODES = ("dynamic", "static_eager", "static_fx", "qat", "prequantized")


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


def error_tail(exc: BaseException) -> str:
    """The last TAIL_LINES lines of the traceback, after the innermost qbench frames that are not among them (a
    failure deep in torch or inductor would otherwise hide which step of qbench's recipe called it)."""
    tail = "".join(traceback.format_exception(exc)).splitlines()[-TAIL_LINES:]
    shown = "\n".join(tail)
    own = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename.startswith(_PACKAGE_DIR)]
    hidden = [frame for frame in own[-OWN_FRAMES:]
              if f'File "{frame.filename}", line {frame.lineno}, in {frame.name}' not in shown]
    if not hidden:
        return shown
    frames = [f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}' for frame in hidden]
    return "\n".join(["qbench frames (innermost last):", *frames, "...", *tail])


def _failure(exc: BaseException) -> dict:
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    tail = error_tail(exc)
    oom = isinstance(exc, MemoryError) or "can't allocate memory" in str(exc) or "bad_alloc" in str(exc)
    reason = f"out of memory: {type(exc).__name__}: {first}" if oom else f"{type(exc).__name__}: {first}"
    return {"status": "failed", "reason": reason, "error_tail": tail}


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
        environment_started = time.perf_counter()
        try:
            from qbench.runner.environment import collect_environment

            payload["environment"] = collect_environment()
        except Exception as exc:  # noqa: BLE001
            payload["environment"] = {"error": f"{type(exc).__name__}: {exc}"}
        payload["worker"]["environment_s"] = time.perf_counter() - environment_started
    write_json_atomic(result_path, payload, indent=None)
    return 0


def verify_runner(runner: str, kernels: dict, engine: str | None = None) -> None:
    """A runner profile whose ISA cap did not take effect, or whose int8 convolutions ran another library than a
    real host of the profile runs, must fail the case, not measure something no such host measures."""
    from qbench.suite.profiles import EXPECTED_INT8_CONV, profile

    wanted = profile(runner)
    expected = EXPECTED_INT8_CONV.get(runner, {}).get(engine)
    if expected and kernels.get("int8_conv") and kernels["int8_conv"] != expected:
        raise RuntimeError(f"this profile cannot reproduce a real {runner.upper()} host's {engine}-engine path here: "
                           f"its int8 convolutions ran {kernels['int8_conv']}, a real host runs {expected}")
    if wanted.cpu_capability and kernels["cpu_capability"] != wanted.cpu_capability:
        raise RuntimeError(f"runner {runner}: torch dispatches to {kernels['cpu_capability']}, "
                           f"not {wanted.cpu_capability}; the ISA cap did not take effect")
    if wanted.onednn_isa and wanted.onednn_isa not in (kernels["onednn_isa"] or ""):
        raise RuntimeError(f"runner {runner}: oneDNN runs at {kernels['onednn_isa'] or 'an unknown ISA'}, "
                           f"not {wanted.onednn_isa}; the ISA cap did not take effect")


def _build(case, source, example, task: dict) -> tuple:
    """The case's model under its mode: from the artifact cache when an entry matches (the recipe then runs on a
    one-batch stand-in calibration to build the converted skeleton, and the cached state is loaded into it), else
    by the full recipe, whose converted state is then cached. Returns (Prepared, calibration identity, cache info).
    """
    import dataclasses
    import time

    from qbench.runner.registry.data import calibration_batches, transform_for
    from qbench.runner.registry.modes import apply_mode

    calibration, calibration_identity = [], None
    if case.mode in NEEDS_CALIBRATION:
        calibration, calibration_identity = calibration_batches(case.calibration, source.input_size,
                                                                transform_for(source))
    cache, key, cache_info = _open_cache(case, source, calibration_identity, task)
    cached = cache.get(key) if cache is not None else None
    if cached is not None:
        from qbench.runner.artifacts import restore_into
        from qbench.errors import StoreError

        stand_in = [example[:1]]
        qat = dataclasses.replace(case.qat, steps=0) if case.qat is not None else None
        prepared = apply_mode(case.mode, source, engine=case.engine, calibration=stand_in, example_input=example,
                              qconfig=case.qconfig, qat=qat)
        started = time.perf_counter()
        try:
            restore_into(prepared.model, cached)
        except StoreError as exc:  # a stale entry: measure the real recipe instead, and say so
            cache_info["warnings"] = [*cache.warnings, f"restore failed, rebuilt: {exc}"]
        else:
            prepared.phases["cache_load"] = time.perf_counter() - started
            return prepared, calibration_identity, {**cache_info, "hit": True, "warnings": list(cache.warnings)}
    prepared = apply_mode(case.mode, source, engine=case.engine, calibration=calibration, example_input=example,
                          qconfig=case.qconfig, qat=case.qat)
    if cache is not None:
        cache.put(key, prepared.model.state_dict(), {"case_id": case.case_id, "identity": cache_info["identity"]})
        warnings = cache_info.get("warnings") or list(cache.warnings)
        return prepared, calibration_identity, {**cache_info, "hit": False, "warnings": warnings}
    return prepared, calibration_identity, cache_info


def _open_cache(case, source, calibration_identity, task: dict):
    """The artifact cache and this case's key, or (None, None, reason) when the case is not cached."""
    settings = task.get("cache") or {}
    from qbench.launch.artifact_cache import cacheable, describe_key, key_of
    from qbench.runner.artifacts import ArtifactCache

    if not settings.get("enabled"):
        return None, None, {"used": False, "reason": "disabled"}
    if not cacheable(case.mode):
        return None, None, {"used": False, "reason": f"mode {case.mode} is not cached"}
    from qbench.runner.environment import collect_environment

    env = collect_environment()
    versions = {k: env.get(k) for k in ("torch", "torch_git", "torchvision", "torchao")}
    identity = describe_key(case, weights_identity=source.weights_info(), calibration_identity=calibration_identity,
                            versions=versions)
    key = key_of(identity)
    cache = ArtifactCache(settings.get("dir"))
    return cache, key, {"used": True, "key": key, "identity": identity}


def _kernels_like_the_profile(case, kernels: dict) -> dict:
    """The engine-packed modes' kernels as a real host of the case's runner profile runs them (see there)."""
    from qbench.runner.probes.kernels import kernels_like_the_profile

    if case.mode not in ENGINE_PACKED_MODES:
        return kernels
    return kernels_like_the_profile(case.runner, case.engine, kernels)


def _accuracy(model, case, spec, source, reuse, evaluate_case) -> dict | None:
    """metrics.accuracy: an fp32 case alone; an int8 case against its fp32 parent. With the reuse store, the
    parent's logits are computed once per model (by the fp32 case, or the first int8 case when it runs first), and
    the whole figure once per model, mode, engine and qconfig on one evaluation set (the case's batch does not
    change it). fp32_bf16 is judged against its parent rebuilt in exact fp32 math in this process (the store's
    reference logits are never computed in a bf16 process), and its figure is then reused like the others."""
    if case.mode == "fp32":  # its logits are its int8 children's reference logits: computed once for all of them
        return reuse.figure("accuracy", lambda: evaluate_case(
            model, None, spec, source, engine=case.engine,
            own_logits=lambda eval_set: reuse.reference_logits(eval_set, spec.batch_size, model=model)),
            eval_set=reuse.eval_set_identity(spec), accuracy_batch=spec.batch_size)
    if case.mode == "fp32_bf16" or not reuse.enabled:
        def against_rebuilt_parent():
            reference = source.float_model()
            if case.mode == "fp32_bf16":  # this process computes fp32 in bf16: judge it against exact fp32 math
                from qbench.runner.registry.engines import with_fp32_math

                reference = with_fp32_math(reference)
            return evaluate_case(model, reference, spec, source, engine=case.engine)

        if not reuse.enabled:
            return against_rebuilt_parent()
        return reuse.figure("accuracy", against_rebuilt_parent, eval_set=reuse.eval_set_identity(spec),
                            accuracy_batch=spec.batch_size)
    return reuse.figure("accuracy", lambda: evaluate_case(
        model, None, spec, source, engine=case.engine,
        reference_logits=lambda eval_set: reuse.reference_logits(eval_set, spec.batch_size)),
        eval_set=reuse.eval_set_identity(spec), accuracy_batch=spec.batch_size)


def measure_case(task: dict) -> dict:
    """The real measurement: build the case's model under its mode and engine, then size, latency, memory,
    bytes moved and accuracy. Every phase's wall time lands in details.phases_s (qbench.runner.phases)."""
    from qbench.runner.phases import PhaseTimer

    timer = PhaseTimer()
    with timer("imports"):
        import torch

        from qbench.runner.probes.accuracy import evaluate_case
        from qbench.runner.probes.kernels import probe_kernels
        from qbench.runner.probes.latency import measure_latency
        from qbench.runner.probes.memory import PhasePeaks
        from qbench.runner.probes.size import measure_size
        from qbench.runner.probes.traffic import count_traffic
        from qbench.records import AccuracySpec, Case, MeasureSpec
        from qbench.runner.registry.data import example_input
        from qbench.runner.registry.models import open_model
        from qbench.runner.reuse import open_reuse

    case = Case.from_dict(task["case"])
    spec = MeasureSpec.from_dict(task["measure"])
    accuracy_spec = AccuracySpec.from_dict(task.get("accuracy") or {})
    with timer("probe"):
        if case.mode == "fp32_bf16":  # before the probe, so that it records the fp32 convolution bf16 fast math runs
            from qbench.runner.registry.engines import allow_bf16_fastmath

            allow_bf16_fastmath()
        kernels = probe_kernels(case.engine)  # first: oneDNN names its ISA only at its first use in a process
        kernels = _kernels_like_the_profile(case, kernels)
        verify_runner(case.runner, kernels, case.engine if case.mode in ENGINE_PACKED_MODES else None)
    torch.manual_seed(case.seed)
    peaks = PhasePeaks()
    with timer("open_model"):
        source = open_model(case.model, case.weights, seed=case.seed)
        example = example_input(case.batch_size, source.input_size, case.seed)
    with timer("build"):
        prepared, calibration_identity, cache_info = _build(case, source, example, task)
    model = prepared.model
    peaks.end_phase("build")
    reuse = open_reuse(case, source, task, timer)
    with timer("size"):
        size = reuse.figure("size", lambda: measure_size(model))
    with torch.inference_mode():
        with timer("check_output"):
            output = model(example)
            if not torch.isfinite(output).all():
                raise RuntimeError("the model's output holds NaN or Inf values")
        with timer("latency"):
            latency = measure_latency(lambda: model(example), spec)
    peaks.end_phase("run")
    metrics = {"latency": latency, "size": size, "memory": peaks.as_metric()}
    with torch.inference_mode(), timer("traffic"):
        # A compiled model (pt2e) runs its own kernels under a dispatch mode: count its uncompiled graph instead.
        metrics["bandwidth"] = reuse.figure("bandwidth", lambda: count_traffic(getattr(model, "_orig_mod", model),
                                                                                 example), batch_size=case.batch_size)
    if accuracy_spec.images > 0:
        with timer("accuracy"):
            metrics["accuracy"] = _accuracy(model, case, accuracy_spec, source, reuse, evaluate_case)
        if metrics["accuracy"] is not None and accuracy_spec.max_drop:  # the suite's gate limit travels with it
            metrics["accuracy"]["max_drop"] = accuracy_spec.max_drop
    phases_s, phases_cpu_s, phases_nested = timer.record(prepared.phases)
    return {
        "status": "ok",
        "metrics": metrics,
        "details": {
            "qconfig": prepared.qconfig,
            "phases_s": phases_s,
            "phases_cpu_s": phases_cpu_s,
            "phases_nested": phases_nested,
            "notes": prepared.notes,
            "calibration": calibration_identity,
            "cache": cache_info,
            "weights": source.weights_info(),
            "kernels": kernels,
            "peaks": task.get("peaks"),
            "input_shape": list(example.shape),
            "output_shape": list(output.shape),
            **reuse.details(),
        },
    }


def _end_with_parent() -> None:
    """A spawned worker leads its own session, so nothing stops it when the qbench that started it is killed: a
    thread blocked on the parent's pidfd (no wake-ups while measuring) kills the worker's group when it ends."""
    import select
    import signal
    import threading

    try:
        parent = os.pidfd_open(os.getppid())
    except (AttributeError, OSError):  # no pidfd (not Linux): the launcher's timeout still applies
        return

    def watch() -> None:
        select.select([parent], [], [])
        os.killpg(0, signal.SIGKILL) if os.getpgid(0) == os.getpid() else os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="qbench-parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    task_path, result_path = (argv or sys.argv[1:])[:2]
    _end_with_parent()
    return execute(task_path, result_path)


if __name__ == "__main__":
    raise SystemExit(main())
