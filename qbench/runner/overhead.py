"""Worker entry points that measure qbench itself: an empty case (what isolation costs per case) and qbench's
latency sampler against a bare `torch.inference_mode` loop on the same model in the same process."""

from __future__ import annotations

import statistics
import time

__all__ = ["noop", "sampler_vs_bare_loop"]


def noop(task: dict) -> dict:
    """What every case needs before it can build a model (torch and torchvision imported), then nothing."""
    from qbench.runner.registry.torchvision_compat import import_torchvision

    import_torchvision()
    return {"status": "ok", "metrics": {}, "details": {}}


def sampler_vs_bare_loop(task: dict) -> dict:
    """Alternates qbench's sampler and a bare loop `alternations` times, so drift hits both sides alike."""
    import torch

    from qbench.runner.probes.latency import measure_latency
    from qbench.records import Case, MeasureSpec
    from qbench.runner.registry.data import calibration_batches, example_input, transform_for
    from qbench.runner.registry.models import open_model
    from qbench.runner.registry.modes import apply_mode
    from qbench.runner.worker import NEEDS_CALIBRATION

    case, spec = Case.from_dict(task["case"]), MeasureSpec.from_dict(task["measure"])
    source = open_model(case.model, case.weights, seed=case.seed)
    example = example_input(case.batch_size, source.input_size, case.seed)
    calibration = (calibration_batches(case.calibration, source.input_size, transform_for(source))[0]
                   if case.mode in NEEDS_CALIBRATION else [])
    model = apply_mode(case.mode, source, engine=case.engine, calibration=calibration, example_input=example).model
    harness, bare, ratios = [], [], []

    def bare_loop() -> list[float]:
        times = []
        for _ in range(task["bare_rounds"]):
            start = time.perf_counter()
            model(example)
            times.append(time.perf_counter() - start)
        return times

    with torch.inference_mode():
        for _ in range(spec.warmup_rounds):
            model(example)
        for index in range(task["alternations"]):
            # ABBA order, so that drift within a block pair does not favour either side.
            if index % 2 == 0:
                ours, theirs = measure_latency(lambda: model(example), spec)["samples"], bare_loop()
            else:
                theirs, ours = bare_loop(), measure_latency(lambda: model(example), spec)["samples"]
            harness += ours
            bare += theirs
            ratios.append(statistics.median(ours) / statistics.median(theirs))
    return {"status": "ok", "metrics": {"harness": harness, "bare": bare, "block_ratios": ratios}, "details": {}}
