"""Shared test helpers: hand-built records and runs for tests of the pure stages (pyperf's create_run idea), run
files written through RunWriter, the tiny suite's text, and the command line run as a user runs it.

Test modules import helpers from here (and fixtures from tests/conftest.py), never from one another. Torch-free."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path

from qbench.history.store import RunFile, RunWriter
from qbench.records import Case, RunRecord

ROOT = Path(__file__).resolve().parent.parent
STARTED_AT = "2026-11-22T10:00:00.000000Z"

MACHINE = {"machine_id": "x86_64-test-2c-24g-abcdef", "arch": "x86_64", "cpu_model": "Test CPU", "cpu_signature": "f6",
           "isa": ["avx2", "avx512f"], "logical_cpus": 2, "memory_gib": 24}
ENVIRONMENT = {"python": "3.11.7", "torch": "2.13.0+cpu", "torchvision": "0.28.0", "cpu_capability": "AVX512",
               "torchvision_ops": "declared-schemas"}


def make_case(**overrides) -> Case:
    fields = {"model": "resnet18", "mode": "static_fx", "engine": "x86", "batch_size": 1, "threads": 1}
    fields.update(overrides)
    return Case(**fields)


def make_record(case: Case | None = None, *, samples=(0.010, 0.011, 0.012), size=1000, status="ok",
                run_id="run1", **overrides) -> RunRecord:
    metrics = {"latency": {"unit": "s", "samples": list(samples), "loops": 1, "warmup_rounds": 1},
               "size": {"state_dict_bytes": size, "parameters": 10, "modules_quantized": 1, "modules_float": 0},
               "memory": {"unit": "bytes", "peak_rss_build": 100, "peak_rss_run": 200}} if status == "ok" else {}
    fields = dict(run_id=run_id, record_id=uuid.uuid4().hex, case=case or make_case(), status=status,
                  suite={"name": "t"}, machine=MACHINE, environment=ENVIRONMENT,
                  qbench={"version": "0.1.0", "commit": "c" * 40, "dirty": False},
                  started_at="2026-11-22T10:00:00.000000Z", finished_at="2026-11-22T10:00:01.000000Z",
                  duration_s=1.0, metrics=metrics)
    if status != "ok":
        fields["reason"] = "because"
    fields.update(overrides)
    return RunRecord(**fields)


def case_record(mode="static_fx", engine="x86", **overrides) -> RunRecord:
    return make_record(make_case(mode=mode, engine=engine), **overrides)


FP32 = make_case(mode="fp32", engine=None)
INT8 = make_case(mode="static_fx", engine="x86")


# -- suites ---------------------------------------------------------------------------------------------------------

def _toml(value) -> str:
    return json.dumps(list(value)) if isinstance(value, (list, tuple)) else repr(value)


def tiny_suite_text(name: str = "tiny", *, engines=("x86", "qnnpack"), models=("tests.tiny_models:convnet",),
                    modes=("fp32", "dynamic", "static_eager", "static_fx"), calibration_batches: int = 1,
                    calibration_batch_size: int = 2, warmup_rounds: int = 1, min_time_s: float = 0.05,
                    min_rounds: int = 3, timeout_s: float | None = 120.0) -> str:
    """The tiny suite's TOML (tests.tiny_models:convnet, random weights, one calibration batch, short measurements),
    laid out line for line as tests that edit it with str.replace expect. timeout_s=None leaves the line out."""
    timeout = f"timeout_s = {timeout_s!r}\n" if timeout_s is not None else ""
    return (f"\n[suite]\nname = {json.dumps(name)}\n[defaults]\nengines = {_toml(engines)}\n[[matrix]]\n"
            f"models = {_toml(models)}\nmodes = {_toml(modes)}\n[calibration]\nbatches = {calibration_batches}\n"
            f"batch_size = {calibration_batch_size}\n[measure]\nwarmup_rounds = {warmup_rounds}\n"
            f"min_time_s = {min_time_s!r}\nmin_rounds = {min_rounds}\n{timeout}")


# -- run files ------------------------------------------------------------------------------------------------------

def ab_suite_text(name: str, model: str, timeout_s: float = 120.0) -> str:
    """The one-case fp32 suite `qbench ab` and `qbench bisect` tests measure: short sampling, one model."""
    return f"""
