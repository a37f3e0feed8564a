"""A/A noise: thresholds from repeats, the noise.json contract, and `qbench noise` on a real tiny model."""

import json
import random

import pytest

from qbench.errors import SchemaVersionError, StoreError
from qbench.history.noise import (NOISE_FLOOR, estimate_thresholds, load_noise, noise_document, noise_path,
                          relative_noise, write_noise)
from tests.factories import MACHINE, make_case, make_record, one_line_error, qbench, tiny_suite_text

CASE = make_case()


def test_relative_noise_is_a_high_quantile_of_pairwise_steps():
    assert relative_noise([1.0, 1.1]) == pytest.approx(0.1)
    assert relative_noise([1.1, 1.0]) == pytest.approx(0.1)
    assert relative_noise([2.0, 2.0, 2.0]) == 0.0
    # Sorted pairwise steps 0.0099, 0.01, 0.02, 0.471, 0.485, 0.5: the outlier's steps set the 95th percentile.
    assert relative_noise([1.0, 1.01, 1.02, 1.5]) == pytest.approx(0.485 + 0.75 * 0.015, abs=1e-3)
    assert relative_noise([1.0]) is None


def test_relative_noise_of_gaussian_repeats_matches_theory():
    rng = random.Random(0)
    values = [1.0 + rng.gauss(0, 0.02) for _ in range(400)]
    # |a - b| for two draws has sd 0.02·√2; its 95th percentile is 1.96 · 0.02 · √2 ≈ 0.055.
    assert relative_noise(values) == pytest.approx(0.055, rel=0.1)


def records_for(case, medians, status="ok"):
    return [make_record(case, samples=[m] * 3, status=status) for m in medians]


def test_thresholds_per_case_and_noisy_metric_from_repeats():
    other = make_case(model="resnet50")
    records = records_for(CASE, [0.010, 0.011, 0.0105]) + records_for(other, [0.020, 0.020]) \
        + records_for(make_case(model="alexnet"), [0.03]) + records_for(make_case(model="vgg11"), [1, 1], "failed")
    thresholds = estimate_thresholds(records)
    assert set(thresholds) == {CASE.case_id, other.case_id}
    # Pairwise steps 0.0476, 0.05, 0.1; their 95th percentile interpolates 90% of the way from 0.05 to 0.1.
    assert thresholds[CASE.case_id]["latency"] == pytest.approx(0.095, abs=1e-3)
    assert thresholds[CASE.case_id]["throughput"] == thresholds[CASE.case_id]["latency"]
    assert thresholds[other.case_id] == {"latency": NOISE_FLOOR, "throughput": NOISE_FLOOR, "memory": NOISE_FLOOR}
    assert "size" not in thresholds[CASE.case_id]


def test_noise_json_round_trip_and_exact_shape(tmp_path):
    thresholds = {CASE.case_id: {"latency": 0.07, "memory": 0.01}}
    document = noise_document(MACHINE["machine_id"], {"name": "quick", "path": "/x", "sha256": "ab"}, 5, thresholds)
    path = write_noise(tmp_path, document)
    assert path == noise_path(tmp_path, MACHINE["machine_id"]) == tmp_path / MACHINE["machine_id"] / "noise.json"
    stored = json.loads(path.read_text())
    assert set(stored) == {"schema_version", "machine_id", "created_at", "suite", "repeats", "thresholds"}
    assert stored["schema_version"] == 1 and stored["suite"] == {"name": "quick", "sha256": "ab"}
    assert stored["created_at"].endswith("Z") and stored["repeats"] == 5
    assert load_noise(path) == thresholds


def test_load_noise_missing_is_empty_and_bad_files_are_store_errors(tmp_path):
    assert load_noise(tmp_path / "noise.json") == {}
    path = tmp_path / "noise.json"
    path.write_text("{not json")
    with pytest.raises(StoreError, match="noise.json: unreadable noise thresholds"):
        load_noise(path)
    path.write_text(json.dumps({"schema_version": 2, "thresholds": {}}))
    with pytest.raises(SchemaVersionError, match="upgrade qbench"):
        load_noise(path)
    path.write_text(json.dumps({"schema_version": 1, "thresholds": {"a": {"latency": "5%"}}}))
    with pytest.raises(StoreError, match="non-negative fraction"):
        load_noise(path)


def test_noise_command_measures_the_tiny_model_and_writes_thresholds(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite_text())
    results = tmp_path / "results"
    done = qbench("noise", "--suite", str(suite), "--repeats", "2", "--filter", "*/x86/*", "--filter", "*fp32*",
                  "--results", str(results), "--no-progress")
    assert done.returncode == 0, done.stderr
    (path,) = results.glob("*/noise.json")
    stored = json.loads(path.read_text())
    assert stored["repeats"] == 2 and stored["suite"]["name"] == "tiny"
    assert stored["machine_id"] == path.parent.name
    expected = {f"tests.tiny_models:convnet/{m}/b1/t1/random" for m in ("fp32/-", "dynamic/x86", "static_fx/x86")}
    assert set(stored["thresholds"]) == expected
    for by_metric in stored["thresholds"].values():
        assert set(by_metric) == {"latency", "throughput", "memory", "bandwidth"}
        assert all(NOISE_FLOOR <= v < 10 for v in by_metric.values())
    (history,) = results.rglob("*.jsonl")
    cases = [json.loads(x) for x in history.read_text().splitlines() if '"kind": "case"' in x]
    assert sorted(c["worker"]["repeat"] for c in cases if c["status"] == "ok") == [0, 0, 0, 1, 1, 1]
    assert f"noise     {path} (3 cases, 2 repeats)" in done.stdout


def test_noise_command_needs_two_repeats(tmp_path):
    done = qbench("noise", "--suite", "quick", "--repeats", "1", "--results", str(tmp_path))
    assert done.returncode == 2
    assert "--repeats must be at least 2" in one_line_error(done)
