"""qbench merge: shards' results folders folded into one history without losing or overwriting anything, the
regression gate over the merged runs, and sharded runs of a real tiny suite merging into what one run gives."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qbench.errors import StoreError
from qbench.history.merge import merge_peaks, merge_results, newer_document
from qbench.history.noise import noise_document, write_noise
from qbench.history.store import read_run_file, run_files
from tests.factories import (INT8, MACHINE, ROOT, history, one_line_error, qbench, regressed_tonight, shard_folders,
                             tiny_suite_text, write_history)

TINY_SHARDS = tiny_suite_text("tiny-shards", engines=["qnnpack"],
                              modes=["fp32", "dynamic", "static_fx", "static_eager"], min_time_s=0.02)


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_merge_copies_every_run_once_and_a_second_merge_changes_nothing(tmp_path):
    sources, into = shard_folders(tmp_path), tmp_path / "history"
    report = merge_results(sources, into)
    expected = {str(p.relative_to(s)) for s in sources for p in run_files(s)}
    assert {str(p.relative_to(into)) for p in run_files(into)} == expected and len(expected) == 6
    assert len(report.copied) == 6 and report.records == 6 and len(set(report.run_ids)) == 6
    assert report.machines_added == [MACHINE["machine_id"]]
    for source in sources:
        for path in run_files(source):
            assert (into / path.relative_to(source)).read_bytes() == path.read_bytes()
    before = tree(into)
    again = merge_results(sources, into)
    assert (again.copied, again.run_ids, len(again.identical)) == ([], [], 6)
    assert tree(into) == before


def test_a_different_file_under_an_existing_name_is_refused_and_nothing_is_written(tmp_path):
    sources, into = shard_folders(tmp_path), tmp_path / "history"
    merge_results(sources[:1], into)
    before = tree(into)
    (victim, *_) = run_files(sources[0])
    victim.write_text(victim.read_text().replace('"loops": 1', '"loops": 2'))
    done = qbench("merge", *map(str, sources), "--into", str(into))
    assert done.returncode == 3
    line = one_line_error(done)
    assert victim.name in line and "refusing to overwrite" in line
    assert tree(into) == before  # shard 2's new files were not copied either: every file is checked first


def test_two_sources_with_different_files_of_one_name_conflict(tmp_path):
    first, second = shard_folders(tmp_path, count=1, nights=2)[0], tmp_path / "copy"
    write_history(second, history([0.010] * 2))
    (path,) = [p for p in run_files(second)][:1]
    path.write_text(path.read_text().replace('"loops": 1', '"loops": 3'))
    with pytest.raises(StoreError, match="differs from .*which has the same name"):
        merge_results([first, second], tmp_path / "history")
    assert not (tmp_path / "history").exists()


def test_a_corrupt_run_file_is_a_one_line_error_naming_it(tmp_path):
    sources, into = shard_folders(tmp_path), tmp_path / "history"
    (victim, *_) = run_files(sources[1])
    victim.write_text(victim.read_text()[:-40] + "\n")
    done = qbench("merge", *map(str, sources), "--into", str(into))
    assert done.returncode == 3
    assert str(victim) in one_line_error(done)
    assert run_files(into) == []


def test_a_source_that_is_not_a_folder_is_bad_input(tmp_path):
    done = qbench("merge", str(tmp_path / "missing"), "--into", str(tmp_path / "history"))
    assert done.returncode == 2
    assert "is not a folder" in one_line_error(done)


def test_a_run_filed_under_another_machine_is_refused(tmp_path):
    (source,) = shard_folders(tmp_path, count=1, nights=1)
    machine_folder = source / MACHINE["machine_id"]
    machine_folder.rename(source / "x86_64-elsewhere-2c-24g-000000")
    with pytest.raises(StoreError, match="header names machine"):
        merge_results([source], tmp_path / "history")


def test_machine_json_of_the_same_hardware_is_kept_and_other_hardware_is_refused(tmp_path):
    sources, into = shard_folders(tmp_path), tmp_path / "history"
    merge_results(sources[:1], into)
    kept = (into / MACHINE["machine_id"] / "machine.json").read_bytes()
    other_host = sources[1] / MACHINE["machine_id"] / "machine.json"
    other_host.write_text(json.dumps({**json.loads(other_host.read_text()), "hostname": "runner-42"}))
    merge_results(sources[1:], into)
    assert (into / MACHINE["machine_id"] / "machine.json").read_bytes() == kept
    other_host.write_text(json.dumps({**json.loads(other_host.read_text()), "logical_cpus": 64}))
    with pytest.raises(StoreError, match="differs in logical_cpus"):
        merge_results(sources[1:], into)


def test_the_newest_noise_json_is_kept(tmp_path):
    sources, into = shard_folders(tmp_path), tmp_path / "history"
    machine_id = MACHINE["machine_id"]
    write_noise(sources[0], noise_document(machine_id, {"name": "t"}, 3, {"a": {"latency": 0.02}},
                                           created_at="2026-11-20T00:00:00Z"))
    write_noise(sources[1], noise_document(machine_id, {"name": "t"}, 3, {"b": {"latency": 0.05}},
                                           created_at="2026-11-21T00:00:00Z"))
    merge_results(sources, into)
    assert json.loads((into / machine_id / "noise.json").read_text())["thresholds"] == {"b": {"latency": 0.05}}
    merge_results(sources[:1], into)
    assert json.loads((into / machine_id / "noise.json").read_text())["thresholds"] == {"b": {"latency": 0.05}}


def peaks_doc(**entries) -> dict:
    return {"schema_version": 1, "machine_id": MACHINE["machine_id"],
            "entries": {key: {"copy_gbps": gbps, "measured_at": f"2026-11-{day:02d}T00:00:00+00:00"}
                        for key, (gbps, day) in entries.items()}}


def test_peaks_are_merged_per_entry_keeping_the_newest_of_each(tmp_path):
    sources, into = shard_folders(tmp_path), tmp_path / "history"
    old = peaks_doc(native=(10.0, 1), avx2=(9.0, 5))
    new = peaks_doc(native=(11.0, 3), avx2=(8.0, 2), native_t2=(12.0, 3))
    for source, doc in zip(sources, (old, new)):
        (source / MACHINE["machine_id"] / "peaks.json").write_text(json.dumps(doc))
    merge_results(sources, into)
    merged = json.loads((into / MACHINE["machine_id"] / "peaks.json").read_text())
    assert merged["entries"] == {"native": new["entries"]["native"], "avx2": old["entries"]["avx2"],
                                 "native_t2": new["entries"]["native_t2"]}
    assert merge_peaks(new, old) == merge_peaks(old, new) == merged
    assert newer_document({"x": 1}, {"x": 2}, "measured_at") == {"x": 1}


def test_a_partial_file_is_merged_and_a_sealed_copy_of_the_same_run_supersedes_it(tmp_path):
    (source,) = shard_folders(tmp_path, count=1, nights=1)
    (sealed,) = run_files(source)
    partial_source = tmp_path / "killed"
    partial = partial_source / sealed.relative_to(source).parent / (sealed.name + ".partial")
    partial.parent.mkdir(parents=True)
    partial.write_text("".join(sealed.read_text().splitlines(keepends=True)[:-1]))
    into = tmp_path / "history"
    report = merge_results([source, partial_source], into)
    assert [p.name for p in report.copied] == [sealed.name] and [p.name for p in report.superseded] == [partial.name]
    reversed_order = merge_results([partial_source, source], tmp_path / "reversed")
    assert [p.name for p in reversed_order.copied] == [sealed.name]
    alone = merge_results([partial_source], tmp_path / "other")
    assert not read_run_file(alone.copied[0]).complete and alone.records == 1
    with pytest.raises(StoreError, match="holds part of the run"):
        merge_results([source], tmp_path / "other")


def test_fail_on_regression_catches_a_regression_in_any_shard_not_only_the_latest_run(tmp_path):
    into, sources = regressed_tonight(tmp_path)
    done = qbench("merge", *map(str, sources), "--into", str(into), "--fail-on-regression")
    assert done.returncode == 1, done.stdout + done.stderr
    flagged = [line for line in done.stdout.splitlines() if line.startswith("REGRESSION")]
    assert any(line.startswith("REGRESSION latency +") for line in flagged)
    assert flagged and all(INT8.case_id in line for line in flagged)  # latency and throughput of INT8 only
    assert f"verdict   {len(flagged)} regression(s) start in the merged runs" in done.stdout
    # `qbench history` alone looks at the machine's latest run, shard 2, and misses shard 1's regression.
    assert qbench("history", "--results", str(into), "--metric", "latency").returncode == 0
    report = json.loads(qbench("merge", *map(str, sources), "--into", str(into), "--fail-on-regression",
                               "--format", "json").stdout)
    assert report["copied"] == [] and report["regressions"] == []  # already merged: nothing new regressed


def test_fail_on_regression_passes_when_tonights_runs_are_flat(tmp_path):
    sources, into = shard_folders(tmp_path, count=2, nights=5), tmp_path / "history"
    done = qbench("merge", *map(str, sources), "--into", str(into), "--fail-on-regression")
    assert done.returncode == 0, done.stderr
    assert "10 run files copied (10 records)" in done.stdout
    assert "verdict   0 regression(s) start in the merged runs" in done.stdout


def identities(root: Path) -> list[tuple]:
    """Per record: case id, case version, status, reason; the run-specific ids and timings left out."""
    rows = []
    for path in run_files(root):
        run = read_run_file(path)
        assert run.complete
        rows += [(r.case_id, r.case.case_version, r.status, r.reason) for r in run.records]
    return sorted(rows)


def qbench_run(suite: Path, results: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "qbench", "run", "--suite", str(suite), "--results", str(results),
                             "--no-progress", *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


def seed_machine_files(source: Path, *targets: Path) -> None:
    """Copy the first run's machine folder files (machine.json, the measured peaks) so later runs skip probing."""
    for path in source.glob("*/*.json"):
        for target in targets:
            (target / path.parent.name).mkdir(parents=True, exist_ok=True)
            (target / path.parent.name / path.name).write_bytes(path.read_bytes())


