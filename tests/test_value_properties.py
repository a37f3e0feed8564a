"""Property tests (Hypothesis): histories with arbitrary metric values, missing fields and wrong types go through
every reader command (compare, history, report, claims, merge, publish), which exits 0, 1 or 3 and never raises."""

import atexit
import contextlib
import functools
import io
import json
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbench.cli import main
from tests.factories import MACHINE, make_case, make_record
from tests.factories import commit, git

CASES = (make_case(model="mobilenet_v2", mode="fp32", engine=None),
         make_case(model="mobilenet_v2", mode="static_fx", engine="x86"),
         make_case(model="mobilenet_v2", mode="dynamic", engine="x86"))
MISSING = object()

anything = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.text(max_size=4),
                     st.floats(allow_nan=True, allow_infinity=True), st.lists(st.integers(0, 3), max_size=2),
                     st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
number = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**10), st.just(0), st.just(0.0))
plausible = st.floats(min_value=1e-4, max_value=1.0)
value = st.one_of(plausible, plausible, number, anything, st.just(MISSING))
samples = st.one_of(st.lists(plausible, min_size=1, max_size=4), st.lists(st.one_of(number, anything), max_size=4),
                    anything, st.just(MISSING))


def section(**fields):
    """A metrics section: a dict of these fields (each maybe missing), or sometimes not a dict at all."""
    as_dict = st.fixed_dictionaries(fields).map(lambda d: {k: v for k, v in d.items() if v is not MISSING})
    return st.one_of(as_dict, as_dict, as_dict, anything)


metrics = st.fixed_dictionaries({
    "latency": section(samples=samples),
    "size": section(state_dict_bytes=st.one_of(st.integers(1, 10**8), value)),
    "memory": section(peak_rss_run=value, peak_rss_build=value),
    "bandwidth": section(bytes_total=st.one_of(st.integers(1, 10**9), value), macs=value),
    "accuracy": section(agreement=value, sqnr_db=value, top1=value, delta_top1=value,
                        subset=st.one_of(st.just({"files_sha256": "a" * 64, "images": 32}), anything)),
}).map(lambda d: {k: v for k, v in d.items() if v is not MISSING})

line_damage = st.sampled_from([None, None, None, "duration_s", "machine", "environment", "qbench", "started_at",
                               "status", "case"])
record = st.tuples(st.sampled_from(range(len(CASES))), st.sampled_from(["ok", "ok", "ok", "failed", "bogus"]),
                   metrics, line_damage, anything)
history = st.lists(st.lists(record, min_size=1, max_size=4), min_size=2, max_size=4)


def write_history(root: Path, runs, commits=None) -> None:
    for night, records in enumerate(runs):
        run_id = f"{night:032x}"
        started = f"2026-11-{night + 1:02d}T03:00:00.000000Z"
        commit = commits[night] if commits else f"{night + 1:040x}"
        folder = root / MACHINE["machine_id"] / "runs" / "2026-11"
        folder.mkdir(parents=True, exist_ok=True)
        header = {"kind": "run", "schema_version": 1, "run_id": run_id, "started_at": started, "machine": MACHINE,
                  "suite": {"name": "quick"}, "qbench": {"version": "0.1.0", "commit": commit, "dirty": False}}
        # Every run also holds a sound fp32 / int8 pair, so that each command has something to do.
        lines = [header] + [make_record(case, run_id=run_id, started_at=started,
                                        qbench={"version": "0.1.0", "commit": commit, "dirty": False}).to_dict()
                            for case in CASES[:2]]
        for case_index, status, drawn, damage, junk in records:
            line = make_record(CASES[case_index], run_id=run_id, started_at=started,
                               qbench={"version": "0.1.0", "commit": commit, "dirty": False}).to_dict()
            line["status"], line["metrics"] = status, drawn
            if damage:
                line[damage] = junk
            lines.append(line)
        lines.append({"kind": "run_end", "schema_version": 1, "run_id": run_id, "finished_at": started,
                      "interrupted": False})
        text = "".join(json.dumps(line, sort_keys=True, allow_nan=True) + "\n" for line in lines)
        (folder / f"2026110{night + 1}T030000Z_{commit[:8]}_{run_id[:8]}.jsonl").write_text(text)
    (root / MACHINE["machine_id"] / "machine.json").write_text(json.dumps(MACHINE))


def run_quietly(*argv: str) -> int:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    assert "Traceback" not in err.getvalue()
    return code


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=history)
def test_readers_exit_0_1_or_3_on_any_values(runs):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "results"
        write_history(root, runs)
        assert run_quietly("history", "--results", str(root)) in (0, 1, 3)
        assert run_quietly("compare", "latest~1", "latest", "--results", str(root)) in (0, 1, 3)
        assert run_quietly("compare", "latest~1", "latest", "--results", str(root), "--format", "json") in (0, 1, 3)
        assert run_quietly("claims", "--results", str(root)) in (0, 1, 3)
        assert run_quietly("merge", str(root), "--into", str(Path(folder) / "merged")) in (0, 1, 3)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=history)
def test_report_exits_0_or_3_on_any_values(runs):
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "results"
        write_history(root, runs)
        assert run_quietly("report", "--results", str(root), "--out", str(Path(folder) / "out")) in (0, 1, 3)


@functools.cache
def asv_project() -> tuple[Path, list[str]]:
    """A repository with this asv.conf.json and four commits, made once for every example."""
    project = Path(tempfile.mkdtemp(prefix="qbench-publish-"))
    atexit.register(shutil.rmtree, project, ignore_errors=True)  # Hypothesis examples share it; gone with pytest
    (project / "asv.conf.json").write_text((Path(__file__).resolve().parent.parent / "asv.conf.json").read_text())
    git(project, "init", "-q", "-b", "main")
    return project, [commit(project, str(n)) for n in range(4)]


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs=history)
def test_publish_exits_0_or_3_on_any_values(runs):
    project, commits = asv_project()
    shutil.rmtree(project / "results", ignore_errors=True)
    write_history(project / "results", runs, commits)
    with contextlib.chdir(project):
        assert run_quietly("publish", "--results", "results", "--html", "build/html") in (0, 3)
