"""The exporter: asv reads what qbench wrote. Every check loads the exported tree through asv's own API or CLI."""

import itertools
import json
import math
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from asv.benchmarks import Benchmarks
from asv.config import Config
from asv.machine import iter_machine_files
from asv.results import iter_results
from asv.util import load_json

from qbench.report.asv_export import CASE_PARAMS, EXPORT_VERSION, export_history
from qbench.errors import ConfigError
from tests.factories import ENVIRONMENT, MACHINE, case_record, git, make_case, make_record, write_run

Repo = namedtuple("Repo", "path commits")
STATIC = ("'resnet18'", "'static_fx/x86'", "1", "1", "'random'")
FP32 = ("'resnet18'", "'fp32'", "1", "1", "'random'")


@pytest.fixture
def repo(tmp_path):
    """A git repository with two commits, A then B, on branch main."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    for message in ("A", "B"):
        git(path, "commit", "-q", "--allow-empty", "-m", message)
    return Repo(path, git(path, "rev-list", "--reverse", "HEAD").split())


def asv_view(out):
    """What asv itself reads back: benchmarks.json, and every results file by commit."""
    conf = Config()
    conf.results_dir = str(out)
    benchmarks = Benchmarks.load(conf)
    results = {r.commit_hash: r for r in iter_results(str(out))}
    return benchmarks, results


def point(benchmarks, results, metric, combination, suite="t"):
    name = f"{suite}.history.track_{metric}"
    params = benchmarks[name]["params"]
    values = results.get_result_value(name, params)
    return dict(zip(itertools.product(*params), values))[combination]


def test_asv_reads_two_runs_at_two_commits_as_two_points(tmp_path, repo):
    history, out = tmp_path / "history", tmp_path / "asv"
    a, b = repo.commits
    write_run(history, [case_record(samples=(0.010, 0.011, 0.012), size=1000),
                        case_record(mode="fp32", engine=None, samples=(0.040, 0.041, 0.042), size=4000)],
              commit=a, stamp=True)
    write_run(history, [case_record(samples=(0.020, 0.022, 0.024), size=1000),
                        case_record(mode="fp32", engine=None, samples=(0.040, 0.041, 0.042), size=4000)],
              commit=b, started_at="2026-11-23T10:00:00.000000Z", stamp=True)

    report = export_history(history, out, repo.path)

    assert (report.runs, report.commits, report.machines) == (2, 2, [MACHINE["machine_id"]])
    benchmarks, results = asv_view(out)
    assert set(results) == {a, b}
    assert {name: benchmarks[name]["unit"] for name in report.benchmarks} == {
        "t.history.track_latency": "seconds", "t.history.track_throughput": "images/s",
        "t.history.track_memory": "bytes", "t.history.track_size": "bytes", "t.history.track_bytes_moved": "bytes",
        "t.history.track_bandwidth": "GB/s", "t.history.track_top1": "fraction", "t.history.track_top5": "fraction",
        "t.history.track_agreement": "fraction", "t.history.track_sqnr": "dB"}
    entry = benchmarks["t.history.track_latency"]
    assert (entry["type"], entry["version"], entry["param_names"]) == ("track", EXPORT_VERSION, list(CASE_PARAMS))
    assert entry["params"][1] == ["'fp32'", "'static_fx/x86'"]
    assert point(benchmarks, results[a], "latency", STATIC) == pytest.approx(0.011)
    assert point(benchmarks, results[b], "latency", STATIC) == pytest.approx(0.022)
    assert point(benchmarks, results[b], "throughput", STATIC) == pytest.approx(1 / 0.022)
    assert point(benchmarks, results[a], "size", FP32) == 4000
    assert point(benchmarks, results[a], "memory", STATIC) == 200
    assert results[a].date == int(git(repo.path, "log", "-1", "--format=%at", a)) * 1000
    assert results[a].params["machine"] == MACHINE["machine_id"]
    assert results[a].params["torch"] == ENVIRONMENT["torch"] and results[a].params["python"] == "3.11.7"
    (machine_file,) = iter_machine_files(str(out))
    machine = load_json(machine_file, api_version=1)
    assert (machine["machine"], machine["cpu"], machine["num_cpu"]) == (MACHINE["machine_id"], "Test CPU", "2")


def test_asv_compare_reads_the_exported_points(tmp_path, repo):
    history, out = tmp_path / "history", tmp_path / "asv"
    a, b = repo.commits
    write_run(history, [case_record(samples=[0.010 + 1e-4 * i for i in range(20)])], commit=a, stamp=True)
    write_run(history, [case_record(samples=[0.020 + 1e-4 * i for i in range(20)])], commit=b, stamp=True)
    export_history(history, out, repo.path)
    config = tmp_path / "asv.conf.json"
    config.write_text(json.dumps({"version": 1, "project": "qbench", "repo": str(repo.path), "branches": ["main"],
                                  "results_dir": str(out), "html_dir": str(tmp_path / "html")}))
    done = subprocess.run([sys.executable, "-m", "asv", "compare", "--config", str(config), "--machine",
                           MACHINE["machine_id"], a, b], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "t.history.track_latency" in line)
    # asv's own statistics over the exported samples: a significant slowdown, ratio of the medians.
    assert row.split("|")[1].strip() == "+"
    assert "10.9±" in row and "21.0±" in row and "1.91" in row


def test_records_at_one_commit_and_environment_pool_into_one_point(tmp_path, repo):
    history, out = tmp_path / "history", tmp_path / "asv"
    a = repo.commits[0]
    write_run(history, [case_record(samples=(0.010, 0.011, 0.012))], commit=a, stamp=True)
    write_run(history, [case_record(samples=(0.013, 0.014, 0.015))], commit=a, stamp=True)
    report = export_history(history, out, repo.path)
    benchmarks, results = asv_view(out)
    assert len(report.results_files) == 1 and report.runs == 2
    name, params = "t.history.track_latency", benchmarks["t.history.track_latency"]["params"]
    (samples,) = [s for s in results[a].get_result_samples(name, params) if s]
    assert sorted(samples) == [0.010, 0.011, 0.012, 0.013, 0.014, 0.015]
    (stats,) = [s for s in results[a].get_result_stats(name, params) if s]
    assert stats["q_25"] < point(benchmarks, results[a], "latency", STATIC) < stats["q_75"]


def test_skipped_failed_and_unmeasured_cases(tmp_path, repo):
    history, out = tmp_path / "history", tmp_path / "asv"
    a = repo.commits[0]
    write_run(history, [case_record(mode="fp32", engine=None), case_record(mode="static_eager", status="skipped"),
                        case_record(status="failed"),
                        make_record(make_case(model="mobilenet_v2", mode="fp32", engine=None))], commit=a, stamp=True)
    export_history(history, out, repo.path)
    benchmarks, results = asv_view(out)
    assert point(benchmarks, results[a], "latency", FP32) == pytest.approx(0.011)
    assert math.isnan(point(benchmarks, results[a], "latency", ("'resnet18'", "'static_eager/x86'", "1", "1",
                                                                "'random'")))
    assert point(benchmarks, results[a], "latency", STATIC) is None
    assert math.isnan(point(benchmarks, results[a], "size", ("'mobilenet_v2'", "'static_fx/x86'", "1", "1",
                                                             "'random'")))


def test_runs_asv_cannot_place_are_left_out_and_said_so(tmp_path, repo):
    history, out = tmp_path / "history", tmp_path / "asv"
    a = repo.commits[0]
    dirty = write_run(history, [case_record()], commit=a, dirty=True, stamp=True)
    stranger = write_run(history, [case_record()], commit="f" * 40, stamp=True)
    nowhere = write_run(history, [case_record()], commit=None, stamp=True)
    report = export_history(history, out, repo.path)
    assert report.runs == 0 and not report.results_files
    assert sorted(report.skipped) == sorted([
        f"{dirty}: measured uncommitted changes on top of {a[:8]} (--include-dirty exports it anyway)",
        f"{stranger}: commit ffffffff is not in the repository",
        f"{nowhere}: qbench ran outside a git checkout, so the run names no commit"])
    assert export_history(history, out, repo.path, include_dirty=True).runs == 1


def test_unreadable_files_are_named_and_the_rest_exported(tmp_path, repo):
    history, out = tmp_path / "history", tmp_path / "asv"
    a, b = repo.commits
    write_run(history, [case_record()], commit=a, stamp=True)
    broken = write_run(history, [case_record()], commit=b, stamp=True)
    broken.write_text(broken.read_text().replace('"kind": "case"', '"kind": "case', 1))
    report = export_history(history, out, repo.path)
    assert report.runs == 1 and len(report.results_files) == 1
    (error,) = report.errors
    assert str(error).startswith(f"{broken}:2: corrupt line")


def test_torch_builds_and_steering_variables_are_separate_environments(tmp_path, repo):
    history, out = tmp_path / "history", tmp_path / "asv"
    a = repo.commits[0]
    nightly = {**ENVIRONMENT, "torch": "2.14.0.dev20261120+cpu"}
    capped = {**ENVIRONMENT, "variables": {"ATEN_CPU_CAPABILITY": "avx2", "OMP_NUM_THREADS": "1"}}
    for environment in (ENVIRONMENT, nightly, capped):
        write_run(history, [case_record(environment=environment)], commit=a, stamp=True)
    report = export_history(history, out, repo.path)
    assert len(report.results_files) == 3
    loaded = list(iter_results(str(out)))
    assert sorted(r.params["torch"] for r in loaded) == ["2.13.0+cpu", "2.13.0+cpu", "2.14.0.dev20261120+cpu"]
    assert sorted(str(r.env_vars) for r in loaded) == ["{'ATEN_CPU_CAPABILITY': 'avx2'}", "{}", "{}"]
    assert len({r.env_name for r in loaded}) == 3


def test_export_keeps_asv_results_and_gives_the_same_tree_twice(tmp_path, repo):
    history, out = tmp_path / "history", tmp_path / "asv"
    a = repo.commits[0]
    write_run(history, [case_record()], commit=a, stamp=True)
    own = {"name": "quick.Resnet18.track_size", "type": "track", "unit": "bytes", "version": "abc",
           "param_names": [], "params": [], "code": ""}
    (out / MACHINE["machine_id"]).mkdir(parents=True)
    (out / "benchmarks.json").write_text(json.dumps({own["name"]: own, "version": 2}))
    asv_machine = {"machine": MACHINE["machine_id"], "cpu": "as asv saw it", "version": 1}
    (out / MACHINE["machine_id"] / "machine.json").write_text(json.dumps(asv_machine))

    first = export_history(history, out, repo.path)
    tree = {p: p.read_bytes() for p in out.rglob("*.json")}
    export_history(history, out, repo.path)

    assert {p: p.read_bytes() for p in out.rglob("*.json")} == tree
    benchmarks, _ = asv_view(out)
    assert benchmarks[own["name"]]["version"] == "abc" and set(first.benchmarks) < set(benchmarks)
    assert json.loads((out / MACHINE["machine_id"] / "machine.json").read_text()) == asv_machine


def test_runs_at_commits_on_no_shown_branch_are_left_out(tmp_path, repo):
    history, out = tmp_path / "history", tmp_path / "asv"
    git(repo.path, "checkout", "-q", "-b", "side")
    git(repo.path, "commit", "-q", "--allow-empty", "-m", "C")
    side = git(repo.path, "rev-parse", "HEAD")
    write_run(history, [case_record()], commit=repo.commits[1], stamp=True)
    side_run = write_run(history, [case_record()], commit=side, stamp=True)
    report = export_history(history, out, repo.path, branches=["main"])
    assert report.runs == 1 and report.skipped == [
        f"{side_run}: commit {side[:8]} is on no branch the dashboard shows (main)"]
    assert export_history(history, out, repo.path, branches=["main", "side"]).runs == 2
    with pytest.raises(ConfigError, match="branch 'trunk' of the asv config's `branches` is not in"):
        export_history(history, out, repo.path, branches=["trunk"])


def timeline_view(out, timeline):
    """The nightly timeline as asv reads it: commits of the generated repository, oldest first, and results."""
    hashes = git(timeline, "rev-list", "--reverse", "nightlies").split()
    return hashes, list(iter_results(str(out)))


def test_timeline_places_each_night_and_build_on_its_own_commit_in_time_order(tmp_path, repo):
    history, out, timeline = tmp_path / "history", tmp_path / "asv", tmp_path / "timeline"
    a, b = repo.commits
    builds = [(a, "2026-11-01", "2.14.0.dev20261101+cpu"), (a, "2026-11-02", "2.14.0.dev20261102+cpu"),
              (a, "2026-11-03", "2.14.0.dev20261102+cpu"), (b, "2026-11-04", "2.14.0.dev20261102+cpu")]
    for sha, night, torch in reversed(builds):
        for hour in ("02", "05"):  # two shards of one nightly pool into one point
            write_run(history, [case_record(environment={**ENVIRONMENT, "torch": torch})], commit=sha,
                      started_at=f"{night}T{hour}:00:00.000000Z", stamp=True)
    report = export_history(history, out, repo.path, timeline=timeline)
    hashes, loaded = timeline_view(out, timeline)
    assert [n.hash for n in report.nightlies] == hashes and len(hashes) == 4
    assert [(n.commit, n.night, n.builds["torch"], len(n.runs)) for n in report.nightlies] == [
        (sha, night, torch, 2) for sha, night, torch in builds]
    assert sorted((r.commit_hash, r.date) for r in loaded) == sorted(
        (n.hash, n.timestamp * 1000) for n in report.nightlies)
    assert all("torch" not in r.params and "2.14.0.dev" in r.env_name for r in loaded)
    assert "torch 2.14.0.dev20261101+cpu" in git(timeline, "log", "-1", "--format=%B", hashes[0])
    assert sorted(git(timeline, "tag", "-l").split()) == sorted([f"qbench-{a[:8]}", f"qbench-{b[:8]}"])
    assert git(timeline, "rev-list", "-n", "1", f"qbench-{b[:8]}") == hashes[3]


def test_timeline_machines_and_steering_variables_share_a_nightly_as_separate_series(tmp_path, repo):
    history, out, timeline = tmp_path / "history", tmp_path / "asv", tmp_path / "timeline"
    other = {**MACHINE, "machine_id": "aarch64-test-4c-8g-012345", "arch": "aarch64"}
    capped = {**ENVIRONMENT, "variables": {"ATEN_CPU_CAPABILITY": "avx2"}}
    for machine, environment in ((MACHINE, ENVIRONMENT), (MACHINE, capped), (other, ENVIRONMENT)):
        write_run(history, [case_record(environment=environment, machine=machine)], commit=repo.commits[0],
                  machine=machine, stamp=True)
    report = export_history(history, out, repo.path, timeline=timeline)
    (nightly,) = report.nightlies
    assert nightly.machines == {MACHINE["machine_id"], other["machine_id"]} and len(nightly.runs) == 3
    _, loaded = timeline_view(out, timeline)
    assert [r.commit_hash for r in loaded] == [nightly.hash] * 3
    assert sorted((r.params["machine"], str(r.env_vars)) for r in loaded) == sorted([
        (MACHINE["machine_id"], "{}"), (MACHINE["machine_id"], "{'ATEN_CPU_CAPABILITY': 'avx2'}"),
        (other["machine_id"], "{}")])


def test_timeline_hashes_are_the_same_when_exported_again_and_stay_put_when_a_night_is_added(tmp_path, repo):
    history = tmp_path / "history"
    for night in (1, 2):
        write_run(history, [case_record(environment={**ENVIRONMENT, "torch": f"2.14.0.dev2026110{night}"})],
                  commit=repo.commits[0], started_at=f"2026-11-0{night}T02:00:00.000000Z", stamp=True)
    first = export_history(history, tmp_path / "asv1", repo.path, timeline=tmp_path / "t1").nightlies
    again = export_history(history, tmp_path / "asv2", repo.path, timeline=tmp_path / "t2").nightlies
    write_run(history, [case_record(environment={**ENVIRONMENT, "torch": "2.14.0.dev20261103"})],
              commit=repo.commits[0], started_at="2026-11-03T02:00:00.000000Z", stamp=True)
    later = export_history(history, tmp_path / "asv3", repo.path, timeline=tmp_path / "t3").nightlies
    assert [n.hash for n in first] == [n.hash for n in again] == [n.hash for n in later[:2]]
    assert len(later) == 3 and later[2].hash not in {n.hash for n in first}


def test_asv_publish_with_get_steps_resolved_once_writes_what_asv_writes(tmp_path, repo):
    """qbench.report.asv_main's fix to asv 0.6's quadratic Benchmark list changes no published byte."""
    history, out, timeline = tmp_path / "history", tmp_path / "asv", tmp_path / "timeline"
    for night in range(6):
        slower = 1.5 if night >= 3 else 1.0
        write_run(history, [case_record(samples=(0.010 * slower, 0.011 * slower), environment={
            **ENVIRONMENT, "torch": f"2.14.0.dev2026110{night + 1}"}), case_record(mode="fp32", engine=None)],
                  commit=repo.commits[0], started_at=f"2026-11-0{night + 1}T02:00:00.000000Z", stamp=True)
    export_history(history, out, repo.path, timeline=timeline)
    trees = []
    for module in ("asv", "qbench.report.asv_main"):
        html = tmp_path / f"html-{module}"
        config = tmp_path / f"{module}.json"
        config.write_text(json.dumps({"version": 1, "project": "t", "repo": str(timeline), "branches": ["nightlies"],
                                      "results_dir": str(out), "html_dir": str(html), "dvcs": "git"}))
        done = subprocess.run([sys.executable, "-m", module, "publish", "--config", str(config)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        trees.append({p.relative_to(html): p.read_bytes() for p in html.rglob("*") if p.is_file()
                      and p.name != "info.json"})
    assert trees[0] == trees[1]
    assert any(path.parts[0] == "graphs" and path.parts[-1] == "summary.json" for path in trees[0])
    regressions = json.loads(trees[0][Path("regressions.json")])["regressions"]
    assert [r[0] for r in regressions] == ["t.history.track_latency('resnet18', 'static_fx/x86', 1, 1, 'random')"]
