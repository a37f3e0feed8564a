"""The columnar store: compacting loses nothing, and a folder of compacted, JSON-lines and killed runs reads as one
history through every reader."""

import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbench.history.columnar import compact, compacted_files, scan
from qbench.history.sides import ResultsFolder
from qbench.history.store import RunWriter, load_history, read_run_file, run_files
from tests.factories import MACHINE
from tests.factories import history as make_history
from tests.factories import one_line_error, qbench, write_runs


def write(root, runs):
    paths = []
    for run in runs:
        writer = RunWriter(root, MACHINE, {k: v for k, v in run.header.items() if k != "kind"})
        for record in run.records:
            writer.append(record)
        paths.append(writer.finish({"run_id": run.header["run_id"], "finished_at": run.header["started_at"],
                                    "interrupted": False}))
    return paths


@pytest.fixture
def nightly(tmp_path):
    """Ten nights where int8 latency steps up 30% in the last one, plus an fp32 parent."""
    root = tmp_path / "results"
    write(root, make_history([0.010] * 9 + [0.013], fp32_levels=[0.04] * 10))
    return root


def without_paths(text: str) -> str:
    return re.sub(r'"file": "[^"]*"', '"file": ""', text)


def test_compacting_round_trips_every_record_header_and_footer(nightly):
    before = {p.name[:-len(".jsonl")]: read_run_file(p) for p in run_files(nightly)}
    written, kept = compact(nightly)
    assert len(written) == 10 and kept == []
    assert not list(nightly.rglob("*.jsonl")) and len(compacted_files(nightly)) == 10
    for path in written:
        run = read_run_file(path)
        old = before[path.name[:-len(".parquet")]]
        assert run.header == old.header and run.footer == old.footer and run.complete
        assert [r.to_dict() for r in run.records] == [r.to_dict() for r in old.records]
    assert re.fullmatch(r"month=2026-11", written[0].parent.name) and written[0].parents[1].name == "v2"


def test_readers_give_the_same_answers_before_and_after_compaction(nightly, tmp_path):
    commands = [("history", "--format", "json"), ("compare", "latest~1", "latest", "--format", "json"),
                ("claims", "--format", "json")]
    before = [qbench(*c, "--results", str(nightly)) for c in commands]
    frame_before = load_history(nightly)
    compact(nightly)
    after = [qbench(*c, "--results", str(nightly)) for c in commands]
    for old, new in zip(before, after):
        assert (old.returncode, without_paths(old.stdout)) == (new.returncode, without_paths(new.stdout))
    assert before[0].returncode == 1  # the step in the latest run is found from the compacted runs too
    frame_after = load_history(nightly)
    assert len(frame_after) == len(frame_before)
    assert frame_after["latency_median_s"].tolist() == frame_before["latency_median_s"].tolist()
    report = qbench("report", "--results", str(nightly), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr


def test_a_folder_of_compacted_json_lines_and_killed_runs_reads_as_one_history(tmp_path):
    root = tmp_path / "results"
    runs = make_history([0.010] * 6)
    write(root, runs[:4])
    compact(root)
    write(root, runs[4:5])
    killed = RunWriter(root, MACHINE, {k: v for k, v in runs[5].header.items() if k != "kind"})
    killed.append(runs[5].records[0])
    kinds = sorted(p.name.split(".", 1)[1] for p in run_files(root))
    assert kinds == ["jsonl", "jsonl.partial"] + ["parquet"] * 4
    history = ResultsFolder(root)
    assert len(history.runs) == 6 and not history.errors
    assert sum(len(r.records) for r in history.runs) == sum(len(r.records) for r in runs[:5]) + 1
    done = qbench("compare", "latest~4", "latest", "--results", str(root))
    assert done.returncode == 0, done.stderr


def test_a_run_left_as_json_lines_beside_its_parquet_is_read_once(nightly):
    (path, *_) = run_files(nightly)
    text = path.read_text()
    compact(nightly)
    path.write_text(text)  # as if compaction had stopped between writing the Parquet file and removing this one
    assert len(run_files(nightly)) == 10 and len(ResultsFolder(nightly).runs) == 10


def test_only_finished_valid_runs_are_compacted(tmp_path):
    root = tmp_path / "results"
    bad = write_runs(root, 2, lambda night, record: {**record.metrics, "size": {"state_dict_bytes": 0}}
                     if night == 0 and record.case.mode == "fp32" else record.metrics)[0]
    killed = RunWriter(root, MACHINE, {"run_id": "f" * 32, "started_at": "2026-11-20T00:00:00.000000Z",
                                       "suite": {"name": "t"}, "machine": MACHINE, "qbench": {}})
    done = qbench("compact", "--results", str(root))
    assert done.returncode == 3
    assert "compacted 1 run " in done.stdout
    assert f"{bad}: not compacted: {bad}:2: record" in one_line_error(done)
    assert bad.exists() and killed.partial_path.exists()


def test_a_store_file_of_a_newer_version_is_refused_by_name(nightly):
    (path, *_) = compact(nightly)[0]
    table = pq.read_table(path)
    metadata = {**table.schema.metadata, b"qbench.store_version": b"9"}
    pq.write_table(table.replace_schema_metadata(metadata), path)
    done = qbench("history", "--results", str(nightly))
    assert done.returncode in (1, 3)
    assert f"{path}: written by a store of version 9" in done.stderr and "upgrade qbench" in done.stderr


def test_a_broken_store_file_is_named_and_the_rest_read(nightly):
    (path, *_) = compact(nightly)[0]
    path.write_bytes(b"PAR1 not really")
    done = qbench("compare", "latest~1", "latest", "--results", str(nightly))
    assert done.returncode in (1, 3) and "Traceback" not in done.stderr
    assert f"qbench: error: {path}: cannot read" in done.stderr


def test_scan_reads_only_the_columns_it_names(nightly):
    compact(nightly)
    table = scan(nightly, ["case_id", "status"], mode="fp32")
    assert table.column_names == ["case_id", "status"]
    assert set(table.column("case_id").to_pylist()) == {"resnet18/fp32/-/b1/t1/random"}
    assert isinstance(table, pa.Table) and table.num_rows == 10  # one fp32 process a night


def test_merge_copies_compacted_runs(nightly, tmp_path):
    compact(nightly)
    done = qbench("merge", str(nightly), "--into", str(tmp_path / "merged"))
    assert done.returncode == 0, done.stderr
    assert len(compacted_files(tmp_path / "merged")) == 10
    assert len(ResultsFolder(tmp_path / "merged").runs) == 10
    assert "ignored" not in done.stdout.lower() or "store" not in done.stdout
