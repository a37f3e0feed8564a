"""qbench.report.cost and `qbench cost`: per-phase costs that add up to each case-process's duration, the table, and
the grid's wall time scaled from a sample with the runners a budget needs (figures are made up, not timed)."""

import math

import pytest

from qbench.history.store import RunWriter
from qbench.report.cost import amortized_estimate, case_costs, grid_estimate, phase_table
from tests.factories import MACHINE, make_case, make_record
from tests.factories import qbench


def _record(model="resnet18", repeat=0, duration=10.0, build=3.0, reused=None):
    details = {"phases_s": {"probe": 0.5, "build": build, "prepare": 1.0, "latency": 2.0, "other": 0.5,
                            "total": 0.5 + build + 2.0 + 0.5},
               "phases_cpu_s": {"probe": 0.4, "build": build - 0.5, "total": 5.0},
               "phases_nested": {"build": ["prepare"]}}
    if reused:
        details["reused"] = {name: "k" * 64 for name in reused}
    worker = {"isolation": "fork", "repeat": repeat, "wall_s": duration - 0.25, "overhead_s": 0.5}
    return make_record(make_case(model=model), duration_s=duration, details=details, worker=worker)


def test_phases_add_up_to_the_duration_and_nested_steps_are_not_counted_twice():
    (cost,) = case_costs([_record()])
    assert "prepare" not in cost["phases"] and "total" not in cost["phases"]
    assert sum(cost["phases"].values()) == pytest.approx(10.0)
    assert cost["phases"]["launch"] == 0.5 and cost["phases"]["parent"] == pytest.approx(0.25)
    assert cost["phases"]["worker_rest"] == pytest.approx(10.0 - 0.25 - 0.5 - 6.0)
    table = phase_table([cost, *case_costs([_record(duration=20.0, build=8.0)])])
    assert table.splitlines()[0].split()[0] == "phase" and "build" in table and "case-process" in table


def test_a_skipped_or_old_record_is_handled():
    skipped = make_record(status="skipped", reason="no engine")
    old = make_record(worker={"isolation": "fork", "repeat": 0, "wall_s": 0.9, "overhead_s": 0.1})
    (cost,) = case_costs([skipped, old])
    assert cost["phases"]["worker"] == pytest.approx(0.8) and sum(cost["phases"].values()) == pytest.approx(1.0)


def test_the_grid_estimate_scales_the_mean_and_counts_runners():
    costs = case_costs([_record(model=m, repeat=r, duration=d)
                        for m, d in (("a", 2.0), ("b", 4.0)) for r in range(3)])
    estimate = grid_estimate(costs, grid_cases=1800, repeat=3, budget_h=2.0)
    assert estimate["mean_case_process_s"] == pytest.approx(3.0) and estimate["processes"] == 6
    assert estimate["hours"] == pytest.approx(3.0 * 1800 * 3 / 3600)
    assert estimate["runners"] == math.ceil(4.5 / 2.0)
    low, high = estimate["hours_ci95"]
    assert 2 * 1800 * 3 / 3600 <= low <= estimate["hours"] <= high <= 4 * 1800 * 3 / 3600


def test_cost_command(tmp_path):
    header = {"run_id": "run1", "started_at": "2026-11-22T10:00:00.000000Z", "suite": {"name": "t"},
              "machine": MACHINE, "qbench": {"version": "0.1.0", "commit": "c" * 40, "dirty": False}}
    writer = RunWriter(tmp_path, MACHINE, header)
    for repeat in range(2):
        writer.append(_record(repeat=repeat, reused=["size"] if repeat else None))
    writer.finish({"run_id": "run1", "interrupted": False})
    done = qbench("cost", str(tmp_path), "--grid-cases", "1878", "--warm")
    assert done.returncode == 0, done.stderr
    assert "case-process" in done.stdout and "all: 2 processes of 1 cases" in done.stdout
    warm = qbench("cost", str(tmp_path), "--table", "warm")
    assert warm.returncode == 0 and "case-process" in warm.stdout
    assert "warm: 1 processes" in done.stdout and "cold start shared by 2: 2 processes of 1 cases" in done.stdout


def test_the_amortized_estimate_spreads_each_cold_start_over_the_cases_sharing_it():
    costs = case_costs([_record(repeat=r, duration=d) for r, d in ((0, 10.0), (1, 4.0), (2, 4.0))])
    estimate = amortized_estimate(costs, grid_cases=100, repeat=3, budget_h=2.0, cold_share=2)
    assert estimate["mean_case_process_s"] == pytest.approx((3 * 4.0 + 6.0 / 2) / 3)
    assert amortized_estimate(costs[:1], grid_cases=100, repeat=3, budget_h=2.0, cold_share=2) is None


def test_the_cpu_proxy_replaces_the_workers_wall_seconds_by_its_cpu_seconds():
    (cost,) = case_costs([_record()], cpu=True)
    assert cost["duration_s"] == pytest.approx(5.0 + (10.0 - 0.25 - 0.5 - 6.0) + 0.5 + 0.25)
    assert case_costs([make_record()], cpu=True) == []
