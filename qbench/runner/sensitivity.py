"""Per-layer quantization sensitivity of one model under one engine (FX static int8), stored as history.

What is measured, on seeded synthetic images (the same images for every variant):
  * per layer, the SQNR (dB) of the fully quantized model's activation at that layer's output against the fp32
    activation at the same place (error accumulated from every layer before it);
  * a one-at-a-time pass over the quantized layers: "only this quantized" (every other layer float) and "all but
    this" (every other layer int8, this one float), each judged by top-1 agreement with the fp32 model and the
    SQNR of its logits.
Layers are ranked most sensitive first by the logits SQNR of "only this quantized" (agreement breaks ties; on few
images agreement moves in coarse steps, SQNR does not).

How the variants are built (method "swap", the default): the model is prepared, calibrated and converted once
(prepare_fx/convert_fx with the engine's default QConfigMapping). The fused float graph and the converted graph name
their layers alike ("layer1.0.conv1" is a fused ConvReLU2d in one and a QuantizedConvReLU2d in the other), so "only
this quantized" is the fused float model with that one layer swapped for quantize → int8 layer → dequantize, and
"all but this" the int8 model with that layer swapped for dequantize → float layer → quantize. The int8 layer's
weights and output scale come from the single calibration (observers see float values whatever else is quantized);
its input scale comes from a fresh observer of the engine's activation type fed that layer's float inputs, where a
QConfigMapping naming only that module would place it. "All but this" re-quantizes the float layer's output with the
scale the int8 layer had, where PyTorch would observe it at the consumer's input: the same unless an op between them
(a clamp, say) changes the range. Method "mapping" runs PyTorch's recipe itself (two QConfigMappings, each prepared,
calibrated and converted, per layer): exact, and about 20 times slower on a ResNet.

This is the torch side (analyze, sensitivity_task), run inside a worker; qbench.launch.sensitivity starts it through
qbench's isolated worker path and qbench.history.sensitivity reads the stored runs back.
"""

from __future__ import annotations

import fnmatch
import hashlib
import time

from qbench.errors import ConfigError
from qbench.launch.sensitivity import EVAL_BATCH, METHODS, RANKED_BY

__all__ = ["quantized_layers", "analyze", "sensitivity_task"]


# ---------------------------------------------------------------------------------------------- measures


def _is_quantized_layer(module) -> bool:
    """A converted module with int8 weights (conv, linear and their fused variants)."""
    kind = type(module).__module__
    return kind.startswith("torch.ao.nn.") and ".quantized" in kind and callable(getattr(module, "weight", None))


def quantized_layers(quantized_model, pattern: str | None = None) -> list[tuple[str, str]]:
    """(name, class name) of the int8-weight layers of a converted model, in graph order, names matching the
    fnmatch `pattern` when given."""
    found = [(name, type(m).__name__) for name, m in quantized_model.named_modules() if _is_quantized_layer(m)]
    if pattern is None:
        return found
    kept = [item for item in found if fnmatch.fnmatchcase(item[0], pattern)]
    if not kept:
        names = ", ".join(name for name, _ in found[:8]) + (", …" if len(found) > 8 else "")
        raise ConfigError(f"--layers {pattern!r} matches none of the {len(found)} quantized layers ({names})")
    return kept


# ---------------------------------------------------------------------------------------------- swaps

def _swap(root, name: str, module):
    """Put `module` at dotted `name` inside root; returns the module that was there."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    previous = getattr(parent, child)
    setattr(parent, child, module)
    return previous


def _only_quantized(layer, qparams):
    """The float side of "only this layer quantized": quantize its input as the int8 model does, run the int8
    layer, dequantize its output."""
    import torch

    scale, zero_point, dtype = qparams

    class OnlyQuantized(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return self.layer(torch.quantize_per_tensor(x, scale, zero_point, dtype)).dequantize()

    return OnlyQuantized()


def _only_float(layer, scale: float, zero_point: int, dtype):
    """The int8 side of "all but this layer": dequantize its input, run the fused float layer, quantize its output
    with the scale the int8 layer's output had."""
    import torch

    class OnlyFloat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layer = layer

        def forward(self, x):
            return torch.quantize_per_tensor(self.layer(x.dequantize()), scale, zero_point, dtype)

    return OnlyFloat()


def _strip_observers(prepared) -> None:
    """Replace every observer of a prepared model with Identity: what is left is the fused float model."""
    import torch
    from torch.ao.quantization.observer import ObserverBase

    names = [name for name, m in prepared.named_modules() if isinstance(m, ObserverBase)]
    for name in names:
        _swap(prepared, name, torch.nn.Identity())


# ---------------------------------------------------------------------------------------------- the analysis

def _batches(images, size: int = EVAL_BATCH):
    return [images[start:start + size] for start in range(0, len(images), size)]


