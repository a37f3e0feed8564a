"""The pt2e mode's steps: pick torchao's quantizer for an engine, export the float model, prepare_pt2e, calibrate,
convert_pt2e, and compile the result with inductor's freezing so that the q/dq pairs become int8 kernels.

Engines: "x86" uses X86InductorQuantizer (oneDNN int8 kernels through inductor). On x86, "onednn" would measure
the same kernels again, so it is not applicable (measured once, under x86); on aarch64, where the x86 engine does not
run, "onednn" uses torchao's ArmInductorQuantizer (oneDNN, with Arm Compute Library kernels, through inductor). No
pt2e quantizer lowers to FBGEMM; "qnnpack" uses XNNPACKQuantizer when executorch (or an older torchao) provides it,
else it is not applicable.

Export: strict torch.export first, then non-strict. With torch 2.13 + torchao 0.18 the non-strict export of a
ResNet breaks the quantizer ("Input partition has more than one output node": a block reuses one ReLU module,
which non-strict export keeps as one node), while strict export gives every call its own node. The path that ran
is in the notes; a model that neither path handles is NotApplicable with both reasons. The batch dimension is
exported dynamic (from a sample of at least 2, since export specializes a size of 1), so calibration batches and
evaluation batches of any size run through the same model.

Compilation sets torch._inductor.config.freezing = True for the rest of the process: freezing is what turns the
weights into constants that the oneDNN weight-prepack passes fold, and a later recompile (a new batch size) needs
it too. Without it, inductor fails with "UnsupportedOperatorException: onednn.qconv_prepack".
"""

from __future__ import annotations

import importlib
import platform
import statistics
import time

import torch
from torch import nn

from qbench.errors import NotApplicable

__all__ = ["PT2E_ENGINES", "XNNPACK_MODULES", "pt2e_quantizer", "export_and_prepare", "compile_frozen",
           "quantize_pt2e", "describe_quantization_config"]

PT2E_ENGINES = ("x86", "qnnpack", "onednn (aarch64)")
XNNPACK_MODULES = ("executorch.backends.xnnpack.quantizer.xnnpack_quantizer",
                   "torchao.quantization.pt2e.quantizer.xnnpack_quantizer")
_NOT_APPLICABLE = {
    "onednn": "pt2e's X86InductorQuantizer runs oneDNN's int8 kernels, which qbench records under engine x86; "
              "onednn would measure the same kernels twice",
    "fbgemm": "no pt2e quantizer lowers to FBGEMM (X86InductorQuantizer targets oneDNN: engine x86)",
}
# Forward passes timed before and after compiling, for the notes only (the latency probe measures the case).
_TIMED_CALLS = 3


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


def _describe_spec(spec) -> dict | None:
    """A torchao QuantizationSpec as data: observer class, dtype, range, qscheme (ch_axis when per-channel)."""
    if spec is None:
        return None
    observer = spec.observer_or_fake_quant_ctr()
    data = {"observer": type(observer).__name__, "dtype": str(spec.dtype), "qscheme": str(spec.qscheme),
            "quant_min": spec.quant_min, "quant_max": spec.quant_max, "is_dynamic": spec.is_dynamic}
    if spec.ch_axis is not None:
        data["ch_axis"] = spec.ch_axis
    return data


def describe_quantization_config(config) -> dict:
    """A torchao QuantizationConfig as data: activation (input), output activation, weight."""
    return {"kind": "pt2e_quantization_config", "activation": _describe_spec(config.input_activation),
            "output_activation": _describe_spec(config.output_activation),
            "weight": _describe_spec(config.weight), "is_qat": config.is_qat}


def _x86_quantizer() -> tuple:
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    config = x86.get_default_x86_inductor_quantization_config()
    quantizer = x86.X86InductorQuantizer().set_global(config)
    return quantizer, {**describe_quantization_config(config), "quantizer": "X86InductorQuantizer",
                       "origin": "torchao get_default_x86_inductor_quantization_config()"}


