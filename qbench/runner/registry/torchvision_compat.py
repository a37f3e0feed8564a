"""The one place qbench imports torchvision: load its C extension the way torchvision does, and when that fails
(a CUDA-built wheel next to a CPU torch), declare the two operator schemas torchvision's Python side needs at
import time, so that the classification models, which never call those operators, still import and build.

Installed files are never touched. What happened is kept for provenance: compat_status().
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType

import torch

__all__ = ["SCHEMAS", "import_torchvision", "compat_status", "load_extension"]

# As torchvision defines them (csrc/ops/nms.cpp, csrc/ops/quantized/cpu/qnms_kernel.cpp); torchvision's
# _meta_registrations.py registers fake kernels for both, which fails at import unless they exist.
SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# A torch.library.Library removes its definitions when garbage-collected: keep it for the process's life.
_library: torch.library.Library | None = None
_status: dict | None = None


def load_extension() -> None:
    """Load torchvision's `_C` shared object as torchvision's extension.py does, without importing torchvision.
    Raises OSError or ImportError when it cannot be loaded."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("torchvision is not installed")
    folder = list(spec.submodule_search_locations)[0]
    loader_details = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
    ext_spec = importlib.machinery.FileFinder(folder, loader_details).find_spec("_C")
    if ext_spec is None:
        raise ImportError(f"no _C extension in {folder}")
    torch.ops.load_library(ext_spec.origin)


def _op_exists(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
    except RuntimeError:
        return False
    return True


def _has_cpu_kernel(name: str) -> bool:
    return _op_exists(name) and torch._C._dispatch_has_kernel_for_dispatch_key(f"torchvision::{name}", "CPU")


def _describe(exc: BaseException) -> str:
    """One line: torch.ops.load_library hides the dynamic loader's message in __cause__."""
    cause = exc.__cause__ or exc.__context__
    text = f"{type(exc).__name__}: {exc}"
    if cause is not None and str(cause) not in text:
        text += f" ({cause})"
    return " ".join(text.split())


def _declare_missing_schemas() -> None:
    global _library
    missing = [name for name in SCHEMAS if not _op_exists(name)]
    if not missing:
        return
    if _library is None:
        _library = torch.library.Library("torchvision", "DEF")
    for name in missing:
        _library.define(SCHEMAS[name])


def import_torchvision(loader: Callable[[], None] | None = None) -> ModuleType:
    """Return the torchvision module, declaring the nms/qnms schemas first only if its extension cannot load.

    `loader` replaces load_extension (tests use it to simulate an extension that loads); it is used only on the
    first call. Later calls return the already imported module.
    """
    global _status
    if _status is not None:
        return sys.modules["torchvision"]
    error = None
    if not _has_cpu_kernel("nms"):
        try:
            (loader or load_extension)()
        except (OSError, ImportError) as exc:
            error = _describe(exc)
    if _has_cpu_kernel("nms"):
        status = {"torchvision_ops": "native", "extension_error": None}
    else:
        _declare_missing_schemas()
        status = {"torchvision_ops": "declared-schemas",
                  "extension_error": error or "the extension loaded but registered no CPU kernel for torchvision::nms"}
    module = importlib.import_module("torchvision")
    _status = status
    return module


def compat_status() -> dict:
    """{"torchvision_ops": "native" | "declared-schemas", "extension_error": str | None}; imports torchvision
    through import_torchvision() first if that has not happened yet in this process."""
    if _status is None:
        import_torchvision()
    return dict(_status)

