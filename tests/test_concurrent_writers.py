"""Two real `qbench run` processes writing into one results folder at the same time lose nothing."""

import json
import os
import subprocess
import sys

from qbench.history.store import iter_records, load_history, read_run_file
from tests.factories import ROOT, tiny_suite_text


def test_two_runs_into_one_folder_at_once_keep_every_record(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite_text())
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "qbench", "run", "--suite", str(suite), "--results", str(results),
               "--filter", "*/x86/*", "--filter", "*fp32*", "--repeat", "2"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                  cwd=ROOT) for _ in range(2)]
    outputs = [p.communicate(timeout=600) for p in processes]
    assert [p.returncode for p in processes] == [0, 0], [err for _, err in outputs]

    files = sorted(results.rglob("*.jsonl"))
    assert len(files) == 2 and not list(results.rglob("*.partial")) and not list(results.rglob("*.tmp"))
    runs = [read_run_file(path) for path in files]
    assert all(run.complete for run in runs)
    first, second = sorted(runs, key=lambda run: run.header["started_at"])
    assert second.header["started_at"] < first.footer["finished_at"], "the two runs did not overlap"
    assert len({run.header["run_id"] for run in runs}) == 2
    for run in runs:
        # 3 runnable cases (fp32, dynamic, static_fx on x86) × 2 repeats, 1 skipped (static_eager), as counted.
        assert len(run.records) == 7
        assert run.footer["counts"] == {"ok": 6, "skipped": 1}
        assert {r.run_id for r in run.records} == {run.header["run_id"]}
        for line in run.path.read_text().splitlines():
            json.loads(line)
    errors = []
    assert len(list(iter_records(results, errors))) == 14 and errors == []
    frame = load_history(results)
    assert frame.groupby("run_id").size().tolist() == [7, 7]
    assert len(set(frame["record_id"])) == 14
    machine = json.loads((files[0].parents[2] / "machine.json").read_text())
    assert machine["machine_id"] == files[0].parts[-4]
    assert all("(7 records)" in out for out, _ in outputs)
    assert {out.split("history   ")[1].split(" ")[0] for out, _ in outputs} == {str(p) for p in files}
