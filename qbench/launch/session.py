"""Run planned cases, each in its own worker, and turn every outcome into a RunRecord appended to history.

One Session owns the worker pools (one per thread count and runner profile, since thread and ISA variables must be
set before torch loads)
and a scratch folder for task, result and log files. Nothing a worker does can stop the suite: crashes, hangs and
exceptions become records.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import qbench
from qbench.plan.expand import Catalog, PlannedCase
from qbench.errors import ConfigError, InfraError
from qbench.records import ENGINES, RunRecord
from qbench.launch.launcher import Outcome, describe_exit, log_tail, make_pool
from qbench.suite.profiles import profile
from qbench.history.store import RunWriter, utc_now
from qbench.suite.load import SuiteSpec

__all__ = ["Session", "record_from_outcome"]

CATALOG_TIMEOUT_S = 300.0
PEAKS_TIMEOUT_S = 300.0
MEASURE_ENTRY = "qbench.runner.worker:measure_case"
PEAKS_ENTRY = "qbench.runner.probes.peaks:peaks_task"


def worker_env(threads: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    package_root = str(Path(qbench.__file__).resolve().parent.parent)
    # `python -m` puts the working folder first on sys.path: a worker started inside another checkout of qbench
    # would import that checkout's code. PYTHONSAFEPATH drops it; it comes back last, for custom models' modules.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH"), os.getcwd()) if p)
    env["PYTHONSAFEPATH"] = "1"
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(threads)
    env.update(extra or {})
    return env


class Session:
    def __init__(self, spec: SuiteSpec, *, isolation: str | None = None, extra_env: dict | None = None,
                 entry: str = MEASURE_ENTRY, python: str = sys.executable, cache: dict | None = None,
                 peaks_homes: list[tuple[Path, str]] | None = None):
        """python: the interpreter workers run under (another environment, e.g. another torch build).
        cache: artifact cache settings for the workers ({"enabled": bool, "dir": str | None}; default off).
        peaks_homes: (folder, machine id) pairs where the machine's bandwidth and compute peaks are kept (the results
        folder first, then a per-user cache); with them, peaks are measured once per machine, thread count, runner
        profile and torch, and copied into every record."""
        self.spec = spec
        self.cache = cache or {"enabled": False}
        self.peaks_homes = list(peaks_homes or [])
        self._peaks: dict[tuple[int, str], dict | None] = {}
        self.python = python
        self.isolation = isolation or spec.run.isolation
        self.extra_env = extra_env or {}
        self.entry = entry
        self.workdir = Path(tempfile.mkdtemp(prefix="qbench-"))
        self._pools: dict[tuple[int, str], object] = {}
        self._counter = 0

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def pool(self, threads: int, runner: str = "native"):
        key = (threads, runner)
        if key not in self._pools:
            env = worker_env(threads, {**profile(runner).env, **self.extra_env})
            self._pools[key] = make_pool(self.isolation, env, self.workdir, self.python)
        return self._pools[key]

    def run_task(self, task: dict, threads: int, timeout: float, memory_limit_gb: float | None = None,
                 runner: str = "native") -> Outcome:
        self._counter += 1
        stem = self.workdir / f"task-{self._counter:05d}"
        task_path, result_path, log_path = (stem.with_suffix(s) for s in (".json", ".result.json", ".log"))
        task_path.write_text(json.dumps({**task, "threads": threads, "memory_limit_gb": memory_limit_gb}))
        return self.pool(threads, runner).run(task_path, result_path, log_path, timeout)

    def peaks(self, threads: int, runner: str, torch_version: str | None) -> dict | None:
        """This machine's peaks under `threads` and `runner`: from the first peaks home that has them for this torch,
        else measured in a worker. Saved to every home that lacked them. None without peaks homes, or when the probe
        failed."""
        if not self.peaks_homes:
            return None
        key = (threads, runner)
        if key not in self._peaks:
            from qbench.history.peaks import load_peaks, save_peaks

            found, lacking = None, []
            for folder, machine_id in self.peaks_homes:
                found = found or load_peaks(folder, machine_id, runner, threads, torch_version)
                if found is None:
                    lacking.append((folder, machine_id))
            if found is None:
                outcome = self.run_task({"entry": PEAKS_ENTRY, "runner": runner}, threads, PEAKS_TIMEOUT_S,
                                        runner=runner)
                result = outcome.result or {}
                found = result.get("peaks") if result.get("status") == "ok" else None
            if found is not None:
                for folder, machine_id in lacking:
                    save_peaks(folder, machine_id, found)
            self._peaks[key] = found
        return self._peaks[key]

    def catalog(self, custom_models: list[str], threads: int | None = None, modes=None) -> Catalog:
        """What this machine offers; `modes` (default: the suite's) are asked whether they can be built per engine."""
        threads = threads or min((t for m in self.spec.matrices for t in m.threads), default=1)
        modes = sorted(set(modes) if modes is not None else {mode for m in self.spec.matrices for mode in m.modes})
        outcome = self.run_task({"entry": "qbench.runner.catalog:probe", "engines": list(ENGINES),
                                 "custom_models": custom_models, "modes": modes}, threads, CATALOG_TIMEOUT_S)
        result = outcome.result or {}
        if result.get("status") != "ok":
            detail = result.get("reason") or outcome.pool_error or describe_exit(outcome.exit_code)
            raise InfraError(f"could not list models and engines: {detail}")
        if result.get("errors"):
            raise ConfigError(result["errors"][0])
        return Catalog.from_dict(result["catalog"])

    def run(self, planned: list[PlannedCase], *, catalog: Catalog, writer: RunWriter | None, context: dict,
            on_record: Callable[[RunRecord], None] | None = None, repeat: int = 1,
            done: frozenset[tuple[str, int]] = frozenset()) -> list[RunRecord]:
        """Each case `repeat` times in separate processes, in interleaved rounds (every case once, then again), so
        that slow drift of the machine spreads over all cases instead of biasing some. `done`: (case_version,
        repeat index) pairs already measured (a resumed run), left out."""
        records = []
        rounds = [(index, plan) for index in range(repeat) for plan in planned
                  if not (plan.skip_reason and index > 0) and (plan.case.case_version, index) not in done]
        for repeat_index, plan in rounds:
            started_at, began = utc_now(), time.perf_counter()
            if plan.skip_reason:
                outcome = None
            else:
                task = {"entry": self.entry, "case": plan.case.to_dict(), "measure": self.spec.measure.to_dict(),
                        "accuracy": self.spec.accuracy.to_dict(), "cache": self.cache,
                        "peaks": self.peaks(plan.case.threads, plan.case.runner, catalog.environment.get("torch"))}
                outcome = self.run_task(task, plan.case.threads, self.spec.measure.timeout_s,
                                        self.spec.run.memory_limit_gb, plan.case.runner)
            record = record_from_outcome(plan, outcome, context=context, catalog=catalog, started_at=started_at,
                                         duration_s=time.perf_counter() - began,
                                         timeout_s=self.spec.measure.timeout_s, isolation=self.isolation,
                                         repeat_index=repeat_index)
            if writer is not None:
                writer.append(record)
            records.append(record)
            if on_record:
                on_record(record)
        return records


def record_from_outcome(plan: PlannedCase, outcome: Outcome | None, *, context: dict, catalog: Catalog,
                        started_at: str, duration_s: float, timeout_s: float, isolation: str,
                        repeat_index: int = 0) -> RunRecord:
    """context: run_id, suite, machine, qbench (shared by every record of a run)."""
    result = (outcome.result if outcome else None) or {}
    fields = {"status": "skipped", "reason": plan.skip_reason}
    if outcome is not None:
        if outcome.timed_out:
            fields = {"status": "timeout", "reason": f"exceeded the {timeout_s:g} s timeout; the worker was killed",
                      "error_tail": log_tail(outcome.log_path)}
        elif result:
            fields = {key: result[key] for key in ("status", "reason", "error_tail", "metrics", "details")
                      if key in result}
        else:
            fields = {"status": "failed", "reason": outcome.pool_error or describe_exit(outcome.exit_code),
                      "error_tail": log_tail(outcome.log_path)}
    environment = result.get("environment") or {**catalog.environment, "source": "catalog probe"}
    worker = {"isolation": isolation, "repeat": repeat_index}
    if outcome is not None:
        worker.update({"exit_code": outcome.exit_code, "wall_s": outcome.wall_s, "maxrss_bytes": outcome.maxrss_bytes})
        inside = result.get("worker", {})
        if "entered_at" in inside:
            worker["pid"] = inside.get("pid")
            worker["overhead_s"] = outcome.wall_s - (inside["left_at"] - inside["entered_at"])
    return RunRecord(run_id=context["run_id"], record_id=uuid.uuid4().hex, case=plan.case, suite=context["suite"],
                     machine=context["machine"], environment=environment, qbench=context["qbench"],
                     started_at=started_at, finished_at=utc_now(), duration_s=duration_s, worker=worker, **fields)

