"""qbench.runner.phases (exclusive wall and CPU seconds per phase), qbench.stats.stopping (the median's interval)
and adaptive latency sampling, with fake clocks: no timing is asserted."""

import itertools

import pytest

from qbench.records import MeasureSpec
from qbench.runner.phases import PhaseTimer
from qbench.runner.probes.latency import measure_latency
from qbench.stats.stopping import median_ci, relative_halfwidth


class Ticks:
    """A clock that advances by `step` at every reading."""

    def __init__(self, step=1.0):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_nested_phases_are_booked_once_and_every_second_is_accounted_for():
    timer = PhaseTimer(clock=Ticks(), cpu_clock=Ticks(0.5))
    with timer("accuracy"):
        with timer("reference_logits"):
            pass
    with timer("size"):
        pass
    with timer("size"):
        pass
    wall, cpu, nested = timer.record({"prepare": 0.25, "convert": 0.5})
    assert wall["reference_logits"] == 1 and wall["accuracy"] == 2  # 3 ticks outside, 1 of them inside
    assert wall["size"] == 2 and cpu["size"] == 1
    worker = [v for k, v in wall.items() if k not in ("total", "prepare", "convert")]
    assert sum(worker) == pytest.approx(wall["total"])
    assert wall["prepare"] == 0.25 and nested == {"build": ["convert", "prepare"]}
    assert "prepare" not in cpu


def test_the_median_interval_brackets_the_median_and_needs_six_samples():
    assert median_ci([1.0] * 5) is None and relative_halfwidth([1.0] * 5) is None
    samples = [float(v) for v in range(1, 101)]
    low, high = median_ci(samples)
    assert low < 50.5 < high and 35 <= low and high <= 65
    assert relative_halfwidth([2.0] * 20) == 0.0


def _spec(**kwargs):
    return MeasureSpec(**{"warmup_rounds": 0, "min_rounds": 10, "min_time_s": 0.0, "min_sample_s": 0.0,
                          "max_rounds": 1000, **kwargs})


def test_adaptive_sampling_stops_at_the_target_keeps_every_sample_and_says_why():
    result = measure_latency(lambda: None, _spec(target_rel_ci=0.01, max_time_s=100.0), clock=Ticks())
    assert result["stopping"]["stopped_by"] == "target" and len(result["samples"]) == 10
    assert result["stopping"]["rel_halfwidth"] == 0.0 and result["stopping"]["rule"] == "median_ci95"


def test_adaptive_sampling_stops_at_max_time_when_the_interval_stays_wide():
    steps = itertools.cycle([1.0, 1.0, 5.0, 1.0])  # loop start/end pairs: samples alternate 1 s and 4 s-ish

    class Noisy:
        now = 0.0

        def __call__(self):
            self.now += next(steps)
            return self.now

    result = measure_latency(lambda: None, _spec(target_rel_ci=0.001, max_time_s=60.0), clock=Noisy())
    stopping = result["stopping"]
    assert stopping["stopped_by"] == "max_time" and stopping["rel_halfwidth"] > 0.001
    assert len(result["samples"]) >= 10


def test_fixed_sampling_is_unchanged_and_its_spec_dict_has_no_adaptive_keys():
    result = measure_latency(lambda: None, _spec(min_time_s=5.0), clock=Ticks())
    assert "stopping" not in result and len(result["samples"]) == 10
    assert "target_rel_ci" not in MeasureSpec().to_dict()  # workers of older commits reject unknown keys
    adaptive = MeasureSpec(target_rel_ci=0.01, max_time_s=1.0)
    assert MeasureSpec.from_dict(adaptive.to_dict()) == adaptive


def test_each_sample_carries_the_process_cpu_time_of_the_same_loops():
    class Busy:
        """A process that got the CPU for half of every wall second: CPU time advances half as fast."""

        def __init__(self, wall):
            self.wall = wall

        def __call__(self):
            return self.wall.now / 2

    wall = Ticks()
    result = measure_latency(lambda: None, _spec(min_time_s=5.0), clock=wall, cpu_clock=Busy(wall))
    assert len(result["cpu_samples"]) == len(result["samples"]) == 10
    for wall_s, cpu_s in zip(result["samples"], result["cpu_samples"]):
        assert cpu_s == pytest.approx(wall_s / 2)


def test_a_real_loop_spends_cpu_time_no_longer_than_its_wall_time():
    result = measure_latency(lambda: sum(range(20000)), _spec(min_time_s=0.05))
    assert all(0 < cpu <= wall * 1.05 + 1e-4 for wall, cpu in zip(result["samples"], result["cpu_samples"]))
