"""Store v2: summary columns written once at compaction give the same series, frame and comparisons as the records
they summarise; store v1 files are read and rewritten without loss; the synthetic generator writes what compaction
writes."""

import dataclasses
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbench.history.columnar import compact, compacted_files
from qbench.history.series import build_series
from qbench.history.sides import ResultsFolder
from qbench.history.store import RunWriter, load_history, read_run_file, run_files
from qbench.history.synthetic import generate, load_templates
from qbench.metrics import METRICS
from qbench.records import Case
from tests.factories import FP32, INT8, MACHINE, qbench
from tests.factories import history as make_history

TEMPLATES = "tests/fixtures/records"


def write(root, runs):
    for run in runs:
        writer = RunWriter(root, MACHINE, {k: v for k, v in run.header.items() if k != "kind"})
        for record in run.records:
            writer.append(record)
        writer.finish({"run_id": run.header["run_id"], "finished_at": run.header["started_at"],
                       "interrupted": False})


@pytest.fixture
def nightly(tmp_path):
    """Ten nights where int8 latency steps up 30% in the last one, plus an fp32 parent."""
    root = tmp_path / "results"
    write(root, make_history([0.010] * 9 + [0.013], fp32_levels=[0.04] * 10))
    return root


def write_v1(path, run):
    """A run as store version 1 wrote it (identity columns and the whole record line; header and footer in the
    file metadata)."""
    names = ("run_id", "record_id", "case_id", "case_version", "model", "mode", "engine", "status", "started_at")
    rows = [(r.run_id, r.record_id, r.case.case_id, r.case.case_version, r.case.model, r.case.mode, r.case.engine,
             r.status, r.started_at) for r in run.records]
    table = pa.table({**{name: pa.array([row[i] for row in rows], pa.string()) for i, name in enumerate(names)},
                      "record": pa.array([json.dumps(r.to_dict(), sort_keys=True) for r in run.records],
                                         pa.large_string())})
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.replace_schema_metadata({
        "qbench.store_version": "1", "qbench.header": json.dumps(run.header, sort_keys=True),
        "qbench.footer": json.dumps(run.footer, sort_keys=True)}), path, compression="zstd")


def series_key(series):
    return [(s.machine_id, s.case_id, s.case_version, s.metric, s.sources, list(s.points)) for s in series]


def test_series_from_store_columns_equal_series_from_the_records(nightly):
    before = series_key(ResultsFolder(nightly).series())
    compact(nightly)
    history = ResultsFolder(nightly)
    from_columns = series_key(history.series())
    from_records = series_key(build_series([(run, r) for run in history.runs for r in run.records]))
    assert before and len(before) == len(from_columns)
    assert [s[:5] for s in from_columns] == [s[:5] for s in from_records] == [s[:5] for s in before]
    assert [[(p.value, p.rel_err, p.n, p.run_id) for p in s[5]] for s in from_columns] == \
           [[(p.value, p.rel_err, p.n, p.run_id) for p in s[5]] for s in from_records]
    assert {s[3] for s in from_columns} >= {"latency", "speedup", "compression", "size"}


def test_compare_records_extract_what_the_full_records_do(nightly):
    compact(nightly)
    for run in ResultsFolder(nightly).runs:
        light, full = run.records_for_compare(), read_run_file(run.path).records
        assert [r.record_id for r in light] == [r.record_id for r in full]
        for a, b in zip(light, full):
            assert (a.case, a.status, a.environment, a.machine, a.suite) == (b.case, b.status, b.environment,
                                                                            b.machine, b.suite)
            for metric in METRICS.values():
                assert metric.extract(a) == metric.extract(b), metric.name
                assert metric.basis is None or metric.basis(a) == metric.basis(b)


def test_a_v1_store_file_is_read_and_compact_rewrites_it_as_v2_without_loss(nightly):
    originals = {run.header["run_id"]: run for run in ResultsFolder(nightly).runs}
    frame_before = load_history(nightly)
    for path in run_files(nightly):
        run = read_run_file(path)
        write_v1(nightly / MACHINE["machine_id"] / "store" / "v1" / f"month={run.header['started_at'][:7]}" /
                 path.name.replace(".jsonl", ".parquet"), run)
        path.unlink()
    history = ResultsFolder(nightly)
    assert {run.version for run in history.runs} == {1} and not history.errors
    from_v1 = history.series(["latency"])
    from_lines = build_series([(run, r) for run in originals.values() for r in run.records], ["latency"])
    assert [[(p.value, p.rel_err, p.run_id) for p in s.points] for s in from_v1] == \
           [[(p.value, p.rel_err, p.run_id) for p in s.points] for s in from_lines] != []
    done = qbench("history", "--format", "json", "--results", str(nightly))
    assert done.returncode == 1 and json.loads(done.stdout)["regressions"], done.stderr
    written, kept = compact(nightly)
    assert len(written) == 10 and kept == []
    assert {p.parents[1].name for p in compacted_files(nightly)} == {"v2"}
    assert not list(nightly.rglob("store/v1/*/*.parquet"))
    for run in ResultsFolder(nightly).runs:
        old = originals[run.header["run_id"]]
        assert run.version == 2 and run.header == old.header and run.footer == old.footer
        assert [r.to_dict() for r in run.records] == [r.to_dict() for r in old.records]
    frame_after = load_history(nightly)
    assert frame_after["latency_median_s"].tolist() == frame_before["latency_median_s"].tolist()


