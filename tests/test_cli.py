"""The command line end to end, as a user runs it: output, history files and documented exit codes."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.factories import ROOT, one_line_error, qbench, tiny_suite_text


def test_run_writes_history_and_prints_the_ratio_table(tiny_suite, tmp_path):
    results = tmp_path / "results"
    done = qbench("run", "--suite", str(tiny_suite), "--results", str(results), "--no-progress")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "RANDOM-INIT WEIGHTS" in out
    assert "x86 size×" in out and "qnnpack speed×" in out
    assert "skipped  tests.tiny_models:convnet/static_eager/x86/b1/t1/random: tests.tiny_models:convnet has no " \
           "quantizable variant" in out
    (path,) = results.rglob("*.jsonl")
    assert f"history   {path} (7 records)" in out
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    cases = [line for line in lines if line["kind"] == "case"]
    assert [c["status"] for c in cases].count("ok") == 5
    ok = next(c for c in cases if c["case_id"].endswith("static_fx/x86/b1/t1/random"))
    assert ok["details"]["weights"]["kind"] == "random"
    assert ok["details"]["qconfig"]["activation"]["reduce_range"] is True
    assert ok["metrics"]["size"]["modules_quantized"] >= 3
    assert len(ok["metrics"]["latency"]["samples"]) >= 3
    assert ok["environment"]["quantized_engine"] == "x86"
    assert ok["environment"]["num_threads"] == 1
    assert ok["machine"]["machine_id"] == path.parts[-4]
    assert lines[-1]["kind"] == "run_end" and lines[-1]["counts"] == {"ok": 5, "skipped": 2}


def test_list_shows_cases_and_skip_reasons_without_measuring(tiny_suite, tmp_path):
    done = qbench("list", "--suite", str(tiny_suite), "--filter", "*x86*", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "tests.tiny_models:convnet/static_fx/x86/b1/t1/random" in done.stdout
    assert "skip: tests.tiny_models:convnet has no quantizable variant" in done.stdout
    assert "qnnpack/b1" not in done.stdout
    assert not (tmp_path / "results").exists()


def test_list_json_is_one_object_per_case(tiny_suite):
    done = qbench("list", "--suite", str(tiny_suite), "--json")
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 7 and {"case_id", "case_version", "case", "skip_reason"} <= set(rows[0])


@pytest.mark.parametrize("args, message", [
    (("run", "--suite", "no-such-suite"), "unknown suite 'no-such-suite'; known suites:"),
    (("list", "--suite", "smoke", "--filter", "nothing*"), "--filter nothing* matches no case of suite smoke"),
    (("run", "--suite", "quick", "--machine", "../evil"), "machine name"),
    (("frobnicate",), "invalid choice: 'frobnicate'"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    done = qbench(*args)
    assert done.returncode == 2
    assert message in one_line_error(done)


def test_typo_in_a_suite_file_exits_2(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text(tiny_suite_text().replace("modes =", "mode ="))
    done = qbench("run", "--suite", str(path))
    assert done.returncode == 2
    assert "unknown key 'mode'" in one_line_error(done)


def test_unknown_model_exits_2_with_suggestion(tmp_path):
    path = tmp_path / "unknown.toml"
    path.write_text(tiny_suite_text().replace('"tests.tiny_models:convnet"', '"resnet81"'))
    done = qbench("list", "--suite", str(path))
    assert done.returncode == 2
    assert "model 'resnet81' matches no model; did you mean resnet18" in one_line_error(done)


def test_unknown_custom_factory_exits_2(tmp_path):
    path = tmp_path / "factory.toml"
    path.write_text(tiny_suite_text().replace("tests.tiny_models:convnet", "tests.tiny_models:nothing"))
    done = qbench("list", "--suite", str(path))
    assert done.returncode == 2
    assert "tests.tiny_models:nothing" in one_line_error(done)


def test_corrupt_machine_record_exits_3_and_is_left_alone(tiny_suite, tmp_path):
    machine_id = json.loads(qbench("machine", "--json").stdout)["machine_id"]
    folder = tmp_path / "results" / machine_id
    folder.mkdir(parents=True)
    (folder / "machine.json").write_text("{not json")
    done = qbench("run", "--suite", str(tiny_suite), "--results", str(tmp_path / "results"))
    assert done.returncode == 3
    assert "machine.json: unreadable machine record" in one_line_error(done)
    assert (folder / "machine.json").read_text() == "{not json"


def test_fail_on_error_exits_3_when_a_case_failed(tmp_path):
    path = tmp_path / "failing.toml"
    path.write_text(tiny_suite_text().replace("timeout_s = 120.0", "timeout_s = 120.0\n[run]\nmemory_limit_gb = 0.05"))
    done = qbench("run", "--suite", str(path), "--results", str(tmp_path / "r"), "--fail-on-error",
                  "--filter", "*fp32*")
    assert done.returncode == 3, done.stderr
    assert "failed" in done.stdout


def test_machine_prints_the_fingerprint():
    done = qbench("machine")
    assert done.returncode == 0
    assert done.stdout.startswith("machine  ") and "isa" in done.stdout


def test_sigterm_seals_the_run_with_what_it_finished(tmp_path):
    path = tmp_path / "slow.toml"
    path.write_text(tiny_suite_text().replace("tests.tiny_models:convnet", "tests.tiny_models:slow")
                    .replace("min_time_s = 0.05", "min_time_s = 5.0").replace("min_rounds = 3", "min_rounds = 1"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "qbench", "run", "--suite", str(path), "--results",
                                str(tmp_path / "r")], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                               env=env, cwd=ROOT)
    line = process.stderr.readline()
    while line and not line.startswith("[1/"):
        line = process.stderr.readline()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    (sealed,) = (tmp_path / "r").rglob("*.jsonl")
    lines = [json.loads(x) for x in sealed.read_text().splitlines()]
    assert lines[-1]["kind"] == "run_end" and lines[-1]["interrupted"] is True
    assert sum(1 for x in lines if x["kind"] == "case") >= 1
    assert not list((tmp_path / "r").rglob("*.partial"))


def test_repeat_runs_each_case_in_separate_processes_in_rounds(tiny_suite, tmp_path):
    done = qbench("run", "--suite", str(tiny_suite), "--results", str(tmp_path / "r"), "--repeat", "2",
                  "--filter", "*x86*", "--no-progress")
    assert done.returncode == 0, done.stderr
    (path,) = (tmp_path / "r").rglob("*.jsonl")
    cases = [json.loads(x) for x in path.read_text().splitlines() if '"kind": "case"' in x]
    runnable = [c for c in cases if c["status"] == "ok"]
    assert [(c["case"]["mode"], c["worker"]["repeat"]) for c in runnable] == [
        ("dynamic", 0), ("static_fx", 0), ("dynamic", 1), ("static_fx", 1)]
    assert len({c["worker"]["pid"] for c in runnable}) == 4
    assert sum(1 for c in cases if c["status"] == "skipped") == 1
    assert f"({len(cases)} records)" in done.stdout
