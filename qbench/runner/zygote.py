"""A pre-warmed parent for forked workers (fork isolation).

It imports torch, torchvision and qbench's torch-side modules once, runs nothing parallel itself, and forks one
child per case, so each case starts in a fresh copy of an untouched interpreter without paying the ~3 s import.
Protocol, one JSON object per line: it prints {"ready": ...}; then for each request {"task","result","log"} read
from stdin it prints {"pid"} after forking and {"pid","exit_code","maxrss_bytes"} when the child is reaped.

The parent sends nothing while a child runs, so stdin closing then means the parent is gone (killed, say, with
kill -9): the zygote then kills the child's process group and exits, instead of leaving an orphan to finish its case.
It waits on the child through a pidfd (Linux), or by polling where there is none.
"""

from __future__ import annotations

import json
import os
import selectors
import sys
import time
import traceback

from qbench.process_groups import kill_group

PRELOAD = ("qbench.runner.registry.models", "qbench.runner.registry.modes", "qbench.runner.registry.engines", "qbench.runner.registry.data",
           "qbench.runner.probes.size", "qbench.runner.probes.latency", "qbench.runner.probes.memory", "qbench.runner.environment",
           "qbench.runner.catalog")


def _emit(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _preload() -> None:
    import importlib

    from qbench.runner.registry.torchvision_compat import import_torchvision

    import_torchvision()
    for module in PRELOAD:
        importlib.import_module(module)


def _child(request: dict) -> None:
    code = 70
    try:
        os.setpgid(0, 0)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        from qbench.runner.worker import execute

        code = execute(request["task"], request["result"])
    except BaseException:  # noqa: BLE001 - the child must always end in os._exit
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> int:
    began = time.perf_counter()
    try:
        _preload()
    except BaseException as exc:  # noqa: BLE001
        _emit({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    _emit({"ready": True, "pid": os.getpid(), "preload_s": time.perf_counter() - began})
    stdin, pending = sys.stdin.fileno(), bytearray()
    while True:
        while b"\n" not in pending:
            chunk = os.read(stdin, 65536)
            if not chunk:
                return 0
            pending += chunk
        line, _, rest = bytes(pending).partition(b"\n")
        pending = bytearray(rest)
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        _emit({"pid": pid})
        reaped = _wait_or_orphaned(pid, stdin, pending)
        if reaped is None:
            return 0
        status, usage = reaped
        _emit({"pid": pid, "exit_code": os.waitstatus_to_exitcode(status), "maxrss_bytes": usage.ru_maxrss * 1024})


def _wait_or_orphaned(pid: int, stdin: int, pending: bytearray):
    """(status, rusage) of the child; None when stdin closed first (the child's group is then killed and reaped).
    Bytes read from stdin meanwhile go to `pending`."""
    selector = selectors.DefaultSelector()
    selector.register(stdin, selectors.EVENT_READ)
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
        selector.register(pidfd, selectors.EVENT_READ)
    except (AttributeError, OSError):  # no pidfd: poll the child
        pass
    try:
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return status, usage
            for key, _ in selector.select(None if pidfd is not None else 0.05):
                if key.fd == stdin:
                    chunk = os.read(stdin, 65536)
                    if not chunk:
                        kill_group(pid)
                        os.wait4(pid, 0)
                        return None
                    pending += chunk  # a next request waits there until this child is reaped
    finally:
        selector.close()
        if pidfd is not None:
            os.close(pidfd)


if __name__ == "__main__":
    raise SystemExit(main())