def _xnnpack_quantizer() -> tuple:
    tried = []
    for name in XNNPACK_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            tried.append(f"{name}: {_first_line(exc)}")
            continue
        config = module.get_symmetric_quantization_config()
        quantizer = module.XNNPACKQuantizer().set_global(config)
        return quantizer, {**describe_quantization_config(config), "quantizer": "XNNPACKQuantizer",
                           "origin": f"{name}.get_symmetric_quantization_config()"}
    raise NotApplicable("pt2e for qnnpack needs XNNPACKQuantizer, which is not importable here (install executorch); "
                        + "; ".join(tried))


def _arm_quantizer() -> tuple:
    from torchao.quantization.pt2e.quantizer import arm_inductor_quantizer as arm

    config = arm.get_default_arm_inductor_quantization_config()
    quantizer = arm.ArmInductorQuantizer().set_global(config)
    return quantizer, {**describe_quantization_config(config), "quantizer": "ArmInductorQuantizer",
                       "origin": "torchao get_default_arm_inductor_quantization_config()"}


def pt2e_quantizer(engine: str) -> tuple:
    """(quantizer, its configuration as data) for `engine`; NotApplicable with the reason where there is none."""
    if engine == "onednn" and platform.machine() in ("aarch64", "arm64"):
        return _arm_quantizer()
    if engine in _NOT_APPLICABLE:
        raise NotApplicable(_NOT_APPLICABLE[engine])
    if engine == "qnnpack":
        return _xnnpack_quantizer()
    if engine == "x86":
        return _x86_quantizer()
    raise NotApplicable(f"pt2e has no quantizer for engine {engine!r}; it runs under {', '.join(PT2E_ENGINES)}")


def _export_sample(example_input: torch.Tensor) -> torch.Tensor:
    """The example input with a batch of at least 2: export would specialize a batch of 1 to a constant."""
    return example_input if len(example_input) >= 2 else example_input.repeat(2, *[1] * (example_input.dim() - 1))


def export_and_prepare(model: nn.Module, quantizer, example_input: torch.Tensor) -> tuple:
    """torch.export (strict, then non-strict) with a dynamic batch, then prepare_pt2e. Returns (prepared module,
    the path that worked, {path: reason} of the paths that failed before it); NotApplicable when none works."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    sample = _export_sample(example_input)
    failures = {}
    for path, strict in (("strict", True), ("non-strict", False)):
        try:
            exported = torch.export.export(model, (sample,), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
                                           strict=strict)
            return prepare_pt2e(exported.module(), quantizer), path, failures
        except Exception as exc:  # export and the quantizer raise many types; each is a reason for the record
            failures[path] = _first_line(exc)
    raise NotApplicable("pt2e: no export path works: " + "; ".join(f"{p} export: {r}" for p, r in failures.items()))


def _median_call_s(model, example_input: torch.Tensor) -> float:
    times = []
    with torch.inference_mode():
        for _ in range(_TIMED_CALLS):
            start = time.perf_counter()
            model(example_input)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def compile_frozen(model: nn.Module, example_input: torch.Tensor):
    """torch.compile with inductor freezing (left on for the process, see the module docstring), compiled by one
    call on the example input under inference_mode, the grad mode the latency probe runs in."""
    torch._inductor.config.freezing = True
    compiled = torch.compile(model)
    with torch.inference_mode():
        compiled(example_input)
    return compiled


def quantize_pt2e(model: nn.Module, quantizer, calibration: list, example_input: torch.Tensor, clock) -> tuple:
    """export+prepare, calibrate, convert and compile `model`, timing each step in `clock` (phases export,
    calibrate, convert, compile). Returns (compiled model, notes)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    with clock("export"):
        model, path, failures = export_and_prepare(model, quantizer, example_input)
    with clock("calibrate"), torch.no_grad():
        for batch in calibration:
            model(batch)
    with clock("convert"):
        model = convert_pt2e(model)
    uncompiled_s = _median_call_s(model, example_input)
    with clock("compile"):
        compiled = compile_frozen(model, example_input)
    compiled_s = _median_call_s(compiled, example_input)
    notes = {"export_path": path, "export_failures": failures, "compiler": "torch.compile(inductor, freezing=True)",
             "uncompiled_forward_s": uncompiled_s, "compiled_forward_s": compiled_s,
             "speedup_vs_uncompiled": uncompiled_s / compiled_s if compiled_s > 0 else None,
             "calibration_batches": len(calibration), "calibration_samples": sum(len(b) for b in calibration)}
    return compiled, notes
