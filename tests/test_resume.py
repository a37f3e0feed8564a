"""`qbench run --resume`: a run killed with kill -9 (or interrupted) is continued in its own file with only its missing
cases; readers see one run; a different suite, options or environment is refused in one line (exit 2)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from qbench.history.sides import ResultsFolder, resolve_side
from qbench.history.store import read_run_file
from tests.factories import ROOT, one_line_error, qbench, tiny_suite_text

# The tiny suite on x86 only: fp32, dynamic and static_fx run; static_eager is skipped (the model is not
# quantizable eagerly). Four cases.
SUITE = tiny_suite_text(engines=("x86",))


def start_run(suite, results, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "qbench", "run", "--suite", str(suite), "--results", str(results),
                             "--no-progress", "--no-peaks", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT, start_new_session=True)


def kill_after_cases(process, results, cases: int, timeout: float = 300.0):
    """kill -9 the whole qbench process group once its run file holds `cases` records."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(results.rglob("*.jsonl.partial"))
        if found and found[0].read_text().count('"kind": "case"') >= cases:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=60)
            return found[0]
        if process.poll() is not None:
            raise AssertionError(f"the run ended before it was killed: {process.stderr.read()}")
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError("the run never wrote its cases")


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(SUITE)
    return path


def case_lines(path):
    return [json.loads(x) for x in path.read_text().splitlines() if '"kind": "case"' in x]


def test_kill_9_then_resume_measures_only_the_missing_cases_in_the_same_file(suite, tmp_path):
    results = tmp_path / "results"
    process = start_run(suite, results, "--repeat", "2")
    partial = kill_after_cases(process, results, 2)
    before = case_lines(partial)
    # A torn last line, as a kill in the middle of a write leaves it.
    with open(partial, "a") as handle:
        handle.write('{"kind": "case", "run_id": "tor')

    done = qbench("run", "--suite", str(suite), "--results", str(results), "--no-progress", "--no-peaks",
                  "--repeat", "2", "--resume")
    assert done.returncode == 0, done.stderr
    assert f"resuming  {partial} ({len(before)} records kept)" in done.stderr
    sealed = partial.with_name(partial.name[:-len(".partial")])
    assert not partial.exists() and sealed.is_file()
    assert list(results.rglob("*.jsonl*")) == [sealed]
    run = read_run_file(sealed)
    assert run.complete and not run.rejected
    assert {r.run_id for r in run.records} == {run.header["run_id"]}
    keys = [(r.case.case_id, r.worker.get("repeat")) for r in run.records]
    assert len(keys) == len(set(keys)) == run.header["planned_cases"] * 2 - 1  # the skipped case is recorded once
    assert [line["record_id"] for line in case_lines(sealed)[:len(before)]] == [b["record_id"] for b in before]
    assert run.footer["resumed"][0]["kept"] == len(before)
    assert sum(run.footer["counts"].values()) == len(run.records)
    side = resolve_side("latest", ResultsFolder(results))
    assert len(side.runs) == 1 and len(side.records) == len(run.records)


def test_an_interrupted_run_is_resumed_and_sealed_again(suite, tmp_path):
    results = tmp_path / "results"
    process = start_run(suite, results)
    kill_after_cases(process, results, 1)
    (partial,) = results.rglob("*.partial")
    # Seal it as SIGTERM does, so that it reads as an interrupted run rather than a killed one.
    lines = partial.read_text()
    run_id = json.loads(lines.splitlines()[0])["run_id"]
    sealed = partial.with_name(partial.name[:-len(".partial")])
    sealed.write_text(lines + json.dumps({"kind": "run_end", "schema_version": 1, "run_id": run_id,
                                          "finished_at": "2026-12-03T00:00:00Z", "interrupted": True,
                                          "counts": {}}) + "\n")
    partial.unlink()
    done = qbench("run", "--suite", str(suite), "--results", str(results), "--no-progress", "--no-peaks",
                  "--resume", run_id[:8])
    assert done.returncode == 0, done.stderr
    run = read_run_file(sealed)
    assert run.complete and run.footer["interrupted"] is False
    assert [line["kind"] for line in map(json.loads, sealed.read_text().splitlines())].count("run_end") == 1
    assert len(run.records) == run.header["planned_cases"]


def test_resume_refuses_another_suite_or_options_in_one_line(suite, tmp_path):
    results = tmp_path / "results"
    kill_after_cases(start_run(suite, results), results, 1)
    other = tmp_path / "other.toml"
    other.write_text(SUITE.replace("min_rounds = 3", "min_rounds = 4"))
    other_suite = qbench("run", "--suite", str(other), "--results", str(results), "--no-peaks", "--resume")
    assert other_suite.returncode == 2
    assert "qbench: error: --resume latest: no killed or interrupted run of suite tiny" not in other_suite.stderr
    assert "cannot resume" in one_line_error(other_suite) and "the suite file differs" in one_line_error(other_suite)
    filtered = qbench("run", "--suite", str(suite), "--results", str(results), "--no-peaks", "--resume",
                      "--filter", "*fp32*")
    assert filtered.returncode == 2 and "--filter differs" in one_line_error(filtered)
    assert len(list(results.rglob("*.partial"))) == 1 and not list(results.rglob("*.jsonl"))


def test_resume_with_nothing_to_resume_is_bad_input(suite, tmp_path):
    done = qbench("run", "--suite", str(suite), "--results", str(tmp_path / "none"), "--no-peaks", "--resume")
    assert done.returncode == 2
    assert "no killed or interrupted run of suite tiny" in one_line_error(done)
