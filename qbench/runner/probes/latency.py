"""Latency sampling: warm-up, loop calibration to a minimum sample time, then rounds until a minimum total time.
Every sample is kept (seconds per inference); summaries are derived on read. The clock is a seam for tests."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from qbench.records import MeasureSpec

__all__ = ["measure_latency"]


def measure_latency(fn: Callable[[], object], spec: MeasureSpec,
                    clock: Callable[[], float] = time.perf_counter) -> dict:
    for _ in range(spec.warmup_rounds):
        fn()
    loops = _calibrate_loops(fn, spec.min_sample_s, clock)
    samples: list[float] = []
    began = clock()
    while len(samples) < spec.max_rounds:
        start = clock()
        for _ in range(loops):
            fn()
        end = clock()
        samples.append((end - start) / loops)
        if len(samples) >= spec.min_rounds and end - began >= spec.min_time_s:
            break
    return {"unit": "s", "samples": samples, "loops": loops, "warmup_rounds": spec.warmup_rounds,
            "total_s": clock() - began}


def _calibrate_loops(fn: Callable[[], object], min_sample_s: float, clock: Callable[[], float]) -> int:
    """Calls per sample so that one sample lasts at least min_sample_s (1 for anything slower than that)."""
    start = clock()
    fn()
    once = clock() - start
    if once <= 0:
        return 1000
    return max(1, math.ceil(min_sample_s / once))
