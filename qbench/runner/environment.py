"""The software environment a worker measured in: versions, threads, the CPU capability torch dispatches to, and
the variables that steer kernels. Collected inside the worker, after the case ran, so it states what was in force.
It never imports torch itself: a worker that failed before loading torch reports package versions only."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

__all__ = ["collect_environment", "STEERING_VARIABLES"]

STEERING_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "ATEN_CPU_CAPABILITY",
                      "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "FBGEMM_ENABLE_INSTRUCTIONS", "MKL_ENABLE_INSTRUCTIONS",
                      "KMP_AFFINITY", "OMP_PROC_BIND", "TORCH_HOME")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect_environment() -> dict:
    env = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "torch": _version("torch"), "torchvision": _version("torchvision"), "torchao": _version("torchao"),
        "numpy": _version("numpy"),
        "variables": {name: os.environ[name] for name in STEERING_VARIABLES if name in os.environ},
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    torch = sys.modules.get("torch")
    if torch is None:
        return env
    from qbench.runner.registry.torchvision_compat import compat_status

    env.update({
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", None),
        "torch_debug": bool(getattr(torch.version, "debug", False)),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
        "quantized_engine": torch.backends.quantized.engine,
        "mkldnn": torch.backends.mkldnn.is_available(),
        **compat_status(),
    })
    return env
