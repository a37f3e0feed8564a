"""Quantization modes: one small recipe per mode, registered by name, that turns a ModelSource into a Prepared model.

apply_mode() is the one entry point. It leaves torch.backends.quantized.engine set to the case's engine, since the
caller measures the model afterwards in the same process (and, for pt2e, torch._inductor.config.freezing on).

The qconfig name (qbench.suite.qconfig_names) applies to static_eager, static_fx and qat. With "@engine" the model is
prepared and calibrated (or fine-tuned) under that engine's qconfig, and always converted under the case's engine:
conversion is where weights are packed, and the packed weights decide which engine's kernels run.

qat fine-tunes by distillation: the calibration images are unlabelled, so the loss is the mean squared error
between the fake-quantized model's logits and its fp32 parent's logits on the same batch (MSE rather than KL of
softmaxes: random-weight models have near-uniform softmaxes, whose KL has almost no gradient).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from qbench.errors import ConfigError, NotApplicable, RegistryError
from qbench.runner.probes.size import classify_module
from qbench.suite.qconfig_names import DEFAULT, parse_qconfig_name, qconfig_skip_reason
from qbench.records import ENGINELESS_MODES, MODES, QatSpec
from qbench.runner.registry import ModelSource, Prepared
from qbench.runner.registry.engines import ENGINES, check_engine_name, probe_engine, use_engine
from qbench.runner.registry.qconfigs import build_qconfig, build_qconfig_mapping, calibration_engine, qconfig_origin

__all__ = ["MODES", "QAT_LOSS", "ModeInputs", "apply_mode", "describe_qconfig", "register_mode", "registered_modes"]

# Module types quantize_dynamic converts; exact types, as its default mapping matches them.
_DYNAMIC_TYPES = (nn.Linear, nn.LSTM, nn.GRU)
_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)
_SYMMETRIC = (torch.per_tensor_symmetric, torch.per_channel_symmetric)
QAT_LOSS = "mse(logits, fp32 parent logits)"
QAT_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class ModeInputs:
    """What a recipe works from. `engine` is None only for engine-less modes; `qconfig` is a qconfig name
    (qbench.suite.qconfig_names); `qat` the fine-tuning of a qat case (None: QatSpec's defaults)."""

    source: ModelSource
    engine: str | None
    calibration: list[torch.Tensor]
    example_input: torch.Tensor
    qconfig: str = DEFAULT
    qat: QatSpec | None = None


class _Clock:
    """Wall seconds per recipe step, in the order the steps ran."""

    def __init__(self):
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.phases[step] = time.perf_counter() - start


# A recipe returns (model, qconfig description, notes); apply_mode adds the phases.
Recipe = Callable[[ModeInputs, _Clock], tuple[nn.Module, "dict | None", dict]]
_RECIPES: dict[str, Recipe] = {}


def register_mode(name: str) -> Callable[[Recipe], Recipe]:
    """Decorator registering a recipe under `name`; a name can be registered once."""
    def register(recipe: Recipe) -> Recipe:
        if name in _RECIPES:
            raise RegistryError(f"mode {name!r} is already registered")
        _RECIPES[name] = recipe
        return recipe
    return register


def registered_modes() -> tuple[str, ...]:
    """Names of the registered modes, in registration order."""
    return tuple(_RECIPES)


# ---------------------------------------------------------------------------------------------- qconfig as data

def _name(value) -> str | None:
    return None if value is None else str(value)


def _describe_observer(factory) -> dict:
    """An observer factory (class or with_args partial) as data, read from an instance it makes."""
    with warnings.catch_warnings():
        # Observers built with reduce_range warn that it is deprecated; this one only exists to be read.
        warnings.simplefilter("ignore", UserWarning)
        observer = factory()
    inner = getattr(observer, "activation_post_process", None)  # a FakeQuantize wraps the real observer
    qscheme = getattr(observer, "qscheme", None)
    data = {
        "observer": type(inner if inner is not None else observer).__name__,
        "dtype": _name(getattr(observer, "dtype", None)),
        "qscheme": _name(qscheme),
        "quant_min": getattr(observer, "quant_min", None),
        "quant_max": getattr(observer, "quant_max", None),
        "reduce_range": getattr(inner if inner is not None else observer, "reduce_range", None),
        "per_channel": qscheme in _PER_CHANNEL,
        "symmetric": qscheme in _SYMMETRIC,
    }
    if data["per_channel"]:
        data["ch_axis"] = observer.ch_axis
    if inner is not None:
        data["fake_quantize"] = type(observer).__name__
    if getattr(observer, "is_dynamic", False):
        data["is_dynamic"] = True
    return data


def describe_qconfig(qconfig) -> dict | None:
    """A QConfig or QConfigMapping as JSON data: observer class, dtype, qscheme, quant range, reduce_range (and
    ch_axis when per-channel) for activation and weight. A mapping is described by its global qconfig plus the
    number of per-object-type and per-module-name overrides. None stays None."""
    from torch.ao.quantization import QConfigMapping

    if qconfig is None:
        return None
    if isinstance(qconfig, QConfigMapping):
        described = describe_qconfig(qconfig.global_qconfig) or {}
        return {**described, "kind": "qconfig_mapping",
                "object_type_overrides": len(qconfig.object_type_qconfigs),
                "module_name_overrides": len(qconfig.module_name_qconfigs) + len(qconfig.module_name_regex_qconfigs)
                + len(qconfig.module_name_object_type_order_qconfigs)}
    return {"kind": "qconfig", "activation": _describe_observer(qconfig.activation),
            "weight": _describe_observer(qconfig.weight)}


def _one_or_all(values: set):
    """A single value as itself, several as a sorted list, none as None."""
    values = sorted(values, key=str)
    return None if not values else values[0] if len(values) == 1 else values


def _quantized_weights(module: nn.Module) -> list[torch.Tensor]:
    if callable(getattr(module, "weight", None)):
        return [module.weight()]
    if callable(getattr(module, "get_weight", None)):
        return list(module.get_weight().values())
    return []


def _is_symmetric(weight: torch.Tensor) -> bool:
    if weight.qscheme() in _PER_CHANNEL:
        return bool((weight.q_per_channel_zero_points() == 0).all())
    return weight.q_zero_point() == 0


def _describe_converted(model: nn.Module) -> dict:
    """The quantization of an already converted model, read from its quantized modules: weight dtype and scheme,
    and how many modules carry a static output scale."""
    import torch.ao.nn.quantized as nnq

    weights, scaled, quantized = [], 0, 0
    activation_dtypes = set()
    for module in model.modules():
        if isinstance(module, nnq.Quantize):
            activation_dtypes.add(str(module.dtype))
        if classify_module(module) != "quantized":
            continue
        quantized += 1
        weights += [w for w in _quantized_weights(module) if w.is_quantized]
        scaled += isinstance(getattr(module, "scale", None), float)
    per_channel = {w.qscheme() in _PER_CHANNEL for w in weights}
    weight = {"dtype": _one_or_all({str(w.dtype) for w in weights}),
              "qscheme": _one_or_all({str(w.qscheme()) for w in weights}),
              "per_channel": _one_or_all(per_channel),
              "symmetric": _one_or_all({_is_symmetric(w) for w in weights})}
    if True in per_channel:
        weight["ch_axis"] = _one_or_all({w.q_per_channel_axis() for w in weights if w.qscheme() in _PER_CHANNEL})
    return {"kind": "converted", "quantized_modules": quantized, "weight": weight,
            "activation": {"dtype": _one_or_all(activation_dtypes), "modules_with_scale": scaled}}


# ---------------------------------------------------------------------------------------------- recipes

def _calibrate(model: nn.Module, calibration: list) -> None:
    if not calibration:
        raise ConfigError("static quantization needs at least one calibration batch")
    with torch.no_grad():
        for batch in calibration:
            model(batch)


def _calibration_notes(calibration: list) -> dict:
    return {"calibration_batches": len(calibration), "calibration_samples": sum(len(b) for b in calibration)}


@register_mode("fp32")
def _fp32(inputs: ModeInputs, clock: _Clock):
    with clock("build"):
        model = inputs.source.float_model()
    return model, None, {}


@register_mode("dynamic")
def _dynamic(inputs: ModeInputs, clock: _Clock):
    from torch.ao.quantization import default_dynamic_qconfig, quantize_dynamic

    with clock("build"):
        model = inputs.source.float_model()
    if not any(type(m) in _DYNAMIC_TYPES for m in model.modules()):
        raise NotApplicable("no Linear/LSTM/GRU module to quantize dynamically")
    with use_engine(inputs.engine), clock("convert"):
        model = quantize_dynamic(model, set(_DYNAMIC_TYPES), dtype=torch.qint8, inplace=True)
    converted = Counter(type(m).__name__ for m in model.modules()
                        if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic"))
    qconfig = {**describe_qconfig(default_dynamic_qconfig), "name": DEFAULT,
               "origin": "quantize_dynamic({Linear, LSTM, GRU}, dtype=torch.qint8)"}
    return model, qconfig, {"converted_modules": sum(converted.values()), "converted_by_type": dict(converted)}


def _qconfig_data(qconfig, inputs: ModeInputs, *, qat: bool = False, mapping: bool = False) -> dict:
    """describe_qconfig plus the qconfig name and the engines: the one it was calibrated for, the one that ran."""
    return {**describe_qconfig(qconfig), "name": parse_qconfig_name(inputs.qconfig).name,
            "calibrated_for": calibration_engine(inputs.qconfig, inputs.engine), "engine": inputs.engine,
            "origin": qconfig_origin(inputs.qconfig, inputs.engine, qat=qat, mapping=mapping)}


@contextlib.contextmanager
def _packing(inputs: ModeInputs) -> Iterator[None]:
    """Convert under the case's engine. A named qconfig the engine cannot pack (oneDNN refuses weights with
    non-zero zero points) is not applicable, not a failure of qbench."""
    with use_engine(inputs.engine):
        try:
            yield
        except RuntimeError as exc:
            if inputs.qconfig == DEFAULT:
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise NotApplicable(f"engine {inputs.engine} cannot pack qconfig {inputs.qconfig}: {first}") from exc


def _prepare_fx(prepare, model: nn.Module, mapping, example_input: torch.Tensor):
    try:
        return prepare(model, mapping, (example_input,))
    except torch.fx.proxy.TraceError as exc:
        raise NotApplicable(f"not symbolically traceable: {str(exc).strip().splitlines()[0]}") from exc


@register_mode("static_eager")
def _static_eager(inputs: ModeInputs, clock: _Clock):
    from torch.ao.quantization import convert, prepare

    with clock("build"):
        model = inputs.source.quantizable_model()
    with clock("fuse"):
        model.fuse_model(is_qat=False)
    qconfig = build_qconfig(inputs.qconfig, inputs.engine)
    model.qconfig = qconfig
    with use_engine(calibration_engine(inputs.qconfig, inputs.engine)):
        with clock("prepare"):
            prepare(model, inplace=True)
        with clock("calibrate"):
            _calibrate(model, inputs.calibration)
    with _packing(inputs), clock("convert"):
        convert(model, inplace=True)
    return model, _qconfig_data(qconfig, inputs), _calibration_notes(inputs.calibration)


@register_mode("static_fx")
def _static_fx(inputs: ModeInputs, clock: _Clock):
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with clock("build"):
        model = inputs.source.float_model()
    mapping = build_qconfig_mapping(inputs.qconfig, inputs.engine)
    with use_engine(calibration_engine(inputs.qconfig, inputs.engine)):
        with clock("prepare"):
            model = _prepare_fx(prepare_fx, model, mapping, inputs.example_input)
        with clock("calibrate"):
            _calibrate(model, inputs.calibration)
    with _packing(inputs), clock("convert"):
        model = convert_fx(model)
    return model, _qconfig_data(mapping, inputs, mapping=True), _calibration_notes(inputs.calibration)


@register_mode("prequantized")
def _prequantized(inputs: ModeInputs, clock: _Clock):
    with use_engine(inputs.engine), clock("build"):
        model = inputs.source.prequantized_model(inputs.engine)
    return model, {**_describe_converted(model), "name": DEFAULT, "origin": "torchvision quantize=True"}, {}


def _check_qat_spec(spec: QatSpec) -> None:
    if spec.schedule not in QAT_SCHEDULES:
        raise ConfigError(f"qat schedule {spec.schedule!r} is unknown; allowed: {', '.join(QAT_SCHEDULES)}")
    if spec.steps < 0 or spec.lr <= 0 or spec.momentum < 0:
        raise ConfigError(f"qat needs steps >= 0, lr > 0 and momentum >= 0 (got {spec})")


def _distillation_loss(model: nn.Module, batches: list, targets: list) -> float:
    """Mean distillation loss over every batch, without training (observers still run unless disabled)."""
    with torch.no_grad():
        return sum(nn.functional.mse_loss(model(b), t).item() for b, t in zip(batches, targets)) / len(batches)


def _finite(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise RuntimeError(f"qat diverged: loss {value} {where}; lower the suite's [qat] lr")
    return value


def _finetune(model: nn.Module, teacher: nn.Module, batches: list, spec: QatSpec) -> dict:
    """`spec.steps` SGD steps on the batches (cycled), distilling the teacher's logits; returns the notes. With
    0 steps the observers only see one pass over the batches (used to rebuild a cached model's skeleton)."""
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats
    from torch.ao.quantization import disable_observer

    with torch.no_grad():
        targets = [teacher(batch) for batch in batches]
    model.eval()
    loss_start = _finite(_distillation_loss(model, batches, targets), "before training")  # also calibrates
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, spec.steps)) if spec.schedule == "cosine" \
        else torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    model.train()
    losses, lrs = [], []
    for step in range(spec.steps):
        if step == spec.freeze_observers_after:
            model.apply(disable_observer)
        if step == spec.freeze_bn_after:
            model.apply(freeze_bn_stats)
        loss = nn.functional.mse_loss(model(batches[step % len(batches)]), targets[step % len(batches)])
        optimizer.zero_grad()
        loss.backward()
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        losses.append(_finite(loss.item(), f"at step {step}"))
    model.apply(disable_observer)
    model.eval()
    loss_end = _finite(_distillation_loss(model, batches, targets), "after training")
    return {"qat_path": "prepare_qat_fx", "loss": QAT_LOSS, "steps": spec.steps, "schedule": spec.schedule,
            "loss_start": loss_start, "loss_end": loss_end,
            "loss_first_step": losses[0] if losses else None,
            "loss_last_step": losses[-1] if losses else None, "lr_first_step": lrs[0] if lrs else None,
            "lr_last_step": lrs[-1] if lrs else None,
            **_calibration_notes(batches)}


@register_mode("qat")
def _qat(inputs: ModeInputs, clock: _Clock):
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx

    spec = inputs.qat or QatSpec()
    _check_qat_spec(spec)
    if not inputs.calibration:
        raise ConfigError("qat needs at least one calibration batch to fine-tune on")
    with clock("build"):
        teacher = inputs.source.float_model()
        model = copy.deepcopy(teacher).train()
    mapping = build_qconfig_mapping(inputs.qconfig, inputs.engine, qat=True)
    with use_engine(calibration_engine(inputs.qconfig, inputs.engine)):
        with clock("prepare"):
            model = _prepare_fx(prepare_qat_fx, model, mapping, inputs.example_input)
        with clock("train"):
            notes = _finetune(model, teacher, inputs.calibration, spec)
    with _packing(inputs), clock("convert"):
        model = convert_fx(model)
    return model.eval(), _qconfig_data(mapping, inputs, qat=True, mapping=True), notes


@register_mode("pt2e")
def _pt2e(inputs: ModeInputs, clock: _Clock):
    from qbench.runner.registry.pt2e import pt2e_quantizer, quantize_pt2e

    quantizer, description = pt2e_quantizer(inputs.engine)
    if not inputs.calibration:
        raise ConfigError("pt2e needs at least one calibration batch")
    with clock("build"):
        model = inputs.source.float_model()
    model, notes = quantize_pt2e(model, quantizer, inputs.calibration, inputs.example_input, clock)
    return model, {**description, "name": DEFAULT, "engine": inputs.engine}, notes


# ---------------------------------------------------------------------------------------------- entry point

def _check_engine(mode: str, engine: str | None) -> None:
    """RegistryError for an engine this mode cannot take, NotApplicable for one that does not run here."""
    if mode in ENGINELESS_MODES:
        if engine is not None:
            raise RegistryError(f"mode {mode} takes no engine (got {engine!r})")
        return
    if engine is None:
        raise RegistryError(f"mode {mode} needs an engine; allowed: {', '.join(ENGINES)}")
    check_engine_name(engine)
    reason = probe_engine(engine)
    if reason is not None:
        raise NotApplicable(f"engine {engine} does not work here: {reason}")


def apply_mode(mode: str, source: ModelSource, *, engine: str | None, calibration: list[torch.Tensor],
               example_input: torch.Tensor, qconfig: str = DEFAULT, qat: QatSpec | None = None) -> Prepared:
    """Build `source`'s model quantized as `mode` under `engine` with qconfig name `qconfig` (and, for qat, the
    fine-tuning `qat`); on return the process's engine is `engine`.

    Raises RegistryError for an unknown mode or engine (or an engine given to fp32 / missing for the others),
    ConfigError for a malformed qconfig name, NotApplicable when this mode cannot take this qconfig or handle this
    model, or the engine does not work here.
    """
    if mode not in _RECIPES:
        raise RegistryError(f"unknown mode {mode!r}; allowed: {', '.join(_RECIPES)}")
    reason = qconfig_skip_reason(mode, qconfig)
    if reason:
        raise NotApplicable(reason)
    _check_engine(mode, engine)
    clock = _Clock()
    inputs = ModeInputs(source, engine, calibration, example_input, qconfig, qat)
    model, qconfig, notes = _RECIPES[mode](inputs, clock)
    if engine is not None:
        # Source builders may switch the engine behind our back (torchvision's quantize=True does).
        torch.backends.quantized.engine = engine
    return Prepared(model=model, qconfig=qconfig, phases=clock.phases, notes=notes)
