"""`qbench compare` end to end: exit codes 0/1/2/3 on history written with RunWriter and on a real tiny run,
one-line errors with candidates, and a corrupt file named while the rest is still compared."""

import hashlib
import json

import pytest

from tests.factories import MACHINE, make_case, make_record, one_line_error, qbench, tiny_suite_text, write_run

CASE = make_case()
OTHER = make_case(model="mobilenet_v2")
COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def record(median, *, case=CASE, suite=None, commit=COMMIT_A, **overrides):
    samples = [median * (1 + 0.01 * (i - 10) / 10) for i in range(21)]
    metrics = {"latency": {"unit": "s", "samples": samples, "loops": 1, "warmup_rounds": 1},
               "size": {"state_dict_bytes": 1000}, "memory": {"unit": "bytes", "peak_rss_run": 300e6}}
    return make_record(case, metrics=metrics, suite=suite or {"name": "t"},
                       qbench={"version": "0.1.0", "commit": commit, "dirty": False}, **overrides)


PROCESSES = 5  # a single process a side cannot show a 30% change on a noisy VM (qbench.stats.significance)


def processes(median, **kwargs):
    return [record(median * (1 + 0.001 * i), **kwargs) for i in range(PROCESSES)]


@pytest.fixture
def history(tmp_path):
    """Base run (commit a…) and a candidate run (commit b…) where OTHER got 30% slower, 5 processes a case."""
    root = tmp_path / "results"
    write_run(root, processes(0.010) + processes(0.020, case=OTHER), run_id="1111aaaa" + "0" * 24,
              started_at="2026-11-20T10:00:00.000000Z", commit=COMMIT_A)
    write_run(root, processes(0.010, commit=COMMIT_B) + processes(0.026, case=OTHER, commit=COMMIT_B),
              run_id="2222bbbb" + "0" * 24, started_at="2026-11-21T10:00:00.000000Z", commit=COMMIT_B)
    return root


def steady_runs(root, count=8, per_case=PROCESSES, suite=None):
    """`count` earlier runs of both cases (another commit, 0.5% apart): a history from which compare measures
    this machine's run-to-run noise (qbench.compare.noise_model.run_noise), so that a 30% change becomes detectable."""
    for index in range(count):
        drift = 1 + 0.005 * (-1) ** index
        records = [record(median * drift * (1 + 0.001 * i), case=case, commit="9" * 40, suite=suite)
                   for case, median in ((CASE, 0.010), (OTHER, 0.020)) for i in range(per_case)]
        write_run(root, records, run_id=f"{index:04d}eeee" + "0" * 24, started_at=f"2026-11-1{index}T10:00:00.000000Z",
                  commit="9" * 40, suite=suite)
    return root


@pytest.fixture
def steady(history):
    """`history` after eight steady runs."""
    return steady_runs(history)


def compare(root, *args, cwd=None):
    return qbench("compare", *args, "--results", str(root), cwd=cwd)