def test_sharded_runs_merged_equal_an_unsharded_run(tmp_path):
    suite = tmp_path / "tiny.toml"
    # Two models so that both shards get one (a shard holds every case of a model: qbench.plan.shard).
    suite.write_text(TINY_SHARDS.replace('models = ["tests.tiny_models:convnet"]',
                                         'models = ["tests.tiny_models:convnet", "tests.tiny_models:convnet_wide"]'))
    finish(qbench_run(suite, tmp_path / "s1", "--shard", "1/2"))
    seed_machine_files(tmp_path / "s1", tmp_path / "s2", tmp_path / "whole")
    later = [qbench_run(suite, tmp_path / "s2", "--shard", "2/2"), qbench_run(suite, tmp_path / "whole")]
    for proc in later:
        finish(proc)
    shard_ids = [identities(tmp_path / name) for name in ("s1", "s2")]
    assert all(shard_ids) and not set(shard_ids[0]) & set(shard_ids[1])
    done = qbench("merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--into", str(tmp_path / "merged"))
    assert done.returncode == 0, done.stderr
    assert "2 run files copied (8 records)" in done.stdout
    assert identities(tmp_path / "merged") == identities(tmp_path / "whole")
    statuses = [status for _, _, status, _ in identities(tmp_path / "merged")]
    assert statuses.count("skipped") == 2 and len(statuses) == 8


def test_empty_sources_and_unknown_files_are_listed_not_merged(tmp_path):
    (source,) = shard_folders(tmp_path, count=1, nights=1)
    (source / MACHINE["machine_id"] / "notes.txt").write_text("not history")
    (tmp_path / "empty").mkdir()
    done = qbench("merge", str(source), str(tmp_path / "empty"), "--into", str(tmp_path / "history"))
    assert done.returncode == 0, done.stderr
    assert f"warning   {tmp_path / 'empty'} holds no run files" in done.stdout
    assert f"ignored   {source / MACHINE['machine_id'] / 'notes.txt'}" in done.stdout
    assert not (tmp_path / "history" / MACHINE["machine_id"] / "notes.txt").exists()
