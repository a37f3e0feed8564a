"""No value crashes a reader: records are validated on read (a bad one is named in one line and left out), and
series that relative steps cannot judge (0, negative, not finite) say so instead of dividing by zero."""

import dataclasses
import json
import math
from pathlib import Path

import pytest

from qbench.compare.steps import detect, unjudged
from qbench.history.store import load_history, read_run_file
from qbench.history.validate import check_case_line, check_header_line
from tests.factories import (MOBILENET_FP32, MOBILENET_INT8, make_record, make_run,
                             one_line_error, pairs, qbench, write_runs)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "records"
FP32, INT8 = MOBILENET_FP32, MOBILENET_INT8


def random_weights_accuracy(night, record):
    """mobilenet_v2 with random weights: agreement 0 and logits SQNR 0 dB for its int8 case."""
    if record.case.mode == "fp32":
        return record.metrics
    return {**record.metrics, "accuracy": {"agreement": 0.0, "sqnr_db": 0.0, "subset": {"files_sha256": "a" * 64}}}


def test_three_runs_with_agreement_and_sqnr_at_zero_do_not_crash_history_or_report(tmp_path):
    write_runs(tmp_path, 3, random_weights_accuracy)
    done = qbench("history", "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "2 series cannot be judged" in done.stdout and "agreement" in done.stdout
    listed = json.loads(qbench("history", "--results", str(tmp_path), "--format", "json").stdout)
    assert {(u["metric"], u["case_id"]) for u in listed["unjudged"]} == {("agreement", INT8.case_id),
                                                                       ("sqnr", INT8.case_id)}
    report = qbench("report", "--results", str(tmp_path), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "report.html").is_file()


def test_a_string_of_samples_is_named_in_one_line_left_out_and_the_rest_reported(tmp_path):
    def bad_samples(night, record):
        if night == 1 and record.case.mode == "fp32":
            return {**record.metrics, "latency": {**record.metrics["latency"], "samples": "0.01 0.011"}}
        return record.metrics

    paths = write_runs(tmp_path, 3, bad_samples)
    done = qbench("report", "--results", str(tmp_path), "--out", str(tmp_path / "report"))
    assert done.returncode == 3
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    line = one_line_error(done)
    assert line.startswith(f"qbench: error: {paths[1]}:2: record ") and "left out" in line
    assert "metrics.latency.samples" in line and "'0.01 0.011'" in line
    assert (tmp_path / "report" / "report.html").is_file()
    run = read_run_file(paths[1])
    assert [r.case.mode for r in run.records] == ["static_fx"] and len(run.rejected) == 1


def test_load_history_leaves_a_bad_record_out_with_a_warning_or_into_errors(tmp_path):
    write_runs(tmp_path, 2, lambda night, record: {**record.metrics, "size": {"state_dict_bytes": -3}}
               if night == 0 and record.case.mode == "fp32" else record.metrics)
    with pytest.warns(UserWarning, match="metrics.size.state_dict_bytes"):
        frame = load_history(tmp_path)
    assert len(frame) == 3
    errors = []
    assert len(load_history(tmp_path, errors)) == 3 and len(errors) == 1


BAD_VALUES = [
    ("latency", {"samples": "0.01"}, "metrics.latency.samples"),
    ("latency", {"samples": [0.01, 0.0]}, "metrics.latency.samples.1"),
    ("latency", {"samples": [0.01, -1.0]}, "metrics.latency.samples.1"),
    ("latency", {"samples": [0.01, math.nan]}, "metrics.latency.samples.1"),
    ("latency", {"samples": [math.inf]}, "metrics.latency.samples.0"),
    ("latency", {"samples": [True]}, "metrics.latency.samples.0"),
    ("size", {"state_dict_bytes": 0}, "metrics.size.state_dict_bytes"),
    ("size", {"state_dict_bytes": "1000"}, "metrics.size.state_dict_bytes"),
    ("size", {"state_dict_bytes": math.nan}, "metrics.size.state_dict_bytes"),
    ("memory", {"peak_rss_run": -1}, "metrics.memory.peak_rss_run"),
    ("bandwidth", {"bytes_total": [1]}, "metrics.bandwidth.bytes_total"),
    ("accuracy", {"agreement": 1.5}, "metrics.accuracy.agreement"),
    ("accuracy", {"top1": -0.1}, "metrics.accuracy.top1"),
    ("accuracy", {"sqnr_db": math.inf}, "metrics.accuracy.sqnr_db"),
    ("accuracy", {"delta_top1_ci": [0.1]}, "metrics.accuracy.delta_top1_ci"),
    ("latency", "fast", "metrics.latency"),
]


@pytest.mark.parametrize("section, value, where", BAD_VALUES)
def test_each_value_rule_names_the_broken_field(section, value, where):
    line = make_record(INT8).to_dict()
    line["metrics"] = {**line["metrics"], section: value}
    problem = check_case_line(line)
    assert problem is not None and problem.startswith(f"{where}:"), problem


@pytest.mark.parametrize("field, value", [("duration_s", "1"), ("started_at", 3), ("machine", {"machine_id": 1}),
                                          ("qbench", {"dirty": "no"}), ("environment", {"torch": 2.13})])
def test_provenance_of_the_wrong_type_is_refused(field, value):
    line = make_record(INT8).to_dict()
    line[field] = value
    assert check_case_line(line) is not None


def test_zero_and_missing_values_that_mean_something_are_accepted():
    line = make_record(INT8).to_dict()
    line["metrics"] = {**line["metrics"], "accuracy": {"agreement": 0.0, "sqnr_db": -3.5, "top1": None},
                       "memory": {"peak_rss_run": 0}, "bandwidth": {"bytes_total": 0}}
    assert check_case_line(line) is None
    assert check_case_line({**make_record(INT8, status="failed").to_dict(), "metrics": {}}) is None


def test_every_line_qbench_wrote_on_a_real_host_is_accepted():
    files = sorted(FIXTURES.rglob("*.jsonl"))
    assert files
    for path in files:
        run = read_run_file(path)
        assert not run.rejected, run.rejected[:1]
        assert check_header_line(run.header) is None and run.records


def test_a_header_that_breaks_the_rules_makes_its_file_unreadable(tmp_path):
    (path,) = write_runs(tmp_path, 1)
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["started_at"] = 20261101
    path.write_text("\n".join([json.dumps(header)] + lines[1:]) + "\n")
    done = qbench("history", "--results", str(tmp_path))
    assert done.returncode == 3
    assert f"{path}:1: unreadable run header: started_at" in one_line_error(done)


@pytest.mark.parametrize("values", [[0.5, 0.0, 0.5, 0.5], [0.2, -0.1, 0.2, 0.2], [0.0, 0.0, 0.0]])
def test_a_higher_is_better_series_with_zero_or_negative_values_is_not_judged(values):
    runs = [make_run(i, [(INT8, [0.010] * 3, 1000)]) for i in range(len(values))]
    for run, value in zip(runs, values):
        run.records[0] = dataclasses.replace(run.records[0], metrics={
            **run.records[0].metrics, "accuracy": {"agreement": value, "subset": {"files_sha256": "a" * 64}}})
    from qbench.history.series import build_series

    (series,) = [s for s in build_series(pairs(*runs), ["agreement"])]
    assert "relative steps need values > 0" in unjudged(series)
    assert detect(series, 0.01) == []