def test_a_run_against_itself_exits_0(history, tmp_path):
    done = compare(history, "1111aaaa", "latest~1", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    counts = document["counts"]
    assert counts["regressed"] == counts["improved"] == 0 and document["regressed"] is False
    assert counts["unchanged"] + counts["undetectable"] == 6
    latency = [row for row in document["comparisons"] if row["metric"] == "latency"]
    assert len(latency) == 2 and all(row["test"]["detectable"] > 0 for row in latency)


def test_a_regression_exits_1_and_the_table_says_why(steady, tmp_path):
    done = compare(steady, "latest~1", "latest", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "base       latest~1 = run 1111aaaa (t, aaaaaaaa, 2026-11-20 10:00)"
    assert "differs    qbench.commit: " + COMMIT_A + " → " + COMMIT_B in lines
    row = next(line for line in lines if line.startswith("regressed"))
    assert OTHER.case_id in row and "latency" in row and "1.300" in row and "+30.0%, beyond 10% (default)" in row
    assert lines[-1] == "1 regressed, 0 improved, 0 incomparable, 0 missing, 0 undetectable, 5 unchanged"
    assert "detectable ±" in row and "consecutive runs of the case in history" in row
    assert done.stderr == ""


def test_without_history_a_30_percent_change_between_two_runs_is_undetectable(history, tmp_path):
    done = compare(history, "latest~1", "latest", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    row = next(line for line in done.stdout.splitlines() if line.startswith("undetectable") and OTHER.case_id in line)
    assert "+30.0%, not significant; detectable ±" in row and "run-to-run 8.0%, default" in row


def test_commit_prefixes_and_a_command_line_threshold(steady, tmp_path):
    done = compare(steady, "aaaaaa", "bbbbbb", "--threshold", "latency:40%", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "within 40% (command line)" in done.stdout


def test_markdown_for_a_pull_request(steady, tmp_path):
    done = compare(steady, "aaaaaa", "bbbbbb", "--format", "markdown", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout.startswith("### qbench compare\n\n**Base:** commit aaaaaaaaaaaa (1 run)  \n")
    assert "#### Regressed (1)" in done.stdout and "<details><summary>Unchanged (5)</summary>" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["nosuchrun", "latest"], "qbench: error: unknown run, commit or folder 'nosuchrun' under "),
    (["latest~5", "latest"], "qbench: error: latest~5: there are only 2 complete runs under "),
    (["latest~1", "latest", "--threshold", "latncy:5%"],
     "qbench: error: threshold 'latncy:5%': unknown metric 'latncy'; allowed: latency, throughput, memory, size"),
    (["latest~1", "latest", "--noise", "/nonexistent/noise.json"],
     "qbench: error: --noise /nonexistent/noise.json: no such file"),
])
def test_bad_input_exits_2_with_one_line(history, tmp_path, args, message):
    done = compare(history, *args, cwd=tmp_path)
    assert done.returncode == 2
    line = one_line_error(done)
    assert line.startswith(message)
    assert len(done.stderr.strip().splitlines()) == 1
    if "recent runs" in line:
        assert "2222bbbb (t, bbbbbbbb, 2026-11-21 10:00); 1111aaaa (t, aaaaaaaa, 2026-11-20 10:00)" in line


def test_bad_format_is_a_usage_error(history):
    done = compare(history, "latest~1", "latest", "--format", "html")
    assert done.returncode == 2 and "invalid choice: 'html'" in done.stderr


def corrupt(path):
    path.write_text(path.read_text() + "{not json\n")


def test_a_corrupt_file_is_named_the_rest_compared_and_exit_is_3(history, tmp_path):
    write_run(history, [record(0.5)], run_id="3333cccc" + "0" * 24, started_at="2026-11-19T10:00:00.000000Z",
              commit=COMMIT_A)
    bad = next(history.rglob("*3333cccc.jsonl"))
    corrupt(bad)
    done = compare(history, "latest~1", "latest", "--threshold", "latency:50%", cwd=tmp_path)
    assert done.returncode == 3, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"qbench: error: {bad}:") and "corrupt line" in line
    assert "0 regressed, 0 improved, 0 incomparable, 0 missing, 2 undetectable, 4 unchanged" in done.stdout
    assert f"unreadable {bad}:" in done.stdout


def test_a_regression_outranks_a_corrupt_file(steady, tmp_path):
    history = steady
    write_run(history, [record(0.5)], run_id="3333cccc" + "0" * 24, started_at="2026-11-19T10:00:00.000000Z",
              commit=COMMIT_A)
    bad = next(history.rglob("*3333cccc.jsonl"))
    corrupt(bad)
    done = compare(history, "latest~1", "latest", "--format", "json", cwd=tmp_path)
    assert done.returncode == 1
    assert str(bad) in done.stderr
    document = json.loads(done.stdout)
    assert document["regressed"] and str(bad) in document["unreadable"][0]


def test_suite_file_thresholds_of_the_candidate_apply(tmp_path):
    suite_path = tmp_path / "gate.toml"
    suite_path.write_text('[suite]\nname = "gate"\n[[matrix]]\nmodels = ["resnet18"]\nmodes = ["fp32"]\n'
                          '[thresholds]\nlatency = "40%"\n')
    suite = {"name": "gate", "path": str(suite_path), "sha256": hashlib.sha256(suite_path.read_bytes()).hexdigest()}
    root = steady_runs(tmp_path / "results", suite=suite)
    write_run(root, processes(0.010, suite=suite), run_id="1111aaaa" + "0" * 24,
              started_at="2026-11-20T10:00:00.000000Z", commit=COMMIT_A, suite=suite)
    write_run(root, processes(0.013, suite=suite), run_id="2222bbbb" + "0" * 24,
              started_at="2026-11-21T10:00:00.000000Z", commit=COMMIT_B, suite=suite)
    done = compare(root, "latest~1", "latest", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "+30.0%, significant but within 40% (suite gate)" in done.stdout
    done = compare(root, "latest~1", "latest", "--threshold", "latency:20%", cwd=tmp_path)
    assert done.returncode == 1 and "beyond 20% (command line)" in done.stdout


def test_noise_json_of_the_machine_sets_the_noise_of_single_process_runs(tmp_path):
    history = steady_runs(tmp_path / "results", per_case=1)
    write_run(history, [record(0.020, case=OTHER)], run_id="1111aaaa" + "0" * 24,
              started_at="2026-11-20T10:00:00.000000Z", commit=COMMIT_A)
    write_run(history, [record(0.026, case=OTHER, commit=COMMIT_B)], run_id="2222bbbb" + "0" * 24,
              started_at="2026-11-21T10:00:00.000000Z", commit=COMMIT_B)
    noise = {"schema_version": 1, "machine_id": MACHINE["machine_id"], "created_at": "2026-11-22T00:00:00Z",
             "suite": {"name": "t", "sha256": None}, "repeats": 5, "thresholds": {OTHER.case_id: {"latency": 0.35}}}
    (history / MACHINE["machine_id"] / "noise.json").write_text(json.dumps(noise))
    done = compare(history, "latest~1", "latest", cwd=tmp_path)
    assert done.returncode == 0, done.stdout
    assert "+30.0%, not significant; detectable ±" in done.stdout
    assert "process noise 11% assumed (noise.json; one process a side)" in done.stdout
    explicit = tmp_path / "strict-noise.json"
    explicit.write_text(json.dumps({**noise, "thresholds": {OTHER.case_id: {"latency": 0.005}}}))
    done = compare(history, "latest~1", "latest", "--noise", str(explicit), cwd=tmp_path)
    assert done.returncode == 1, done.stdout


def test_a_corrupt_noise_file_is_named_and_defaults_apply(history, tmp_path):
    path = history / MACHINE["machine_id"] / "noise.json"
    path.write_text("{")
    done = compare(history, "latest~1", "latest", "--threshold", "latency:50%", cwd=tmp_path)
    assert done.returncode == 3
    assert one_line_error(done).startswith(f"qbench: error: {path}: unreadable noise thresholds")


def test_real_tiny_run_compared_with_itself(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(tiny_suite_text())
    results = tmp_path / "results"
    done = qbench("run", "--suite", str(suite), "--results", str(results), "--no-progress", "--repeat", "2",
                  "--filter", "*/x86/*", "--filter", "*/fp32/*")
    assert done.returncode == 0, done.stderr
    same = compare(results, "latest", "latest", "--format", "json", cwd=tmp_path)
    assert same.returncode == 0, same.stderr
    document = json.loads(same.stdout)
    by_verdict = {}
    for row in document["comparisons"]:
        by_verdict.setdefault(row["verdict"], []).append(row)
    assert set(by_verdict) <= {"unchanged", "undetectable"}
    latency = [row for row in document["comparisons"] if row["metric"] == "latency"]
    assert len(latency) == 3 and all(row["ratio"] == 1.0 and row["base"]["processes"] == 2 for row in latency)
    assert all(row["test"]["name"] == "t" and row["test"]["process_sd_measured"] for row in latency)
    skipped = [row for row in by_verdict["unchanged"] if row["metric"] == "status"]
    assert [row["reason"].startswith("skipped on both sides") for row in skipped] == [True]


def test_a_side_not_found_among_unreadable_files_exits_3_naming_them(history, tmp_path):
    bad = next(history.rglob("*2222bbbb.jsonl"))
    corrupt(bad)
    done = compare(history, "latest~1", "2222bbbb", cwd=tmp_path)
    assert done.returncode == 3
    first, last = done.stderr.strip().splitlines()
    assert first.startswith(f"qbench: error: {bad}:")
    assert last.startswith("qbench: error: latest~1: there are only 1 complete runs")


def test_a_corrupt_run_file_given_as_a_side_is_named_once_and_exits_3(history, tmp_path):
    bad = next(history.rglob("*2222bbbb.jsonl"))
    corrupt(bad)
    done = compare(history, "latest", str(bad), cwd=tmp_path)
    assert done.returncode == 3
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"qbench: error: {bad}:") and "corrupt line" in line


def test_output_closed_before_the_command_finished_is_exit_141_without_a_traceback():
    """`qbench compare ... | head`: the reader goes away; qbench stops quietly with the SIGPIPE convention."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    fixtures = Path(__file__).parent / "fixtures" / "records" / "avx2-amd-epyc-zen3"
    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that is already gone: the first write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "qbench", "compare", "latest~1", "latest", "--results",
                               str(fixtures)], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
