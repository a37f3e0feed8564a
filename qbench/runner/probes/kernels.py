"""Which kernels a worker really runs: oneDNN's ISA and the library that executes an int8 convolution under the
case's engine (the x86 engine picks oneDNN or FBGEMM itself, from CPUID, whatever the ISA caps say). Read from
oneDNN's verbose output, which it prints once per process at first use: call this before anything else runs."""

from __future__ import annotations

import ctypes
import os
import sys
import tempfile

__all__ = ["probe_kernels", "kernels_like_the_profile"]


def _capture_stdout(fn) -> str:
    """fd-level capture: oneDNN writes with C stdio, which sys.stdout redirection does not see."""
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    libc.fflush(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        try:
            fn()
            libc.fflush(None)
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        sink.seek(0)
        return sink.read().decode("utf-8", "replace")


def _parse(text: str) -> tuple[str | None, dict[str, str]]:
    """oneDNN's ISA line, and the implementation of the first fp32 and the first int8 convolution it executed."""
    isa, convolutions = None, {}
    for line in text.splitlines():
        if not line.startswith("onednn_verbose"):
            continue
        parts = line.split(",")
        if ",info,cpu,isa:" in line:
            isa = line.split("isa:", 1)[1].strip()
        elif "convolution" in parts and "exec" in parts:
            kind = "int8" if any(t in line for t in ("src:u8", "src:s8")) else "fp32"
            fpmath = " fpmath:bf16" if kind == "fp32" and "attr-fpmath:bf16" in line else ""
            convolutions.setdefault(kind, parts[parts.index("convolution") + 1] + fpmath)
    return isa, convolutions


def probe_kernels(engine: str | None) -> dict:
    import torch

    has_onednn = torch.backends.mkldnn.is_available()

    def run() -> None:
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON), torch.no_grad():
            if has_onednn:  # builds without oneDNN exist (some ARM wheels): probe only what is there
                torch.mkldnn_convolution(torch.randn(1, 8, 16, 16), torch.randn(8, 8, 3, 3), None, [0, 0], [1, 1],
                                         [1, 1], 1)
            if engine is not None:
                from torch.ao.nn.quantized import Conv2d

                conv = Conv2d(8, 8, 3)
                conv(torch.quantize_per_tensor(torch.randn(1, 8, 16, 16), 0.1, 0, torch.quint8))

    previous = torch.backends.quantized.engine
    if engine is not None:
        torch.backends.quantized.engine = engine
    try:
        isa, convolutions = _parse(_capture_stdout(run))
    finally:
        torch.backends.quantized.engine = previous
    result = {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "onednn_isa": isa,
              "fp32_conv": f"onednn:{convolutions['fp32']}" if "fp32" in convolutions else None}
    if engine is not None:
        # FBGEMM and QNNPACK print nothing: an int8 convolution oneDNN did not execute ran in the engine's own library.
        fallback = {"qnnpack": "qnnpack", "onednn": "onednn:unnamed"}.get(engine, "fbgemm")
        result["int8_conv"] = f"onednn:{convolutions['int8']}" if "int8" in convolutions else fallback
    return result


def kernels_like_the_profile(runner: str, engine: str, kernels: dict) -> dict:
    """Under a runner profile whose real hosts run another library for this engine's int8 convolutions than this
    host picks from CPUID (x86 under avx2 on a VNNI host: oneDNN here, FBGEMM there), run the engine on that
    library's kernels for the rest of this process and say so (`engine_substitution`); else `kernels` as they are."""
    from qbench.runner.registry.engines import run_engine_on
    from qbench.suite.profiles import EXPECTED_INT8_CONV

    expected = EXPECTED_INT8_CONV.get(runner, {}).get(engine)
    if not expected or kernels.get("int8_conv") == expected:
        return kernels
    run_engine_on(engine, expected)
    found = probe_kernels(expected)  # oneDNN names its ISA once per process: keep the first probe's
    return {**kernels, "int8_conv": found.get("int8_conv"),
            "engine_substitution": {"engine": engine, "kernels_of": expected, "instead_of": kernels.get("int8_conv"),
                                    "why": f"a real {runner} host's {engine} engine runs {expected}; this host's "
                                           f"CPUID makes torch pick {kernels.get('int8_conv')}, which the ISA caps "
                                           "cannot hide"}}
