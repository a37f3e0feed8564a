"""Kernel micro-benchmarks: run the pytest-benchmark benchmarks in benchmarks/kernels once per engine × runner
profile, each in its own pytest process started with the profile's ISA variables, and append the records
qbench.history.microbench makes of pytest-benchmark's JSON to history (one run of suite "kernels"), so load_history,
compare and history see them.

pytest-benchmark keeps its own saved runs (--benchmark-save) and gates on them (--benchmark-compare-fail); qbench
gives each machine × runner × engine its own storage folder, so a gate only ever compares like with like.
The parent process never imports torch: shapes of a suite's models are extracted by `python -m qbench.runner.kernel_shapes`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import qbench
from qbench.errors import ConfigError, InfraError
from qbench.records import ENGINES, RunRecord
from qbench.suite.profiles import profile, unavailable_reason
from qbench.launch.lifecycle import open_run, run_context
from qbench.history.microbench import SUITE_NAME, records_from_json

__all__ = ["KERNELS_DIR", "MicrobenchOptions", "GroupResult", "MicrobenchResult", "check_compare_fail", "pytest_command",
           "run_group",
           "extract_suite_shapes", "run_microbench", "load_benchmark_json"]

KERNELS_DIR = Path(qbench.__file__).resolve().parent.parent / "benchmarks" / "kernels"
GROUP_TIMEOUT_S = 3600.0
MIN_ROUND_S = 0.001
REGRESSION_MARK = "Performance has regressed"


@dataclass(frozen=True)
class MicrobenchOptions:
    """What to benchmark and how. compare: None (no comparison), True (the latest saved run of each engine ×
    runner) or a saved run's number/name as pytest-benchmark's --benchmark-compare takes it."""

    engines: tuple[str, ...] = ENGINES
    runners: tuple[str, ...] = ("native",)
    threads: int = 1
    shapes_file: Path | None = None
    compare_fail: tuple[str, ...] = ()
    storage: Path = Path(".benchmarks")
    save: str | None = None
    compare: bool | str | None = None
    quick: bool = False
    slowdown: int = 1
    keyword: str | None = None
    min_rounds: int | None = None
    max_time_s: float | None = None

    def __post_init__(self):
        for engine in self.engines:
            if engine not in ENGINES:
                raise ConfigError(f"unknown engine {engine!r}; allowed: {', '.join(ENGINES)}")
        for runner in self.runners:
            profile(runner)
        for expression in self.compare_fail:
            check_compare_fail(expression)
        if self.compare_fail and self.compare is None:
            raise ConfigError("--compare-fail needs --compare: a gate compares against a saved run")
        if self.threads < 1 or self.slowdown < 1:
            raise ConfigError("threads and slowdown must be at least 1")


@dataclass(frozen=True)
class GroupResult:
    """One pytest process: an engine under a runner profile."""

    engine: str
    runner: str
    exit_code: int
    regressions: tuple[str, ...] = ()
    error: str | None = None
    wall_s: float = 0.0

    @property
    def gate_failed(self) -> bool:
        return bool(self.regressions)


@dataclass
class MicrobenchResult:
    records: list[RunRecord]
    groups: list[GroupResult]
    path: Path | None = None
    shapes: str = "default"

    @property
    def gate_failed(self) -> bool:
        return any(g.gate_failed for g in self.groups)

    @property
    def regressions(self) -> list[str]:
        return [f"{g.runner}/{g.engine}: {line}" for g in self.groups for line in g.regressions]


def check_compare_fail(expression: str) -> None:
    """Raise ConfigError unless pytest-benchmark accepts `expression` (e.g. min:5%, mean:0.001)."""
    from pytest_benchmark.utils import parse_compare_fail

    try:
        parse_compare_fail(expression)
    except argparse.ArgumentTypeError:
        raise ConfigError(f"--compare-fail {expression!r}: expected FIELD:N% or FIELD:SECONDS with FIELD one of "
                          f"min, max, mean, median, stddev, iqr (pytest-benchmark's grammar)") from None


def _storage_folder(options: MicrobenchOptions, machine: dict, engine: str, runner: str) -> Path:
    return Path(options.storage).resolve() / machine["machine_id"] / runner / engine


def pytest_command(engine: str, runner: str, options: MicrobenchOptions, machine: dict, json_path: Path,
                   report_path: Path, skip_reason: str | None = None, python: str = sys.executable) -> list[str]:
    """The pytest invocation of one engine × runner group."""
    command = [python, "-m", "pytest", str(KERNELS_DIR), "-q", "-p", "no:cacheprovider",
               f"--kernel-engine={engine}", f"--kernel-runner={runner}", f"--kernel-report={report_path}",
               f"--kernel-slowdown={options.slowdown}", f"--benchmark-json={json_path}",
               f"--benchmark-storage=file://{_storage_folder(options, machine, engine, runner)}",
               "--benchmark-warmup=on", "--benchmark-warmup-iterations=10", "--benchmark-disable-gc"]
    min_rounds = options.min_rounds or (10 if options.quick else 20)
    max_time = options.max_time_s or (0.1 if options.quick else 0.5)
    # Rounds of at least 1 ms (loops of a fast kernel), as qbench's latency probe samples: a few hundred samples
    # per benchmark instead of tens of thousands of timer-resolution-bound ones.
    command += [f"--benchmark-min-rounds={min_rounds}", f"--benchmark-max-time={max_time}",
                f"--benchmark-min-time={MIN_ROUND_S}"]
    if options.shapes_file:
        command.append(f"--kernel-shapes={Path(options.shapes_file).resolve()}")
    if options.keyword:
        command += ["-k", options.keyword]
    if skip_reason:
        return command + [f"--kernel-skip-all={skip_reason}"]  # nothing runs: nothing to save or compare
    if options.save:
        command += [f"--benchmark-save={options.save}", "--benchmark-save-data"]
    if options.compare is True:
        command.append("--benchmark-compare")
    elif options.compare is not None:
        command.append(f"--benchmark-compare={options.compare}")
    command += [f"--benchmark-compare-fail={e}" for e in options.compare_fail]
    return command


def _group_env(runner: str, threads: int, skip_reason: str | None) -> dict:
    env = dict(os.environ)
    root = str(KERNELS_DIR.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    if not skip_reason:
        env.update(profile(runner).env)
    return env


def _regression_lines(output: str) -> tuple[str, ...]:
    """The benchmarks pytest-benchmark's --benchmark-compare-fail reported, one line each."""
    if REGRESSION_MARK not in output:
        return ()
    after = output.split(REGRESSION_MARK, 1)[1].splitlines()[1:]
    lines = []
    for line in after:
        if not line.startswith("\t"):
            break
        lines.append(line.strip())
    return tuple(lines) or ("(see pytest-benchmark's output)",)


