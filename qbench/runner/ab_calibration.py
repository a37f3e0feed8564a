"""Worker entry of the `qbench ab` sensitivity experiment: time its model at several depths in one process."""

from __future__ import annotations

import statistics
import time

__all__ = ["calibration_task"]


def calibration_task(task: dict) -> dict:
    """Worker entry: time Blocks(n) for every n against Blocks(base) in one process, interleaved round by round,
    by this thread's CPU time (the work, which other processes' load barely touches; torch runs one thread) and by
    wall time. Per n: median and IQR of the per-round ratios, and the ratio of the fastest rounds."""
    import importlib

    import torch

    module = importlib.import_module(task["module"])
    x = torch.randn(1, 3, module.INPUT_SIZE, module.INPUT_SIZE)
    models = {n: module.Blocks(n).eval() for n in task["blocks"]}
    times = {clock: {n: [] for n in models} for clock in ("cpu", "wall")}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(5):
                model(x)
        for _ in range(task["rounds"]):
            for n, model in models.items():
                cpu, wall = time.thread_time(), time.perf_counter()
                for _ in range(task["loops"]):
                    model(x)
                times["cpu"][n].append((time.thread_time() - cpu) / task["loops"])
                times["wall"][n].append((time.perf_counter() - wall) / task["loops"])
    return {"status": "ok", "calibration": {str(n): {clock: _ratios(series[n], series[task["base"]])
                                                      for clock, series in times.items()} for n in models}}


def _ratios(series: list[float], base: list[float]) -> dict:
    ratios = [t / b for t, b in zip(series, base)]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return {"median_ratio": median, "iqr": [q1, q3], "min_ratio": min(series) / min(base),
            "median_s": statistics.median(series)}
