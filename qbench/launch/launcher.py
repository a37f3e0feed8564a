"""Parent side of isolation: run one task in its own process with a timeout, and report what happened to it.

Two pools share one interface. ForkPool keeps a zygote (qbench.runner.zygote) that has imported torch once and
forks a fresh child per task; SpawnPool starts a new interpreter per task (full isolation, ~3 s of imports each).
A task that crashes, hangs or is killed yields an Outcome without a result; the pool survives it.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from qbench.errors import InfraError
from qbench.process_groups import kill_group

__all__ = ["Outcome", "ForkPool", "SpawnPool", "make_pool", "log_tail", "describe_exit"]

READY_TIMEOUT_S = 300.0
TAIL_CHARS = 4000


@dataclass
class Outcome:
    result: dict | None
    exit_code: int | None
    timed_out: bool
    wall_s: float
    log_path: Path
    maxrss_bytes: int | None = None
    pool_error: str | None = None


def log_tail(path: Path, chars: int = TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - chars))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError:
        return ""


def describe_exit(exit_code: int | None) -> str:
    if exit_code is None:
        return "the worker vanished without an exit status"
    if exit_code < 0:
        name = signal.Signals(-exit_code).name if -exit_code in signal.valid_signals() else str(-exit_code)
        hint = " (killed: out of memory?)" if -exit_code == signal.SIGKILL else ""
        return f"the worker died of signal {name}{hint}"
    return f"the worker exited with code {exit_code} and wrote no result"


def _read_result(path: Path) -> dict | None:
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError):
        return None


class _LineReader:
    """Reads JSON lines from a pipe with a deadline."""

    def __init__(self, stream):
        self._fd = stream.fileno()
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._fd, selectors.EVENT_READ)

    def read(self, timeout: float | None) -> dict | None:
        """The next message; None at the deadline. EOFError when the other side closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._selector.select(remaining):
                return None
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise EOFError
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)


class ForkPool:
    isolation = "fork"

    def __init__(self, env: dict, workdir: Path, python: str = sys.executable):
        self.env, self.workdir, self.python = env, Path(workdir), python
        self.process: subprocess.Popen | None = None
        self.preload_s: float | None = None

    def _start(self) -> None:
        log = open(self.workdir / f"zygote-{time.monotonic_ns()}.log", "wb")
        self.process = subprocess.Popen([self.python, "-m", "qbench.runner.zygote"], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=log, env=self.env, start_new_session=True)
        log.close()
        self._reader = _LineReader(self.process.stdout)
        try:
            ready = self._reader.read(READY_TIMEOUT_S)
        except EOFError:
            ready = None
        if not ready or not ready.get("ready"):
            reason = (ready or {}).get("error") or log_tail(Path(log.name), 800) or "no answer"
            self.close()
            raise InfraError(f"the worker pool could not start: {reason.splitlines()[-1] if reason else ''}")
        self.preload_s = ready["preload_s"]

    def run(self, task_path: Path, result_path: Path, log_path: Path, timeout: float) -> Outcome:
        if self.process is None or self.process.poll() is not None:
            self._start()
        began = time.perf_counter()
        request = {"task": str(task_path), "result": str(result_path), "log": str(log_path)}
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
            pid = self._reader.read(READY_TIMEOUT_S)["pid"]
            done = self._reader.read(timeout)
            timed_out = done is None
            if timed_out:
                kill_group(pid)
                done = self._reader.read(READY_TIMEOUT_S)
        except (EOFError, BrokenPipeError, TypeError) as exc:
            self.close()
            return Outcome(None, None, False, time.perf_counter() - began, log_path,
                           pool_error=f"the worker pool died ({type(exc).__name__})")
        return Outcome(_read_result(result_path), done["exit_code"], timed_out, time.perf_counter() - began,
                       log_path, done.get("maxrss_bytes"))

    def close(self) -> None:
        if self.process is not None:
            kill_group(self.process.pid)
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout):
                stream.close()
            self.process = None


class SpawnPool:
    isolation = "spawn"

    def __init__(self, env: dict, workdir: Path, python: str = sys.executable):
        self.env, self.workdir, self.python = env, Path(workdir), python
        self.preload_s = None

    def run(self, task_path: Path, result_path: Path, log_path: Path, timeout: float) -> Outcome:
        began = time.perf_counter()
        with open(log_path, "wb") as log:
            process = subprocess.Popen([self.python, "-m", "qbench.runner.worker", str(task_path), str(result_path)],
                                       stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=self.env,
                                       start_new_session=True)
            timed_out = False
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                kill_group(process.pid)
                process.wait()
        return Outcome(_read_result(result_path), process.returncode, timed_out, time.perf_counter() - began,
                       log_path)

    def close(self) -> None:
        pass


def make_pool(isolation: str, env: dict, workdir: Path, python: str = sys.executable):
    pools = {"fork": ForkPool, "spawn": SpawnPool}
    if isolation not in pools:
        raise InfraError(f"unknown isolation {isolation!r}; allowed: {', '.join(pools)}")
    if isolation == "fork" and not hasattr(os, "fork"):
        isolation = "spawn"
    return pools[isolation](env, workdir, python)
