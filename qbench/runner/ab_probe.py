"""Worker entry points of `qbench ab` that say where the measuring code came from.

qbench.launch.ab_sides copies this file, as the top-level module `qbench_ab_probe`, into a folder put on each side's
PYTHONPATH after the side's own code, so that any commit of qbench (even one without qbench.launch.ab_sides) can run
it. It imports the side's qbench, measures with the side's own `qbench.runner.worker.measure_case`, and adds the
origin: the file qbench and the custom model module were imported from, the git commit of that tree, the
interpreter and torch.
Stdlib only at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["origin", "measure", "ORIGIN_KEY"]

ORIGIN_KEY = "ab_origin"


def _commit(root: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _module_file(model: str | None) -> str | None:
    if not model or ":" not in model:
        return None
    module = sys.modules.get(model.partition(":")[0])
    path = getattr(module, "__file__", None)
    return os.path.realpath(path) if path else None


def _origin(model: str | None) -> dict:
    import qbench

    qbench_file = os.path.realpath(qbench.__file__)
    root = os.path.dirname(os.path.dirname(qbench_file))
    torch = sys.modules.get("torch")
    return {"qbench_file": qbench_file, "commit": _commit(root), "model_module_file": _module_file(model),
            "python": sys.executable, "python_version": sys.version.split()[0],
            "torch": getattr(torch, "__version__", None), "pid": os.getpid()}


def origin(task: dict) -> dict:
    """Entry point of the pre-flight task: the origin of this side's code, without measuring."""
    import torch  # noqa: F401 - imported so that the origin states the torch this side measures with

    return {"status": "ok", "origin": _origin(None)}


def measure(task: dict) -> dict:
    """Entry point of every A/B measurement: the side's own measure_case, plus the origin of its code."""
    from qbench.runner.worker import measure_case

    result = measure_case(task)
    result.setdefault("details", {})[ORIGIN_KEY] = _origin(task["case"]["model"])
    return result