def _logits(model, images):
    import torch

    with torch.inference_mode():
        out = torch.cat([model(batch) for batch in _batches(images)])
    return out.dequantize() if out.is_quantized else out


def _logit_figures(reference, logits) -> dict:
    from qbench.runner.probes.accuracy import logits_agreement, sqnr_db

    return {"agreement": logits_agreement(logits, reference), "sqnr_db": sqnr_db(logits, reference)}


def _layer_sqnr(fused, quantized, names: list[str], images) -> tuple[dict, dict]:
    """Per layer: SQNR of the int8 model's output at that layer against the fused float model's, over all images;
    and the (scale, zero_point, dtype) of each int8 layer's output."""
    import torch

    from qbench.runner.probes.accuracy import power_sums, sqnr_from_powers

    sums = {name: [0.0, 0.0] for name in names}
    captured: dict[str, dict] = {"float": {}, "int8": {}}
    qparams: dict[str, tuple] = {}

    def output_hook(side, name):
        def hook(module, inputs, output):
            captured[side][name] = output
            if side == "int8":
                qparams[name] = (output.q_scale(), output.q_zero_point(), output.dtype)
        return hook

    handles = [model.get_submodule(name).register_forward_hook(output_hook(side, name))
               for side, model in (("float", fused), ("int8", quantized)) for name in names]
    try:
        with torch.inference_mode():
            for batch in _batches(images):
                fused(batch)
                quantized(batch)
                for name in names:
                    signal, noise = power_sums(captured["int8"][name], captured["float"][name])
                    sums[name][0] += signal
                    sums[name][1] += noise
                captured["float"].clear()
                captured["int8"].clear()
    finally:
        for handle in handles:
            handle.remove()
    return {name: sqnr_from_powers(*sums[name]) for name in names}, qparams


def _input_qparams(fused, names: list[str], calibration: list, observer_factory) -> dict:
    """(scale, zero_point, dtype) for each named layer's input, from a fresh activation observer fed the float
    inputs that layer sees on the calibration batches."""
    import torch

    observers = {name: observer_factory() for name in names}
    handles = [fused.get_submodule(name).register_forward_pre_hook(
        lambda module, inputs, name=name: observers[name](inputs[0])) for name in names]
    try:
        with torch.no_grad():
            for batch in calibration:
                fused(batch)
    finally:
        for handle in handles:
            handle.remove()
    found = {}
    for name, observer in observers.items():
        scale, zero_point = observer.calculate_qparams()
        found[name] = (float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0]), observer.dtype)
    return found


def _rank_key(entry: dict):
    only = entry["only_this_quantized"]
    return (only["sqnr_db"], only["agreement"], entry["layer"])


def _fx_variant(float_model, mapping, calibration: list, example):
    """prepare_fx → calibrate → convert_fx of a copy of float_model under `mapping`."""
    import copy

    import torch
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    prepared = prepare_fx(copy.deepcopy(float_model), mapping, (example,))
    with torch.no_grad():
        for batch in calibration:
            prepared(batch)
    return prepared, convert_fx(copy.deepcopy(prepared))


def _swap_variants(name: str, fused, quantized, input_qparams: dict, output_qparams: dict, reference, images):
    """"only this quantized" and "all but this" of one layer by swapping modules (the default method)."""
    int8_layer, float_layer = quantized.get_submodule(name), fused.get_submodule(name)
    _swap(fused, name, _only_quantized(int8_layer, input_qparams[name]))
    try:
        only = _logit_figures(reference, _logits(fused, images))
    finally:
        _swap(fused, name, float_layer)
    _swap(quantized, name, _only_float(float_layer, *output_qparams[name]))
    try:
        all_but = _logit_figures(reference, _logits(quantized, images))
    finally:
        _swap(quantized, name, int8_layer)
    return only, all_but


def _mapping_variants(name: str, float_model, mapping, calibration: list, reference, images):
    """The same two variants by PyTorch's recipe: a QConfigMapping with global None and only this module name set,
    and the engine's mapping with this module name set to None, each prepared, calibrated and converted."""
    import copy

    from torch.ao.quantization import QConfigMapping

    only_mapping = QConfigMapping().set_global(None).set_module_name(name, mapping.global_qconfig)
    _, only_model = _fx_variant(float_model, only_mapping, calibration, images[:1])
    all_but_mapping = copy.deepcopy(mapping).set_module_name(name, None)
    _, all_but_model = _fx_variant(float_model, all_but_mapping, calibration, images[:1])
    return (_logit_figures(reference, _logits(only_model, images)),
            _logit_figures(reference, _logits(all_but_model, images)))


