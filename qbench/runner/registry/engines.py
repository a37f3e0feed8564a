"""Quantized engines: which of them actually work in this process, and switching between them.

An engine works when a tiny quantized linear and a tiny quantized conv2d can be prepacked and run under it.
`torch.backends.quantized.supported_engines` is not enough: aarch64 wheels list x86 and fbgemm, yet prepacking under
them fails with "unknown architecure".

ENGINES is qbench.records.ENGINES, re-exported: the parent process validates suites against the same names.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterable, Iterator

import torch

from qbench.errors import NotApplicable, RegistryError
from qbench.records import ENGINES

__all__ = ["ENGINES", "check_engine_name", "probe_engine", "probe_engines", "use_engine", "run_engine_on", "kernels_engine",
           "allow_bf16_fastmath", "with_fp32_math"]

# engine name → the engine whose kernels use_engine really selects, in this process (see run_engine_on).
_KERNELS_OF: dict[str, str] = {}


def run_engine_on(name: str, kernels_engine: str) -> None:
    """From now on in this (worker) process, `use_engine(name)` selects `kernels_engine`: how a runner profile makes
    the x86 engine take the FBGEMM path a real AVX2 host takes (qbench.suite.profiles)."""
    check_engine_name(name)
    check_engine_name(kernels_engine)
    _KERNELS_OF[name] = kernels_engine


def kernels_engine(name: str) -> str:
    """The engine whose kernels `name` selects in this process: `name` itself unless run_engine_on changed it."""
    return _KERNELS_OF.get(name, name)


def check_engine_name(name: str) -> None:
    """Raise RegistryError unless `name` is one of ENGINES."""
    if name not in ENGINES:
        raise RegistryError(f"unknown engine {name!r}; allowed: {', '.join(ENGINES)}")


@contextlib.contextmanager
def use_engine(name: str) -> Iterator[None]:
    """Run the block with torch.backends.quantized.engine set to `name`, then restore the previous engine."""
    check_engine_name(name)
    name = kernels_engine(name)
    if name not in torch.backends.quantized.supported_engines:
        raise NotApplicable(f"engine {name} is not in torch.backends.quantized.supported_engines")
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = name
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def allow_bf16_fastmath() -> dict:
    """Let oneDNN compute fp32 convolutions and matmuls in bf16 for the rest of this (worker) process: the fp32
    baseline with bf16 fast math (DNNL_DEFAULT_FPMATH_MODE=BF16 in AWS's Graviton guide). Returns what is now set."""
    torch.backends.mkldnn.conv.fp32_precision = "bf16"
    torch.backends.mkldnn.matmul.fp32_precision = "bf16"
    return {"conv": torch.backends.mkldnn.conv.fp32_precision, "matmul": torch.backends.mkldnn.matmul.fp32_precision}


class _Fp32Math(torch.nn.Module):
    """A model whose forward runs with oneDNN's fp32 math exact, whatever this process allows otherwise."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, *args):
        saved = torch.backends.mkldnn.conv.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision
        torch.backends.mkldnn.conv.fp32_precision = torch.backends.mkldnn.matmul.fp32_precision = "ieee"
        try:
            return self.model(*args)
        finally:
            torch.backends.mkldnn.conv.fp32_precision, torch.backends.mkldnn.matmul.fp32_precision = saved


def with_fp32_math(model: torch.nn.Module) -> torch.nn.Module:
    """`model` run in exact fp32 math: the reference a bf16 fast-math baseline is judged against."""
    return _Fp32Math(model).eval()


def _run_quantized_linear() -> None:
    weight = torch.quantize_per_tensor(torch.randn(4, 8), 0.05, 0, torch.qint8)
    packed = torch.ops.quantized.linear_prepack(weight, torch.zeros(4))
    x = torch.quantize_per_tensor(torch.rand(2, 8), 1 / 255, 0, torch.quint8)
    torch.ops.quantized.linear(x, packed, 0.1, 0)


def _run_quantized_conv2d() -> None:
    weight = torch.quantize_per_tensor(torch.randn(4, 3, 3, 3), 0.05, 0, torch.qint8)
    packed = torch.ops.quantized.conv2d_prepack(weight, torch.zeros(4), [1, 1], [1, 1], [1, 1], 1)
    x = torch.quantize_per_tensor(torch.rand(1, 3, 8, 8), 1 / 255, 0, torch.quint8)
    torch.ops.quantized.conv2d.new(x, packed, 0.1, 0)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def probe_engine(name: str) -> str | None:
    """None if quantized linear and conv2d run under engine `name`, else a one-line reason why not."""
    check_engine_name(name)
    if name not in torch.backends.quantized.supported_engines:
        return "not in supported_engines"
    with use_engine(name), warnings.catch_warnings():
        # torch 2.13 warns on every quantized tensor it creates; the probe's tensors are not the user's business.
        warnings.simplefilter("ignore")
        for op, run in (("quantized linear", _run_quantized_linear), ("quantized conv2d", _run_quantized_conv2d)):
            try:
                run()
            except Exception as exc:  # any failure means the engine does not work here
                return f"{op}: {type(exc).__name__}: {_first_line(exc)}"
    return None


def probe_engines(names: Iterable[str] = ENGINES) -> dict[str, str | None]:
    """probe_engine for each name: {engine: None if it works, else the reason}."""
    names = list(names)
    for name in names:
        check_engine_name(name)
    return {name: probe_engine(name) for name in names}
