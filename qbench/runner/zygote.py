"""A pre-warmed parent for forked workers (fork isolation).

It imports torch, torchvision and qbench's torch-side modules once, runs nothing parallel itself, and forks one
child per case, so each case starts in a fresh copy of an untouched interpreter without paying the ~3 s import.
Protocol, one JSON object per line: it prints {"ready": ...}; then for each request {"task","result","log"} read
from stdin it prints {"pid"} after forking and {"pid","exit_code","maxrss_bytes"} when the child is reaped.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

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
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        _emit({"pid": pid})
        _, status, usage = os.wait4(pid, 0)
        _emit({"pid": pid, "exit_code": os.waitstatus_to_exitcode(status), "maxrss_bytes": usage.ru_maxrss * 1024})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
