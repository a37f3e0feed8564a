"""Latency sampling: warm-up, loop calibration to a minimum sample time, then rounds until a minimum total time, or,
adaptively (MeasureSpec.target_rel_ci > 0), until the median's 95% interval is tight enough (qbench.stats.stopping)
within [min_time_s, max_time_s]. Every sample is kept (seconds per inference); summaries are derived on read. The
record names the stopping rule and why sampling stopped. The clocks are seams for tests.

Next to each wall-clock sample goes the process's CPU time over the same loops (`cpu_samples`, CPU seconds per
inference, every thread of the process): a process descheduled by a busy machine waits without burning CPU, so on a
shared runner CPU time moves far less with the load than wall time (`qbench ab --statistic cpu`)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from qbench.records import MeasureSpec
from qbench.stats.stopping import relative_halfwidth

__all__ = ["measure_latency"]


def measure_latency(fn: Callable[[], object], spec: MeasureSpec,
                    clock: Callable[[], float] = time.perf_counter,
                    cpu_clock: Callable[[], float] = time.process_time) -> dict:
    for _ in range(spec.warmup_rounds):
        fn()
    loops = _calibrate_loops(fn, spec.min_sample_s, clock)
    samples: list[float] = []
    cpu_samples: list[float] = []
    adaptive = spec.target_rel_ci > 0
    halfwidth, stopped_by = None, "max_rounds"
    began = clock()
    while len(samples) < spec.max_rounds:
        start, cpu_start = clock(), cpu_clock()
        for _ in range(loops):
            fn()
        end, cpu_end = clock(), cpu_clock()
        samples.append((end - start) / loops)
        cpu_samples.append(max(cpu_end - cpu_start, 0.0) / loops)
        if len(samples) < spec.min_rounds or end - began < spec.min_time_s:
            continue
        if not adaptive:
            stopped_by = "min_time"
            break
        halfwidth = relative_halfwidth(samples)
        if halfwidth is not None and halfwidth <= spec.target_rel_ci:
            stopped_by = "target"
            break
        if spec.max_time_s and end - began >= spec.max_time_s:
            stopped_by = "max_time"
            break
    result = {"unit": "s", "samples": samples, "cpu_samples": cpu_samples, "loops": loops, "warmup_rounds": spec.warmup_rounds,
              "total_s": clock() - began}
    if adaptive:
        result["stopping"] = {"rule": "median_ci95", "target_rel_halfwidth": spec.target_rel_ci,
                              "min_time_s": spec.min_time_s, "max_time_s": spec.max_time_s,
                              "min_rounds": spec.min_rounds, "max_rounds": spec.max_rounds,
                              "rel_halfwidth": halfwidth, "stopped_by": stopped_by}
    return result


def _calibrate_loops(fn: Callable[[], object], min_sample_s: float, clock: Callable[[], float]) -> int:
    """Calls per sample so that one sample lasts at least min_sample_s (1 for anything slower than that)."""
    start = clock()
    fn()
    once = clock() - start
    if once <= 0:
        return 1000
    return max(1, math.ceil(min_sample_s / once))