def _error_line(output: str) -> str:
    """The most telling line of a pytest process that failed without running benchmarks (usage errors)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^(ERROR|E |pytest: error|.*Error:)", line)]
    return (errors or lines or ["no output"])[-1][:300]


def run_group(engine: str, runner: str, options: MicrobenchOptions, machine: dict, workdir: Path,
              python: str = sys.executable) -> tuple[GroupResult, dict | None, dict | None]:
    """Run one engine × runner pytest process: its result, pytest-benchmark's JSON and conftest's report."""
    skip = unavailable_reason(runner, machine)
    stem = workdir / f"{runner}-{engine}"
    json_path, report_path = stem.with_suffix(".benchmark.json"), stem.with_suffix(".report.json")
    command = pytest_command(engine, runner, options, machine, json_path, report_path, skip, python)
    began = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=KERNELS_DIR.parent.parent,
                              env=_group_env(runner, options.threads, skip), timeout=GROUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise InfraError(f"kernel benchmarks of {engine} under runner {runner} exceeded {GROUP_TIMEOUT_S:g} s") \
            from None
    output = done.stdout + "\n" + done.stderr
    bench = json.loads(json_path.read_text()) if json_path.exists() else None
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    regressions = _regression_lines(output) if done.returncode == 1 else ()
    error = None
    if report is None or (done.returncode not in (0, 1, 5) and not regressions):
        error = _error_line(output)
    return (GroupResult(engine, runner, done.returncode, regressions, error, time.perf_counter() - began),
            bench, report)


def extract_suite_shapes(suite: str, out: Path, python: str = sys.executable) -> Path:
    """The conv2d and linear shapes of a suite's models, written to `out` by a torch process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(KERNELS_DIR.parent.parent),
                                                                     os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run([python, "-m", "qbench.runner.kernel_shapes", "--suite", suite, "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=GROUP_TIMEOUT_S)
    if done.returncode == 2:
        raise ConfigError(_error_line(done.stderr).removeprefix("qbench: error: "))
    if done.returncode != 0:
        raise InfraError(f"could not extract kernel shapes of suite {suite}: {_error_line(done.stderr)}")
    return out


def _check_ready(options: MicrobenchOptions, machine: dict) -> None:
    """Fail before measuring: a checkout without the benchmarks, or a comparison with no saved run to compare."""
    if not (KERNELS_DIR / "test_kernels.py").is_file():
        raise InfraError(f"{KERNELS_DIR} is missing: qbench microbench runs the benchmarks of a source checkout")
    if options.compare is None:
        return
    for runner in options.runners:
        if unavailable_reason(runner, machine):
            continue
        for engine in options.engines:
            folder = _storage_folder(options, machine, engine, runner)
            if not any(folder.rglob("*.json")):
                raise ConfigError(f"--compare: no saved kernel benchmarks in {folder}; save a baseline first "
                                  f"(qbench microbench --save NAME with the same --benchmark-storage)")


def run_microbench(options: MicrobenchOptions, *, results: Path | str | None = None, machine: dict | None = None,
                   shapes_from: str | None = None, python: str = sys.executable, on_group=None) -> MicrobenchResult:
    """Every engine × runner group of the kernel benchmarks; records are appended to `results` as one run of suite
    "kernels" when it is given. on_group(GroupResult) is called as each group finishes."""
    from qbench.launch.machine import collect_machine

    machine = machine or collect_machine()
    _check_ready(options, machine)
    suite = {"name": SUITE_NAME, "path": str(KERNELS_DIR), "sha256": None, "shapes_from": shapes_from or "default"}
    with tempfile.TemporaryDirectory(prefix="qbench-microbench-") as scratch, \
            open_run(suite, machine, results, planned_cases=None, repeat=1) as run:
        workdir = Path(scratch)
        if shapes_from:
            options = replace(options, shapes_file=extract_suite_shapes(shapes_from, workdir / "shapes.json", python))
        groups = []
        for runner in options.runners:
            for engine in options.engines:
                group, bench, report = run_group(engine, runner, options, machine, workdir, python)
                for record in records_from_json(bench, run.context, report, runner=runner, threads=options.threads):
                    run.append(record)
                groups.append(group)
                if on_group:
                    on_group(group)
    return MicrobenchResult(run.records, groups, run.path, shapes_from or "default")


def load_benchmark_json(paths: list[Path | str], *, results: Path | str | None = None,
                        machine: dict | None = None) -> MicrobenchResult:
    """Records of pytest-benchmark JSON files written by benchmarks/kernels elsewhere (`pytest benchmarks/kernels
    --benchmark-json F`, a CI artifact, or a run saved in --benchmark-storage), appended to `results` as one run per
    file. The machine is the one the file recorded (this machine's fingerprint when it recorded none)."""
    from qbench.launch.machine import collect_machine

    records, path = [], None
    for file in paths:
        data = _read_json(Path(file))
        summary = data.get("qbench") or {}
        where = summary.get("machine") or machine or collect_machine()
        context = run_context({"name": SUITE_NAME, "path": str(file), "sha256": None}, where)
        new = records_from_json(data, context)
        if not new:
            raise ConfigError(f"{file}: holds no qbench kernel benchmarks (run benchmarks/kernels to make one)")
        records.extend(new)
        with open_run(context["suite"], where, results, context=context, started_at=new[0].started_at,
                      planned_cases=None, repeat=1) as run:
            for record in new:
                run.append(record)
        path = run.path or path
    return MicrobenchResult(records, [], path, "from file")


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable pytest-benchmark JSON file: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ConfigError(f"{path}: not a pytest-benchmark JSON file (no \"benchmarks\" list)")
    return data
