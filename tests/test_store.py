"""History files: sealed atomically, a killed run keeps what it finished, corrupt and newer files are named."""

import re
import json
import os
import signal
import subprocess
import sys

import pytest

from qbench.errors import InfraError, SchemaVersionError, StoreError
from qbench.history.store import ensure_machine, iter_records, load_history, read_run_file, run_files
from tests.factories import MACHINE, make_case, make_record, write_run

HEADER = {"run_id": "0123456789abcdef", "started_at": "2026-11-22T10:00:00.000000Z", "suite": {"name": "t"},
          "machine": MACHINE, "qbench": {"commit": "c" * 40}}


def test_finished_run_is_one_sealed_file(tmp_path):
    path = write_run(tmp_path, [make_record(), make_record(make_case(engine="qnnpack"))])
    assert path.name.endswith(".jsonl") and path.exists()
    assert not list(tmp_path.rglob("*.partial"))
    assert path.parent.parent.parent.name == MACHINE["machine_id"]
    assert path.name.startswith("20261122T100000Z_cccccccc_")
    run = read_run_file(path)
    assert run.complete and len(run.records) == 2
    assert json.loads((tmp_path / MACHINE["machine_id"] / "machine.json").read_text())["cpu_model"] == "Test CPU"


def test_unfinished_run_keeps_its_records_and_says_so(tmp_path):
    path = write_run(tmp_path, [make_record()], finish=False)
    assert path.name.endswith(".jsonl.partial")
    run = read_run_file(path)
    assert not run.complete and len(run.records) == 1


def test_torn_last_line_of_an_interrupted_run_is_ignored(tmp_path):
    path = write_run(tmp_path, [make_record(), make_record()], finish=False)
    with open(path, "a") as handle:
        handle.write('{"kind": "case", "run_id": "tor')
    with pytest.warns(UserWarning, match="torn last line"):
        run = read_run_file(path)
    assert len(run.records) == 2


def test_corrupt_sealed_file_is_named(tmp_path):
    path = write_run(tmp_path, [make_record()])
    path.write_text(path.read_text().replace('"kind": "case"', '"kind": "case', 1))
    with pytest.raises(StoreError, match=rf"{path.name}:2: corrupt line"):
        read_run_file(path)


def test_newer_schema_is_refused_with_advice(tmp_path):
    path = write_run(tmp_path, [make_record()])
    lines = path.read_text().splitlines()
    first = json.loads(lines[0]) | {"schema_version": 99}
    path.write_text("\n".join([json.dumps(first)] + lines[1:]) + "\n")
    with pytest.raises(SchemaVersionError, match="newer than this qbench reads.*upgrade qbench"):
        read_run_file(path)


def test_one_bad_file_does_not_hide_the_others(tmp_path):
    good = write_run(tmp_path, [make_record()])
    bad = write_run(tmp_path, [make_record()])
    bad.write_text("not json\n")
    errors = []
    records = list(iter_records(tmp_path, errors))
    assert len(records) == 1 and records[0][0].path == good
    assert len(errors) == 1 and bad.name in str(errors[0])
    with pytest.raises(StoreError):
        list(iter_records(tmp_path))


def test_machine_folder_refuses_another_machine(tmp_path):
    ensure_machine(tmp_path, MACHINE)
    with pytest.raises(InfraError, match="describes another machine .*isa"):
        ensure_machine(tmp_path, MACHINE | {"isa": ["neon"]})
    ensure_machine(tmp_path, MACHINE | {"hostname": "other"})


def test_history_dataframe_has_derived_columns(tmp_path):
    write_run(tmp_path, [make_record(samples=[0.010, 0.020, 0.030]), make_record(status="skipped")])
    write_run(tmp_path, [make_record(make_case(batch_size=8), samples=[0.080])], finish=False)
    frame = load_history(tmp_path)
    assert len(frame) == 3
    ok = frame[(frame.status == "ok") & (frame.batch_size == 1)].iloc[0]
    assert ok.latency_median_s == pytest.approx(0.020)
    assert ok.latency_iqr_s == pytest.approx(0.010)
    assert ok.throughput_ips == pytest.approx(50.0)
    assert ok.size_bytes == 1000 and ok.machine_id == MACHINE["machine_id"] and ok.torch == "2.13.0+cpu"
    assert frame[frame.batch_size == 8].iloc[0].throughput_ips == pytest.approx(100.0)
    assert set(frame.run_complete) == {True, False}
    assert str(frame.started_at.dtype).startswith("datetime64")
    assert frame[frame.status == "skipped"].iloc[0].latency_n == 0


def test_empty_history_is_an_empty_frame(tmp_path):
    assert load_history(tmp_path).empty
    assert run_files(tmp_path / "missing") == []


WRITER = """
import sys, time
sys.path.insert(0, {root!r})
from qbench.history.store import RunWriter
from tests.factories import MACHINE, make_record
import tests.test_store as t
writer = RunWriter(sys.argv[1], MACHINE, t.HEADER)
for i in range(1000):
    writer.append(make_record())
    print(i, flush=True)
    time.sleep(0.01)
"""


def test_killed_writer_leaves_no_half_written_sealed_file(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.Popen([sys.executable, "-c", WRITER.format(root=root), str(tmp_path)],
                               stdout=subprocess.PIPE, text=True)
    for _ in range(5):
        process.stdout.readline()
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not [p for p in tmp_path.rglob("*.jsonl")]
    (partial,) = tmp_path.rglob("*.jsonl.partial")
    run = read_run_file(partial)
    assert len(run.records) >= 5 and not run.complete


def test_an_edited_record_is_named_with_its_file_and_line(tmp_path):
    path = write_run(tmp_path, [make_record()])
    path.write_text(path.read_text().replace('"batch_size": 1', '"batch_size": 2', 1))
    run = read_run_file(path)  # left out and named, the rest of the file still read (issue 10)
    (problem,) = run.rejected
    assert run.records == [] and isinstance(problem, StoreError)
    assert re.search(rf"{path.name}:2: record .* left out: .*case_version", str(problem))