[suite]
name = "{name}"
[[matrix]]
models = ["{model}"]
modes = ["fp32"]
[measure]
warmup_rounds = 1
min_time_s = 0.05
min_rounds = 3
timeout_s = {timeout_s}
"""


def write_run(root, records, *, run_id: str | None = None, started_at: str = STARTED_AT, commit: str | None = "c" * 40,
              dirty: bool = False, suite: str | dict | None = None, machine: dict = MACHINE, finish: bool = True,
              stamp: bool = False) -> Path:
    """One run file under `root` through RunWriter; returns its sealed path (finish=False: the .partial path of a
    run that never finished). records: RunRecords, or an int: that many make_record() of this run (its run id and
    qbench provenance). stamp: each record takes the run's run id, qbench provenance and start time. suite: a name or
    the header's suite dict (default {"name": "t"}). run_id: default a fresh uuid."""
    run_id = run_id or uuid.uuid4().hex
    provenance = {"version": "0.1.0", "commit": commit, "dirty": dirty}
    header = {"run_id": run_id, "started_at": started_at, "suite": {"name": suite} if isinstance(suite, str)
              else suite or {"name": "t"}, "machine": machine, "qbench": provenance}
    if isinstance(records, int):
        records = [make_record(run_id=run_id, qbench=provenance) for _ in range(records)]
    writer = RunWriter(root, machine, header)
    for record in records:
        writer.append(replace(record, run_id=run_id, qbench=provenance, started_at=started_at) if stamp else record)
    if not finish:
        return writer.partial_path
    return writer.finish({"run_id": run_id, "finished_at": started_at, "interrupted": False})


def make_run(index: int, records_spec, *, commit: str | None = None, torch: str = "2.13.0+cpu",
             machine: dict = MACHINE, day: int | None = None) -> RunFile:
    """A RunFile of hand-made records. records_spec: (case, samples, size) triples, one per record (a case listed
    twice is two processes of one run). Run `index` starts on day `index` unless `day` says otherwise."""
    run_id = f"{index:04d}" + "0" * 28
    started = f"2026-11-{(day if day is not None else index) + 1:02d}T03:00:00.000000Z"
    commit = commit or hashlib.sha1(str(index).encode()).hexdigest()
    records = [make_record(case, samples=samples, size=size, run_id=run_id, started_at=started,
                           qbench={"version": "0.1.0", "commit": commit, "dirty": False},
                           environment={**ENVIRONMENT, "torch": torch}, machine=machine,
                           worker={"repeat": repeat})
               for repeat, (case, samples, size) in enumerate(records_spec)]
    header = {"kind": "run", "run_id": run_id, "started_at": started, "machine": machine,
              "qbench": {"commit": commit}, "suite": {"name": "t"}}
    return RunFile(path=Path(f"/history/{run_id}.jsonl"), header=header, records=records, footer={})


def pairs(*runs):
    return [(run, record) for run in runs for record in run.records]


def noisy(rng, level, noise, n=7):
    """n latency samples around `level` whose median carries relative noise `noise` from run to run."""
    centre = level * (1 + rng.gauss(0, noise))
    return [centre * (1 + rng.gauss(0, noise / 3)) for _ in range(n)]


def history(levels, *, noise=0.01, seed=0, fp32_levels=None, torch_from=None):
    """One run per level: the int8 case at that latency (and the fp32 case when fp32_levels is given)."""
    rng = random.Random(seed)
    runs = []
    for index, level in enumerate(levels):
        spec = [(INT8, noisy(rng, level, noise), 1000)]
        if fp32_levels is not None:
            spec.append((FP32, noisy(rng, fp32_levels[index], noise), 4000))
        torch = "2.14.0.dev" if torch_from is not None and index >= torch_from else "2.13.0+cpu"
        runs.append(make_run(index, spec, torch=torch))
    return runs


BROKEN = {
    "truncated": '{"kind": "run", "schema_version": 1, "run_id": "x"}\n{"kind": "case", "trunc',
    "newer schema": '{"kind": "run", "schema_version": 99, "run_id": "x"}\n',
    "not json": "\x00\x01 garbage\n",
}


def write_history(root, runs, corrupt=None):
    """make_run's RunFiles written under root as they are (their own headers), plus a corrupt file when asked."""
    for run in runs:
        writer = RunWriter(root, MACHINE, {k: v for k, v in run.header.items() if k != "kind"})
        for record in run.records:
            writer.append(record)
        writer.finish({"run_id": run.header["run_id"], "finished_at": run.header["started_at"], "interrupted": False})
    if corrupt:
        bad = root / MACHINE["machine_id"] / "runs" / "2026-11" / "20261130T000000Z_broken_00000000.jsonl"
        bad.write_text(BROKEN[corrupt if isinstance(corrupt, str) else "truncated"])
        return bad


