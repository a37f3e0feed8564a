"""Quantization modes: one small recipe per mode, registered by name, that turns a ModelSource into a Prepared model.

apply_mode() is the one entry point. It leaves torch.backends.quantized.engine set to the case's engine, since the
caller measures the model afterwards in the same process (and, for pt2e, torch._inductor.config.freezing on).

The qconfig name (qbench.suite.qconfig_names) applies to static_eager, static_fx and qat. With "@engine" the model is
prepared and calibrated (or fine-tuned) under that engine's qconfig, and always converted under the case's engine:
conversion is where weights are packed, and the packed weights decide which engine's kernels run.

The qconfig a recipe used is recorded as data by qbench.runner.registry.describe; qat's fine-tuning is
qbench.runner.registry.qat.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from qbench.errors import ConfigError, NotApplicable, RegistryError
from qbench.suite.qconfig_names import DEFAULT, parse_qconfig_name, qconfig_skip_reason
from qbench.records import ENGINELESS_MODES, MODES, QatSpec
from qbench.runner.registry import ModelSource, Prepared
from qbench.runner.registry.describe import describe_converted, describe_qconfig
from qbench.runner.registry.engines import ENGINES, check_engine_name, probe_engine, use_engine
from qbench.runner.registry.qat import check_qat_spec, finetune
from qbench.runner.registry.qconfigs import build_qconfig, build_qconfig_mapping, calibration_engine, qconfig_origin

__all__ = ["MODES", "ModeInputs", "apply_mode", "register_mode", "registered_modes"]

# Module types quantize_dynamic converts; exact types, as its default mapping matches them.
_DYNAMIC_TYPES = (nn.Linear, nn.LSTM, nn.GRU)


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


@register_mode("fp32_bf16")
def _fp32_bf16(inputs: ModeInputs, clock: _Clock):
    from qbench.runner.registry.engines import allow_bf16_fastmath

    with clock("build"):
        model = inputs.source.float_model()
    return model, None, {"fp32_precision": allow_bf16_fastmath()}


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
    return model, {**describe_converted(model), "name": DEFAULT, "origin": "torchvision quantize=True"}, {}


@register_mode("qat")
def _qat(inputs: ModeInputs, clock: _Clock):
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_qat_fx

    spec = inputs.qat or QatSpec()
    check_qat_spec(spec)
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
            notes = {**finetune(model, teacher, inputs.calibration, spec), **_calibration_notes(inputs.calibration)}
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
