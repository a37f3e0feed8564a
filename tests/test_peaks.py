"""qbench.runner.probes.peaks and `qbench peaks`: the probe returns finite positive peaks with their method, peaks.json
round-trips and refuses corruption, and the command measures in a worker, stores, then reuses."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qbench.errors import SchemaVersionError, StoreError
from qbench.history.peaks import PEAKS_SCHEMA_VERSION, load_peaks, save_peaks
from qbench.runner.probes.peaks import cache_sizes, measure_peaks, peaks_task, stream_array_bytes

ROOT = Path(__file__).resolve().parent.parent
MIB = 2**20
# Small sizes keep the probe to a fraction of a second; they measure cache, not memory, which is fine for tests.
SMALL = {"array_bytes": 4 * MIB, "gemm_n": 128, "repeats": 2}


def _cache_tree(root: Path, entries):
    for index, (level, kind, size) in enumerate(entries):
        folder = root / f"index{index}"
        folder.mkdir(parents=True)
        (folder / "level").write_text(f"{level}\n")
        (folder / "type").write_text(f"{kind}\n")
        (folder / "size").write_text(f"{size}\n")


def test_cache_sizes_from_sysfs_skip_instruction_caches(tmp_path):
    _cache_tree(tmp_path, [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "2048K"),
                           (3, "Unified", "307200K")])
    assert cache_sizes(str(tmp_path)) == {"L1d": 48 * 1024, "L2": 2 * MIB, "L3": 300 * MIB}
    assert cache_sizes(str(tmp_path / "missing")) == {}


def test_stream_arrays_are_four_times_the_last_level_cache_capped_by_free_memory():
    caches = {"L1d": 48 * 1024, "L2": 2 * MIB, "L3": 300 * MIB}
    assert stream_array_bytes(caches, None) == 1200 * MIB
    assert stream_array_bytes(caches, 4000 * MIB) == 500 * MIB
    assert stream_array_bytes({}, None) == 256 * MIB
    assert stream_array_bytes({"L2": 1 * MIB}, None) == 64 * MIB


def test_measured_peaks_are_finite_positive_and_say_how():
    peaks = measure_peaks(1, **SMALL)
    for key in ("copy_gbps", "triad_gbps", "fp32_gmacs", "int8_gmacs"):
        assert math.isfinite(peaks[key]) and peaks[key] > 0, key
    assert peaks["threads"] == 1 and peaks["runner"] == "native"
    assert peaks["torch"] == __import__("torch").__version__
    method = peaks["method"]
    assert method["stream"]["array_bytes"] == 4 * MIB and method["stream"]["repeats"] == 2
    assert set(method["fp32"]["probes_gmacs"]) == {"mm", "conv3x3"} and method["fp32"]["n"] == 128
    assert peaks["fp32_gmacs"] == max(method["fp32"]["probes_gmacs"].values())
    assert {"linear", "conv3x3"} <= set(method["int8"]["probes_gmacs"])
    assert peaks["int8_gmacs"] == max(method["int8"]["probes_gmacs"].values())
    assert method["int8"]["op"] in ("quantized::linear", "quantized::conv2d 3x3", "torch._int_mm")
    assert method["int8"]["engine"] in ("x86", "fbgemm", "qnnpack", "onednn")
    json.dumps(peaks, allow_nan=False)


def test_peaks_task_is_a_worker_entry():
    result = peaks_task({"threads": 1, "machine_id": "test-machine", **SMALL})
    assert result["status"] == "ok"
    assert result["peaks"]["machine_id"] == "test-machine"
    assert result["peaks"]["fp32_gmacs"] > 0


def _peaks(runner="native", threads=1, torch_version="2.13.0+cpu", copy=10.0):
    return {"copy_gbps": copy, "triad_gbps": 9.0, "fp32_gmacs": 40.0, "int8_gmacs": 150.0, "threads": threads,
            "runner": runner, "torch": torch_version, "measured_at": "2026-01-01T00:00:00+00:00", "method": {},
            "machine_id": "m1"}


def test_peaks_round_trip_keyed_by_runner_threads_and_torch(tmp_path):
    assert load_peaks(tmp_path, "m1", "native", 1, "2.13.0+cpu") is None
    path = save_peaks(tmp_path, "m1", _peaks())
    save_peaks(tmp_path, "m1", _peaks(threads=2, copy=11.0))
    save_peaks(tmp_path, "m1", _peaks(runner="avx2", copy=12.0))
    assert path == tmp_path / "m1" / "peaks.json"
    assert load_peaks(tmp_path, "m1", "native", 1, "2.13.0+cpu") == _peaks()
    assert load_peaks(tmp_path, "m1", "native", 2, "2.13.0+cpu")["copy_gbps"] == 11.0
    assert load_peaks(tmp_path, "m1", "avx2", 1, "2.13.0+cpu")["copy_gbps"] == 12.0
    assert load_peaks(tmp_path, "m1", "native", 1, "2.14.0") is None
    save_peaks(tmp_path, "m1", _peaks(copy=13.0))
    stored = json.loads(path.read_text())
    assert stored["schema_version"] == PEAKS_SCHEMA_VERSION and len(stored["entries"]) == 3
    assert load_peaks(tmp_path, "m1", "native", 1, "2.13.0+cpu")["copy_gbps"] == 13.0
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"schema_version": 1}', "\xff\xfe"])
def test_a_corrupt_peaks_file_is_a_one_line_store_error_and_is_kept(tmp_path, text):
    path = tmp_path / "m1" / "peaks.json"
    path.parent.mkdir()
    path.write_bytes(text.encode("latin-1"))
    for action in (lambda: load_peaks(tmp_path, "m1", "native", 1, "2.13.0+cpu"),
                   lambda: save_peaks(tmp_path, "m1", _peaks())):
        with pytest.raises(StoreError) as caught:
            action()
        assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert path.read_bytes() == text.encode("latin-1")


def test_a_newer_peaks_schema_is_refused(tmp_path):
    path = tmp_path / "m1" / "peaks.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"schema_version": PEAKS_SCHEMA_VERSION + 1, "entries": {}}))
    with pytest.raises(SchemaVersionError):
        load_peaks(tmp_path, "m1", "native", 1, "2.13.0+cpu")


def qbench(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QBENCH_MACHINE": "peaks-test"}
    return subprocess.run([sys.executable, "-m", "qbench", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


def test_qbench_peaks_measures_in_a_worker_stores_and_then_reuses(tmp_path):
    results = tmp_path / "results"
    small = ("--array-mb", "4", "--gemm-n", "128", "--repeats", "2")
    first = qbench("peaks", "--results", str(results), *small, "--json")
    assert first.returncode == 0, first.stderr
    measured = json.loads(first.stdout)
    assert measured["machine_id"] == "peaks-test" and measured["method"]["stream"]["array_bytes"] == 4 * MIB
    stored = json.loads((results / "peaks-test" / "peaks.json").read_text())
    assert list(stored["entries"].values()) == [measured]
    assert (results / "peaks-test" / "machine.json").exists()

    again = qbench("peaks", "--results", str(results))
    assert again.returncode == 0, again.stderr
    assert "(stored, measured " + measured["measured_at"] in again.stdout
    assert f"copy   {measured['copy_gbps']:8.2f} GB/s" in again.stdout
    assert "int8" in again.stdout and "ridge" in again.stdout


def test_qbench_peaks_bad_input_and_corrupt_file_exit_codes(tmp_path):
    results = tmp_path / "results"
    for args in (("--threads", "0"), ("--runner", "avx3"), ("--gemm-n", "x")):
        done = qbench("peaks", "--results", str(results), *args)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.strip().splitlines()[-1].startswith("qbench: error: ")
    path = results / "peaks-test" / "peaks.json"
    path.parent.mkdir(parents=True)
    path.write_text("{torn")
    done = qbench("peaks", "--results", str(results), "--force")
    assert done.returncode == 3
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "unreadable peaks file" in done.stderr
    assert path.read_text() == "{torn"
