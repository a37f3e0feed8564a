"""Worker entry points of `qbench ab` that say where the measuring code came from.

qbench.launch.ab_sides copies this file, as the top-level module `qbench_ab_probe`, into a folder put on each side's
PYTHONPATH after the side's own code, so that any commit of qbench (even one without qbench.launch.ab_sides) can run
it. It imports the side's qbench, measures with the side's own `qbench.runner.worker.measure_case`, and adds the
origin: the file qbench and the custom model module were imported from, the git commit of each tree, the
interpreter and the versions of torch, torchvision, torchao and of the packages named in $QBENCH_AB_PACKAGES. It also
keeps a digest of the model's output on the measured example (`ab_output`: shape, top-1 classes and the first values),
taken from one extra call just before latency sampling, so that the parent can tell a changed output (an accuracy
drop) from a slowdown without building the model again.
Stdlib only at import time.
"""

from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["origin", "measure", "ORIGIN_KEY", "OUTPUT_KEY"]

ORIGIN_KEY = "ab_origin"
OUTPUT_KEY = "ab_output"
OUTPUT_VALUES = 4096
LATENCY_MODULES = ("qbench.runner.probes.latency", "qbench.probes.latency")


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


def _packages() -> dict:
    from importlib import metadata

    names = ["torch", "torchvision", "torchao"] + os.environ.get("QBENCH_AB_PACKAGES", "").split(",")
    found = {}
    for name in filter(None, dict.fromkeys(names)):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def _origin(model: str | None) -> dict:
    import qbench

    qbench_file = os.path.realpath(qbench.__file__)
    root = os.path.dirname(os.path.dirname(qbench_file))
    torch = sys.modules.get("torch")
    model_file = _module_file(model)
    return {"qbench_file": qbench_file, "commit": _commit(root), "model_module_file": model_file,
            "model_commit": _commit(os.path.dirname(model_file)) if model_file else None,
            "python": sys.executable, "python_version": sys.version.split()[0],
            "torch": getattr(torch, "__version__", None), "packages": _packages(), "pid": os.getpid()}


def _digest(output) -> dict | None:
    """Shape, top-1 class per row and the first values of a model's output (its first tensor)."""
    while isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not hasattr(output, "detach"):
        return None
    values = output.detach().float()
    rows = values.reshape(values.shape[0], -1) if values.dim() > 1 else values.reshape(1, -1)
    return {"shape": list(values.shape), "top1": rows.argmax(1).tolist(),
            "values": values.reshape(-1)[:OUTPUT_VALUES].tolist()}


def _capture_output(store: dict):
    """Wrap the side's latency sampler so that its first call records the output; returns the undo."""
    import importlib

    for name in LATENCY_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        original = getattr(module, "measure_latency", None)
        if original is None:
            continue

        def sampler(fn, *args, **kwargs):
            if "output" not in store:
                try:
                    store["output"] = _digest(fn())
                except Exception as exc:  # the measurement itself reports a broken model
                    store["output"] = {"error": repr(exc)[:200]}
            return original(fn, *args, **kwargs)

        module.measure_latency = sampler
        return lambda: setattr(module, "measure_latency", original)
    return lambda: None


def origin(task: dict) -> dict:
    """Entry point of the pre-flight task: the origin of this side's code, without measuring."""
    import torch  # noqa: F401 - imported so that the origin states the torch this side measures with

    return {"status": "ok", "origin": _origin(None)}


def measure(task: dict) -> dict:
    """Entry point of every A/B measurement: the side's own measure_case, plus the origin of its code."""
    from qbench.runner.worker import measure_case

    store: dict = {}
    undo = _capture_output(store)
    try:
        result = measure_case(task)
    finally:
        undo()
    details = result.setdefault("details", {})
    details[ORIGIN_KEY] = _origin(task["case"]["model"])
    details[OUTPUT_KEY] = store.get("output")
    return result
