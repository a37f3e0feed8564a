"""The worker path end to end with issue 4's metrics: a real `qbench run` records bytes moved, the label-free
accuracy against the fp32 parent and the machine's peaks; a second run hits the quantized-artifact cache and
measures the same model."""

import json

from qbench.history.store import iter_records, load_history
from tests.factories import qbench, tiny_suite_text

SUITE = tiny_suite_text().replace('modes = ["fp32", "dynamic", "static_eager", "static_fx"]',
                           'modes = ["fp32", "static_fx"]').replace('engines = ["x86", "qnnpack"]', 'engines = ["x86"]')
SUITE += """
[accuracy]
images = 8
batch_size = 4
"""


def _records(results):
    return {r.case.mode: r for _, r in iter_records(results, errors=[])}


def test_run_records_bandwidth_accuracy_peaks_and_reuses_cached_artifacts(tmp_path):
    suite, cache = tmp_path / "tiny.toml", tmp_path / "cache"
    suite.write_text(SUITE)
    first, second = tmp_path / "first", tmp_path / "second"
    for results in (first, second):
        done = qbench("run", "--suite", str(suite), "--results", str(results), "--cache-dir", str(cache),
                      "--no-progress")
        assert done.returncode == 0, done.stderr
    assert "agree %" in done.stdout and "GB/s" in done.stdout and "SQNR dB" in done.stdout

    before, after = _records(first), _records(second)
    fp32, int8 = before["fp32"], before["static_fx"]
    assert fp32.metrics["bandwidth"]["macs"] == int8.metrics["bandwidth"]["macs"] > 0
    assert int8.metrics["bandwidth"]["bytes_weights"] < fp32.metrics["bandwidth"]["bytes_weights"] / 3
    assert fp32.metrics["accuracy"]["reference"] is None and fp32.metrics["accuracy"]["sqnr_db"] is None
    accuracy = int8.metrics["accuracy"]
    assert accuracy["subset"]["images"] == 8 and len(accuracy["predictions"]) == 8
    assert 0.0 <= accuracy["agreement"] <= 1.0 and 10 < accuracy["sqnr_db"] < 200
    peaks = int8.details["peaks"]
    assert peaks["triad_gbps"] > 0 and peaks["int8_gmacs"] > 0 and peaks == fp32.details["peaks"]

    assert int8.details["cache"]["hit"] is False and after["static_fx"].details["cache"]["hit"] is True
    assert "cache_load" in after["static_fx"].details["phases_s"]
    assert fp32.details["cache"] == {"used": False, "reason": "mode fp32 is not cached"}
    assert after["static_fx"].details["cache"]["identity"]["mode"] == "static_fx"
    # The restored model is the calibrated one: same weights, same outputs on the same images.
    assert after["static_fx"].metrics["size"] == int8.metrics["size"]
    assert after["static_fx"].metrics["accuracy"]["sqnr_db"] == accuracy["sqnr_db"]

    frame = load_history(first)
    row = frame[frame["mode"] == "static_fx"].iloc[0]
    assert row["bandwidth_gbps"] > 0 and 0 < row["peak_bandwidth_pct"]
    assert row["sqnr_db"] == accuracy["sqnr_db"] and not row["cache_hit"]
    json.dumps(int8.to_dict(), allow_nan=False)


def test_no_cache_builds_from_scratch(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE.replace("images = 8", "images = 0"))
    done = qbench("run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--no-cache", "--no-peaks",
                  "--no-progress")
    assert done.returncode == 0, done.stderr
    records = _records(tmp_path / "r")
    assert records["static_fx"].details["cache"] == {"used": False, "reason": "disabled"}
    assert "accuracy" not in records["static_fx"].metrics and records["static_fx"].details["peaks"] is None


def test_report_shows_bandwidth_and_accuracy_of_a_real_run(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    done = qbench("run", "--suite", str(suite), "--results", str(tmp_path / "r"), "--no-cache", "--no-progress")
    assert done.returncode == 0, done.stderr
    report = qbench("report", "--results", str(tmp_path / "r"), "--out", str(tmp_path / "out"))
    assert report.returncode == 0, report.stderr
    markdown = (tmp_path / "out" / "report.md").read_text()
    section = markdown.split("## Bandwidth and accuracy", 1)[1].split("\n## ", 1)[0]
    (int8_row,) = [line for line in section.splitlines() if "static_fx/x86" in line]
    cells = [c.strip() for c in int8_row.strip("|").split("|")]
    (record,) = [r for _, r in iter_records(tmp_path / "r", errors=[]) if r.case.mode == "static_fx"]
    assert cells[3] == f"{record.metrics['bandwidth']['bytes_total'] / 1e6:.1f}"
    assert cells[7] == f"{record.metrics['accuracy']['sqnr_db']:.1f}"
    assert "## Claims" in markdown
