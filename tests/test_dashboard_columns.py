"""`qbench publish` reads a compacted run's summary columns (qbench.report.asv_columns) instead of parsing its records,
and exports exactly what it exports from the JSON-lines runs they were compacted from: the same asv results files,
byte for byte, in both views, and the same published graphs."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from asv_runner.statistics import compute_stats
from hypothesis import given, strategies as st

from qbench.history.columnar import CompactedRun, compact
from qbench.history.store import read_run_file, run_files
from qbench.report.asv_columns import summary_for
from qbench.report.asv_export import export_history, metric_value
from tests.factories import MACHINE, case_record, commit, git, write_run

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "records"
OTHER_MACHINE = {**MACHINE, "machine_id": "x86_64-other-4c-16g-123456", "cpu_model": "Other CPU", "logical_cpus": 4}


def night_records(templates, night: int) -> list:
    """Real records (accuracy, bandwidth, skipped cases: tests/fixtures/records) with this night's torch build, and
    hand-made ones the fixtures lack: failed and timed-out cases, a record of another python (its own series), an fp32
    one with bandwidth and accuracy values."""
    build = {"torch": f"2.13.0.dev2026010{night + 1}+cpu", "torchao": f"0.16.0.dev2026010{night + 1}"}
    records = [replace(r, environment={**r.environment, **build}) for r in templates]
    env = {**templates[0].environment, **build}
    return records + [
        case_record(status="failed", environment=env, suite={"name": "t"}),
        case_record(mode="fp32", engine=None, status="timeout", environment=env, suite={"name": "t"}),
        case_record(samples=(0.02 + night / 1000, 0.021, 0.019), environment={**env, "python": "3.12.1"},
                    suite={"name": "t"}, duration_s=2),
        case_record(mode="fp32", engine=None, samples=(0.051, 0.05, 0.052), environment=env, suite={"name": "t"},
                    metrics={"latency": {"unit": "s", "samples": [0.051, 0.05, 0.052], "loops": 1, "warmup_rounds": 1},
                             "bandwidth": {"bytes_total": 123456789, "bytes_weights": 1000, "macs": 10},
                             "accuracy": {"top1": 0.5, "top5": 0.75, "agreement": 0.9, "sqnr_db": 30.5}}),
    ]


@pytest.fixture(scope="module")
def histories(tmp_path_factory):
    """One repository commit; three nights of runs at it as JSON lines (three machines, nights written out of order),
    and the same runs compacted into store v2."""
    base = tmp_path_factory.mktemp("columns")
    repo = base / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    sha = commit(repo, "the qbench commit")
    templates = [r for path in run_files(FIXTURES / "avx2-amd-epyc-zen3") for r in read_run_file(path).records][:60]
    lines = base / "lines"
    for night in (2, 0, 1):
        started = f"2026-01-0{night + 1}T02:00:00.000000Z"
        write_run(lines, night_records(templates, night), commit=sha, started_at=started, stamp=True, machine=MACHINE)
        write_run(lines, [case_record(machine=OTHER_MACHINE, suite={"name": "t"})], commit=sha, stamp=True,
                  started_at=f"2026-01-0{night + 1}T05:00:00.000000Z", machine=OTHER_MACHINE)
    store = base / "store"
    shutil.copytree(lines, store)
    written, kept = compact(store)
    assert len(written) == 6 and kept == [] and not list(store.glob("*/runs/*/*.jsonl"))
    return repo, lines, store


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(folder).parts}


@pytest.mark.parametrize("view", ["commits", "nightlies"])
def test_the_store_exports_the_same_asv_results_as_the_json_lines_runs(histories, tmp_path, monkeypatch, view):
    repo, lines, store = histories
    parsed = []
    original = CompactedRun._parse
    monkeypatch.setattr(CompactedRun, "_parse", lambda run, rows: parsed.append(rows) or original(run, rows))
    exported = {}
    for name, history in (("lines", lines), ("store", store)):
        timeline = tmp_path / f"timeline-{name}" if view == "nightlies" else None
        report = export_history(history, tmp_path / name, repo, timeline=timeline)
        assert report.errors == [] and report.skipped == [] and report.runs == 6
        exported[name] = tree(tmp_path / name)
        assert len(exported[name]) == len(report.results_files) + 1 + len(report.machines)  # and benchmarks.json
    assert len(report.results_files) == (10 if view == "commits" else 12)  # 3 machines, 3 builds, 2 pythons
    assert exported["store"] == exported["lines"]
    # the store's records were never parsed: only the row naming each machine last, for its machine.json
    assert [rows is not None and len(rows) for rows in parsed] == [1] * len(report.machines)
    results = [json.loads(text) for name, text in exported["store"].items() if name.count("/") == 1
               and not name.endswith("machine.json")]
    latency = [r["results"][n] for r in results for n in r["results"] if n == "t.history.track_latency"]
    assert latency and any(v is None for r in latency for v in r[0])  # failed cases are asv failures in both


def test_runs_the_columns_cannot_stand_for_are_pooled_from_their_records(histories):
    _, lines, store = histories
    assert all(summary_for(read_run_file(path)) is None for path in run_files(lines))
    compacted = [read_run_file(path) for path in run_files(store)]
    assert all(summary_for(run) is not None for run in compacted)
    stale = compacted[0]
    stale.checked = False  # compacted under other value rules: its records are checked again
    assert summary_for(stale) is None


def test_publish_of_the_store_draws_the_same_nightlies_as_of_the_json_lines(histories, tmp_path):
    repo, lines, store = histories
    published = {}
    for name, history in (("lines", lines), ("store", store)):
        (repo / "asv.conf.json").write_text((ROOT / "asv.conf.json").read_text())
        html = tmp_path / name
        done = subprocess.run([sys.executable, "-m", "qbench", "publish", "--view", "nightlies", "--results",
                               str(history), "--html", str(html)], cwd=repo, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, done.stderr
        assert "timeline  6 nightlies, 2026-01-01 to 2026-01-03 at 1 qbench commit" in done.stdout
        published[name] = {k: v for k, v in tree(html).items() if k.startswith("graphs/") or k == "nightlies.json"}
    assert len(published["store"]) > 10 and published["store"] == published["lines"]


@given(st.lists(st.floats(min_value=1e-9, max_value=1e9, allow_nan=False), min_size=1, max_size=200))
def test_the_plotted_value_is_asvs_own_estimate(samples):
    assert metric_value(samples) == compute_stats(samples, 1)[0]