def test_a_run_in_two_store_versions_is_read_once_from_the_newest(nightly):
    compact(nightly)
    path = compacted_files(nightly)[0]
    write_v1(path.parents[2] / "v1" / path.parent.name / path.name, read_run_file(path))
    assert len(run_files(nightly)) == 10
    assert {p.parents[1].name for p in run_files(nightly)} == {"v2"}


def test_a_record_of_a_v2_file_is_checked_again_when_the_rules_changed(nightly):
    (path, *_) = compact(nightly)[0]
    table = pq.read_table(path)
    rest = [json.loads(text) for text in table.column("json_rest").to_pylist()]
    rest[0]["duration_s"] = -1.0  # breaks a value rule, and the file's rules are not this qbench's
    table = table.set_column(table.column_names.index("json_rest"), "json_rest",
                             pa.array([json.dumps(r) for r in rest], pa.large_string()))
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"qbench.value_rules": b"0"}), path)
    run = read_run_file(path)
    assert len(run.records) == len(rest) - 1
    assert "duration_s" in str(run.rejected[0]) and f"{path}:row 1" in str(run.rejected[0])


def test_the_synthetic_generator_writes_what_compaction_writes(tmp_path):
    plan = [(Case.from_dict(case.to_dict()), None) for case in (FP32, INT8)]
    templates = load_templates(TEMPLATES)
    generate(tmp_path / "direct", plan, templates, 2, repeat=2, store="parquet")
    generate(tmp_path / "lines", plan, templates, 2, repeat=2, store="jsonl")
    compact(tmp_path / "lines")
    direct, compacted = compacted_files(tmp_path / "direct"), compacted_files(tmp_path / "lines")
    assert [p.name for p in direct] == [p.name for p in compacted] and len(direct) == 2
    for a, b in zip(direct, compacted):
        assert pq.read_table(a).equals(pq.read_table(b))
        assert pq.read_schema(a).metadata == pq.read_schema(b).metadata


def test_history_report_and_shard_costs_read_a_mixed_folder(nightly, tmp_path):
    compact(nightly)
    run = make_history([0.010], fp32_levels=[0.04])[0]
    run_id = "e" * 32  # one more run, left as JSON lines next to the compacted ones
    writer = RunWriter(nightly, MACHINE, {**{k: v for k, v in run.header.items() if k != "kind"}, "run_id": run_id,
                                          "started_at": "2026-12-30T03:00:00.000000Z"})
    for record in run.records:
        writer.append(dataclasses.replace(record, run_id=run_id))
    writer.finish({"run_id": run_id, "finished_at": "2026-12-30T04:00:00.000000Z", "interrupted": False})
    frame = load_history(nightly, columns=["case_id", "status", "duration_s", "file"])
    assert list(frame.columns) == ["case_id", "status", "duration_s", "file"]
    assert {name.rsplit(".", 1)[-1] for name in frame["file"]} == {"jsonl", "parquet"}
    from qbench.plan.shard import expected_costs

    costs = expected_costs(nightly, MACHINE["machine_id"])
    assert set(costs) == {FP32.case_id, INT8.case_id} and all(v >= 0 for v in costs.values())
    done = qbench("report", "--results", str(nightly), "--out", str(tmp_path / "report"))
    assert done.returncode == 0, done.stderr


def test_replayed_nights_are_new_runs_with_their_own_identity(tmp_path):
    from qbench.history.synthetic import replay

    plan = [(Case.from_dict(case.to_dict()), None) for case in (FP32, INT8)]
    generate(tmp_path, plan, load_templates(TEMPLATES), 2, repeat=2, store="parquet")
    assert len(replay(tmp_path, 5)) == 3
    history = ResultsFolder(tmp_path)
    assert len(history.runs) == 5 and not history.errors
    runs = [run.header["run_id"] for run in history.runs]
    records = [r for run in history.runs for r in run.records]
    assert len(set(runs)) == 5 and len({r.record_id for r in records}) == len(records) == 5 * 4
    for run in history.runs:
        assert {r.run_id for r in run.records} == {run.header["run_id"]}
        assert {r.started_at[:10] for r in run.records} == {run.header["started_at"][:10]}
        assert {r.environment["torch"] for r in run.records} == {f"2.13.0.dev{run.header['started_at'][:10]}+cpu"
                                                                 .replace("-", "")}
    latency = [s for s in history.series(["latency"]) if s.case_id == INT8.case_id]
    assert len(latency[0].points) == 5