def shard_folders(tmp_path: Path, count: int = 2, nights: int = 3) -> list[Path]:
    """`count` results folders, each the runs of one shard: shard i holds runs i, i + count, ..."""
    runs = history([0.010] * (count * nights))
    folders = []
    for index in range(count):
        folder = tmp_path / f"shard{index + 1}"
        write_history(folder, runs[index::count])
        folders.append(folder)
    return folders


RESNET50 = make_case(model="resnet50")


def regressed_tonight(tmp_path: Path) -> tuple[Path, list[Path]]:
    """Nine nights of two cases in the history; tonight two shards: shard 1 has INT8 at 13 ms instead of 10, shard 2
    (same start, larger run id: the machine's latest run) has the other case unchanged."""
    rng = random.Random(1)
    past = [make_run(i, [(INT8, noisy(rng, 0.010, 0.01), 1000), (RESNET50, noisy(rng, 0.020, 0.01), 1000)])
            for i in range(9)]
    write_history(tmp_path / "history", past)
    shard1 = make_run(9, [(INT8, noisy(rng, 0.013, 0.01), 1000)], commit="d" * 40)
    shard2 = make_run(10, [(RESNET50, noisy(rng, 0.020, 0.01), 1000)], commit="d" * 40, day=9)
    write_history(tmp_path / "shard1", [shard1])
    write_history(tmp_path / "shard2", [shard2])
    return tmp_path / "history", [tmp_path / "shard1", tmp_path / "shard2"]


# -- the command line -----------------------------------------------------------------------------------------------

def qbench(*args, cwd=None, env=None, **kwargs) -> subprocess.CompletedProcess:
    """`python -m qbench ARGS` with this source first on PYTHONPATH (env: extra variables), run in cwd (default the
    source root), output captured."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "qbench", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=600, **kwargs)


def one_line_error(done) -> str:
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("qbench: error: ")
    return lines[-1]


# -- git ------------------------------------------------------------------------------------------------------------

def git(repo, *args) -> str:
    done = subprocess.run(["git", "-c", "user.name=qbench-test", "-c", "user.email=qbench@test.invalid", *args],
                          cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def commit(repo, message) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def copy_project(dest: Path) -> Path:
    """This working tree (tracked and untracked files git does not ignore) as a fresh repository, one commit on
    main: what a CI clone holds, without touching the repository the tests run in."""
    listed = git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    git(dest, "init", "-q", "-b", "main")
    commit(dest, "A: the working tree")
    return dest


# Random-init mobilenet_v2: agreement 0 and SQNR 0 dB, the values that once crashed history's step detection.
MOBILENET_FP32 = make_case(model="mobilenet_v2", mode="fp32", engine=None)
MOBILENET_INT8 = make_case(model="mobilenet_v2", mode="static_fx", engine="x86")


def write_runs(root, nights, metrics_of=lambda night, record: record.metrics):
    """`nights` runs of an fp32 and an int8 mobilenet_v2 case; metrics_of(night, record) gives each one's metrics."""
    paths = []
    for night in range(nights):
        run_id = f"{night:032x}"
        started = f"2026-11-{night + 1:02d}T03:00:00.000000Z"
        writer = RunWriter(root, MACHINE, {"run_id": run_id, "started_at": started, "suite": {"name": "quick"},
                                           "machine": MACHINE, "qbench": {"commit": f"{night:040x}"}})
        for case in (MOBILENET_FP32, MOBILENET_INT8):
            record = make_record(case, run_id=run_id, started_at=started,
                                 qbench={"version": "0.1.0", "commit": f"{night:040x}", "dirty": False})
            writer.append(replace(record, metrics=metrics_of(night, record)))
        paths.append(writer.finish({"run_id": run_id, "finished_at": started, "interrupted": False}))
    return paths


def simulate(ratio: float, pairs: int, seed: int, noise: float = 0.03, load: float = 0.3, shared: float = 0.0):
    """Per-process latencies: a common load factor per pair (large, cancels in the ratio) times independent
    per-process noise, with B `ratio` times A. shared: the chance that a process shares its core with another
    program for its whole life and so takes twice as long (the bimodal noise of a busy 2-core machine)."""
    rng = random.Random(seed)

    def process() -> float:
        return math.exp(rng.gauss(0, noise)) * (2.0 if rng.random() < shared else 1.0)

    a, b = [], []
    for _ in range(pairs):
        common = 0.005 * math.exp(rng.gauss(0, load))
        a.append(common * process())
        b.append(common * ratio * process())
    return a, b
