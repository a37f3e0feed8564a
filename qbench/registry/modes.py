"""Quantization modes: one small recipe per mode, registered by name, that turns a ModelSource into a Prepared model.

apply_mode() is the one entry point. It leaves torch.backends.quantized.engine set to the case's engine, since the
caller measures the model afterwards in the same process.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from qbench.errors import ConfigError, NotApplicable, RegistryError
from qbench.probes.size import classify_module
from qbench.records import ENGINELESS_MODES, MODES
from qbench.registry import ModelSource, Prepared
from qbench.registry.engines import ENGINES, check_engine_name, probe_engine, use_engine

__all__ = ["MODES", "ModeInputs", "apply_mode", "describe_qconfig", "register_mode", "registered_modes"]

# Module types quantize_dynamic converts; exact types, as its default mapping matches them.
_DYNAMIC_TYPES = (nn.Linear, nn.LSTM, nn.GRU)
_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)
_SYMMETRIC = (torch.per_tensor_symmetric, torch.per_channel_symmetric)


@dataclass(frozen=True)
class ModeInputs:
    """What a recipe works from. `engine` is None only for engine-less modes."""

    source: ModelSource
    engine: str | None
    calibration: list[torch.Tensor]
    example_input: torch.Tensor


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
    qconfig = {**describe_qconfig(default_dynamic_qconfig),
               "origin": "quantize_dynamic({Linear, LSTM, GRU}, dtype=torch.qint8)"}
    return model, qconfig, {"converted_modules": sum(converted.values()), "converted_by_type": dict(converted)}


@register_mode("static_eager")
def _static_eager(inputs: ModeInputs, clock: _Clock):
    from torch.ao.quantization import convert, get_default_qconfig, prepare

    with clock("build"):
        model = inputs.source.quantizable_model()
    with clock("fuse"):
        model.fuse_model(is_qat=False)
    qconfig = get_default_qconfig(inputs.engine)
    model.qconfig = qconfig
    with use_engine(inputs.engine):
        with clock("prepare"):
            prepare(model, inplace=True)
        with clock("calibrate"):
            _calibrate(model, inputs.calibration)
        with clock("convert"):
            convert(model, inplace=True)
    description = {**describe_qconfig(qconfig), "origin": f"get_default_qconfig({inputs.engine!r})"}
    return model, description, _calibration_notes(inputs.calibration)


@register_mode("static_fx")
def _static_fx(inputs: ModeInputs, clock: _Clock):
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with clock("build"):
        model = inputs.source.float_model()
    mapping = get_default_qconfig_mapping(inputs.engine)
    with use_engine(inputs.engine):
        with clock("prepare"):
            try:
                model = prepare_fx(model, mapping, (inputs.example_input,))
            except torch.fx.proxy.TraceError as exc:
                raise NotApplicable(f"not symbolically traceable: {str(exc).strip().splitlines()[0]}") from exc
        with clock("calibrate"):
            _calibrate(model, inputs.calibration)
        with clock("convert"):
            model = convert_fx(model)
    description = {**describe_qconfig(mapping), "origin": f"get_default_qconfig_mapping({inputs.engine!r})"}
    return model, description, _calibration_notes(inputs.calibration)


@register_mode("prequantized")
def _prequantized(inputs: ModeInputs, clock: _Clock):
    with use_engine(inputs.engine), clock("build"):
        model = inputs.source.prequantized_model(inputs.engine)
    return model, {**_describe_converted(model), "origin": "torchvision quantize=True"}, {}


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
               example_input: torch.Tensor) -> Prepared:
    """Build `source`'s model quantized as `mode` under `engine`; on return the process's engine is `engine`.

    Raises RegistryError for an unknown mode or engine (or an engine given to fp32 / missing for the others),
    NotApplicable when this mode cannot handle this model or the engine does not work here.
    """
    if mode not in _RECIPES:
        raise RegistryError(f"unknown mode {mode!r}; allowed: {', '.join(_RECIPES)}")
    _check_engine(mode, engine)
    clock = _Clock()
    model, qconfig, notes = _RECIPES[mode](ModeInputs(source, engine, calibration, example_input), clock)
    if engine is not None:
        # Source builders may switch the engine behind our back (torchvision's quantize=True does).
        torch.backends.quantized.engine = engine
    return Prepared(model=model, qconfig=qconfig, phases=clock.phases, notes=notes)