def analyze(float_model, engine: str, calibration: list, images, *, layers: str | None = None,
            method: str = "swap") -> dict:
    """The `metrics.sensitivity` figures (without the "images" identity) of `float_model` quantized with FX
    static int8 under `engine`, calibrated on `calibration` batches and evaluated on `images`.

    method "swap" (default) builds the one-at-a-time variants by swapping modules of one quantized model (see the
    module docstring); "mapping" prepares, calibrates and converts two models per layer with QConfigMappings, as
    PyTorch's sensitivity recipe does."""
    import torch
    from torch.ao.quantization import get_default_qconfig_mapping

    from qbench.runner.registry.engines import use_engine

    if method not in METHODS:
        raise ConfigError(f"unknown sensitivity method {method!r}; allowed: {', '.join(METHODS)}")
    phases, clock = {}, time.perf_counter()
    float_model = float_model.eval()
    mapping = get_default_qconfig_mapping(engine)
    with use_engine(engine):
        try:
            fused, quantized = _fx_variant(float_model, mapping, calibration, images[:1])
        except torch.fx.proxy.TraceError as exc:
            raise ConfigError(f"not symbolically traceable: {str(exc).strip().splitlines()[0]}") from None
        _strip_observers(fused)
        phases["quantize"], clock = time.perf_counter() - clock, time.perf_counter()
        names = [name for name, _ in quantized_layers(quantized, layers)]
        types = dict(quantized_layers(quantized))
        reference = _logits(float_model, images)
        full = _logit_figures(reference, _logits(quantized, images))
        per_layer_sqnr, output_qparams = _layer_sqnr(fused, quantized, names, images)
        phases["per_layer_sqnr"], clock = time.perf_counter() - clock, time.perf_counter()
        if method == "swap":
            input_qparams = _input_qparams(fused, names, calibration, mapping.global_qconfig.activation)
        per_layer = []
        for name in names:
            if method == "swap":
                only, all_but = _swap_variants(name, fused, quantized, input_qparams, output_qparams, reference,
                                               images)
            else:
                only, all_but = _mapping_variants(name, float_model, mapping, calibration, reference, images)
            per_layer.append({"layer": name, "type": types[name], "sqnr_db": per_layer_sqnr[name],
                              "only_this_quantized": only, "all_but_this": all_but})
        phases["one_at_a_time"] = time.perf_counter() - clock
    ranking = [entry["layer"] for entry in sorted(per_layer, key=_rank_key)]
    for entry in per_layer:
        entry["rank"] = ranking.index(entry["layer"]) + 1
    return {"engine": engine, "method": method, "full": full, "per_layer": per_layer, "ranking": ranking,
            "ranked_by": RANKED_BY, "layers_total": len(types), "layers_filter": layers, "phases_s": phases}


def _images_identity(images, seed: int) -> dict:
    digest = hashlib.sha256(f"{tuple(images.shape)}:{images.dtype};".encode())
    digest.update(images.contiguous().numpy().tobytes())
    return {"source": "synthetic", "count": len(images), "seed": seed, "sha256": digest.hexdigest()}


def _eval_images(count: int, input_size: int, seed: int):
    """Seeded synthetic images from their own stream (never the calibration's nor the timed example's)."""
    from qbench.runner.registry.data import IMAGENET_MEAN, IMAGENET_STD
    import torch

    generator = torch.Generator().manual_seed(int.from_bytes(
        hashlib.sha256(f"qbench:sensitivity:{seed}".encode()).digest()[:8], "little") & (2**63 - 1))
    pixels = torch.rand(count, 3, input_size, input_size, generator=generator)
    return (pixels - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def sensitivity_task(task: dict) -> dict:
    """Worker entry point: task {"case", "images", "layers"} → a result whose metrics hold "sensitivity"."""
    import torch

    from qbench.runner.probes.kernels import probe_kernels
    from qbench.records import Case
    from qbench.runner.registry.data import calibration_batches, transform_for
    from qbench.runner.registry.models import open_model
    from qbench.runner.registry.describe import describe_qconfig
    from qbench.runner.worker import verify_runner
    from torch.ao.quantization import get_default_qconfig_mapping

    case = Case.from_dict(task["case"])
    kernels = probe_kernels(case.engine)
    verify_runner(case.runner, kernels)
    torch.manual_seed(case.seed)
    source = open_model(case.model, case.weights, seed=case.seed)
    calibration, calibration_identity = calibration_batches(case.calibration, source.input_size,
                                                            transform_for(source))
    images = _eval_images(int(task["images"]), source.input_size, case.seed)
    figures = analyze(source.float_model(), case.engine, calibration, images, layers=task.get("layers"),
                      method=task.get("method", "swap"))
    phases = figures.pop("phases_s")
    return {"status": "ok",
            "metrics": {"sensitivity": {"images": _images_identity(images, case.seed), **figures}},
            "details": {"qconfig": {**describe_qconfig(get_default_qconfig_mapping(case.engine)),
                                    "origin": f"get_default_qconfig_mapping({case.engine!r})"},
                        "phases_s": phases, "calibration": calibration_identity,
                        "weights": source.weights_info(), "kernels": kernels,
                        "input_shape": list(images.shape)}}
