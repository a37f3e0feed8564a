"""History → series: one point per run and case, medians over repeats, time or commit order, derived ratios."""

import dataclasses
import hashlib

import pytest

from qbench.records import CalibrationSpec
from qbench.history.series import build_series, format_series_value, order_by_commits, record_values
from tests.factories import FP32, INT8, MACHINE, make_case, make_record, make_run, pairs


def by_metric(series, metric, case_id=INT8.case_id):
    (found,) = [s for s in series if s.metric == metric and s.case_id == case_id]
    return found


def test_a_point_is_the_median_over_the_runs_processes():
    run = make_run(0, [(INT8, [0.010, 0.010, 0.010], 1000), (INT8, [0.020, 0.020, 0.021], 1000),
                       (INT8, [0.013, 0.012, 0.014], 1000)])
    latency = by_metric(build_series(pairs(run)), "latency")
    (point,) = latency.points
    assert point.value == pytest.approx(0.013)
    assert point.n == 3
    assert point.commit == hashlib.sha1(b"0").hexdigest() and point.torch == "2.13.0+cpu"
    throughput = by_metric(build_series(pairs(run)), "throughput")
    assert throughput.points[0].value == pytest.approx(1 / 0.013)
    assert (latency.info.direction, throughput.info.direction) == ("lower", "higher")


def test_points_follow_run_start_time_not_file_order():
    runs = [make_run(i, [(INT8, [0.01 * (i + 1)] * 3, 1000)]) for i in range(3)]
    latency = by_metric(build_series(pairs(runs[2], runs[0], runs[1])), "latency")
    assert [p.run_id for p in latency.points] == [r.header["run_id"] for r in runs]
    assert latency.values == pytest.approx([0.01, 0.02, 0.03])


def test_a_changed_case_definition_or_machine_starts_another_series():
    recalibrated = dataclasses.replace(INT8, calibration=CalibrationSpec(batches=8))
    other = {**MACHINE, "machine_id": "arm-box"}
    series = build_series(pairs(make_run(0, [(INT8, [0.01] * 3, 1000)]),
                                make_run(1, [(recalibrated, [0.01] * 3, 1000)]),
                                make_run(2, [(INT8, [0.01] * 3, 1000)], machine=other)))
    latency = [s for s in series if s.metric == "latency"]
    assert sorted((s.machine_id, s.case_version, len(s.points)) for s in latency) == sorted([
        (MACHINE["machine_id"], INT8.case_version, 1), (MACHINE["machine_id"], recalibrated.case_version, 1),
        ("arm-box", INT8.case_version, 1)])
    assert {s.case_id for s in latency} == {INT8.case_id}


def test_failed_records_give_no_point():
    run = make_run(0, [(INT8, [0.01] * 3, 1000)])
    failed = make_record(INT8, status="failed", run_id=run.header["run_id"])
    series = build_series([(run, failed)])
    assert series == []


def test_derived_speedup_and_compression_pair_int8_with_fp32_of_the_same_run():
    run = make_run(0, [(FP32, [0.040] * 5, 4000), (INT8, [0.010] * 5, 1000)])
    series = build_series(pairs(run))
    speedup, compression = by_metric(series, "speedup"), by_metric(series, "compression")
    assert speedup.points[0].value == pytest.approx(4.0)
    assert compression.points[0].value == pytest.approx(4.0)
    assert speedup.sources == (INT8.case_id, FP32.case_id)
    assert not [s for s in series if s.metric == "speedup" and s.case_id == FP32.case_id]


def test_no_derived_point_without_the_fp32_parent_in_that_run():
    other_batch = make_case(mode="fp32", engine=None, batch_size=8)
    series = build_series(pairs(make_run(0, [(other_batch, [0.04] * 3, 4000), (INT8, [0.01] * 3, 1000)])))
    assert not [s for s in series if s.metric in ("speedup", "compression")]


def test_precision_comes_from_asvs_interval_of_the_pooled_samples():
    wide = make_run(0, [(INT8, [0.010, 0.020, 0.012, 0.018, 0.011, 0.019, 0.015, 0.014, 0.016, 0.013], 1000)])
    tight = make_run(1, [(INT8, [0.0150, 0.0151, 0.0149, 0.0150, 0.0150, 0.0151, 0.0149, 0.0150, 0.0150, 0.0150],
                          1000)])
    single = make_run(2, [(INT8, [0.015], 1000)])
    latency = by_metric(build_series(pairs(wide, tight, single)), "latency")
    errors = [p.rel_err for p in latency.points]
    assert errors[0] > 5 * errors[1] > 0
    assert errors[2] is None
    assert by_metric(build_series(pairs(wide)), "size").points[0].rel_err is None


def test_commit_order_reorders_points_and_drops_unknown_commits():
    runs = [make_run(0, [(INT8, [0.01] * 3, 1000)], commit="b" * 40),
            make_run(1, [(INT8, [0.02] * 3, 1000)], commit="a" * 40),
            make_run(2, [(INT8, [0.03] * 3, 1000)], commit="f" * 40)]
    series = [s for s in build_series(pairs(*runs)) if s.metric == "latency"]
    (ordered,), dropped = order_by_commits(series, ["a" * 40, "b" * 40])
    assert [p.commit[0] for p in ordered.points] == ["a", "b"]
    assert dropped == {runs[2].header["run_id"]}


def test_record_values_and_units():
    record = make_record(make_case(batch_size=4), samples=[0.02, 0.01, 0.03], size=2 * 2**20)
    assert record_values(record) == {"latency": 0.02, "throughput": pytest.approx(200.0), "memory": 200.0,
                                     "size": 2 * 2**20}
    assert format_series_value(0.0123, "latency") == "12.3 ms"
    assert format_series_value(2_000_000, "size") == "2 MB"
    assert format_series_value(3.456, "speedup") == "3.46 ×"


def test_qat_and_qconfig_sweep_cases_pair_with_the_one_fp32_parent():
    from qbench.records import QatSpec
    from qbench.history.series import pair_key

    parent = make_case(mode="fp32", engine=None)
    for child in (make_case(mode="qat", qat=QatSpec(steps=3)), make_case(qconfig="histogram/per_channel/symmetric")):
        assert pair_key(child) == pair_key(parent)
    assert pair_key(make_case(runner="avx2")) != pair_key(parent)
