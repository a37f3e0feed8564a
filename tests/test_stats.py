"""Summaries and the latency sampler, driven by a fake clock (no real timing in unit tests)."""

import pytest

from qbench.runner.probes.latency import measure_latency
from qbench.records import MeasureSpec
from qbench.stats.summary import percentile, summarize


def test_percentiles_interpolate_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 25) == 1.75
    assert percentile(values, 100) == 4.0


def test_summary_of_known_samples():
    summary = summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (summary.n, summary.median, summary.q1, summary.q3) == (5, 3.0, 2.0, 4.0)
    assert summary.iqr == 2.0 and summary.minimum == 1.0 and summary.maximum == 5.0
    assert summary.p90 == pytest.approx(4.6)
    assert summarize([]) is None


class FakeClock:
    """Each call of the measured function advances time by `cost` seconds."""

    def __init__(self, cost: float):
        self.now, self.cost, self.calls = 0.0, cost, 0

    def __call__(self) -> float:
        return self.now

    def work(self) -> None:
        self.calls += 1
        self.now += self.cost


def test_sampler_runs_until_min_time_and_min_rounds():
    clock = FakeClock(cost=0.01)
    spec = MeasureSpec(warmup_rounds=2, min_time_s=0.5, min_rounds=10, max_rounds=1000, min_sample_s=0.001)
    result = measure_latency(clock.work, spec, clock=clock)
    assert result["loops"] == 1
    assert len(result["samples"]) == 50
    assert all(s == pytest.approx(0.01) for s in result["samples"])
    assert clock.calls == 2 + 1 + 50


def test_sampler_calibrates_loops_for_fast_functions():
    clock = FakeClock(cost=2**-14)  # powers of two keep the fake clock's sums exact
    spec = MeasureSpec(warmup_rounds=0, min_time_s=2**-6, min_rounds=3, max_rounds=1000, min_sample_s=2**-10)
    result = measure_latency(clock.work, spec, clock=clock)
    assert result["loops"] == 16
    assert result["samples"][0] == 2**-14
    assert len(result["samples"]) == 16


def test_sampler_respects_max_rounds_and_min_rounds():
    slow = FakeClock(cost=1.0)
    assert len(measure_latency(slow.work, MeasureSpec(0, 100.0, 3, 4, 0.001), clock=slow)["samples"]) == 4
    slow = FakeClock(cost=1.0)
    assert len(measure_latency(slow.work, MeasureSpec(0, 0.0, 7, 100, 0.001), clock=slow)["samples"]) == 7
