"""Build torch QConfig / QConfigMapping objects from a qconfig name (grammar and meaning: qbench.suite.qconfig_names).

"default" is torch's get_default_(qat_)qconfig(_mapping) of the engine; a named qconfig replaces torch's default
everywhere the default applied, keeping torch's special cases (fixed-qparams ops such as sigmoid, reshape reusing
its input's qparams, per-tensor ConvTranspose weights on fbgemm/x86). "@engine" picks the engine whose defaults
and special cases apply; which engine converts and runs the model is the caller's business (qbench.runner.registry.modes).
"""

from __future__ import annotations

import torch
from torch.ao.quantization import (FakeQuantize, HistogramObserver, MinMaxObserver, MovingAverageMinMaxObserver,
                                   MovingAveragePerChannelMinMaxObserver, PerChannelMinMaxObserver, QConfig,
                                   QConfigMapping, get_default_qat_qconfig, get_default_qat_qconfig_mapping,
                                   get_default_qconfig, get_default_qconfig_mapping)

from qbench.suite.qconfig_names import QconfigName, parse_qconfig_name
from qbench.runner.registry.engines import check_engine_name

__all__ = ["ACTIVATION_OBSERVERS", "build_qconfig", "build_qconfig_mapping", "calibration_engine", "qconfig_origin"]

ACTIVATION_OBSERVERS = {"minmax": MinMaxObserver, "moving_average": MovingAverageMinMaxObserver,
                        "histogram": HistogramObserver}
# Weights are observed once after calibration (PTQ) or move slowly while training (QAT; torch's QAT defaults).
_PTQ_WEIGHT_OBSERVERS = {"per_tensor": MinMaxObserver, "per_channel": PerChannelMinMaxObserver}
_QAT_WEIGHT_OBSERVERS = {"per_tensor": MovingAverageMinMaxObserver,
                         "per_channel": MovingAveragePerChannelMinMaxObserver}
_QSCHEMES = {("per_tensor", "affine"): torch.per_tensor_affine, ("per_tensor", "symmetric"): torch.per_tensor_symmetric,
             ("per_channel", "affine"): torch.per_channel_affine,
             ("per_channel", "symmetric"): torch.per_channel_symmetric}


def calibration_engine(name: str, engine: str) -> str:
    """The engine whose qconfig applies and under which a model is prepared and calibrated: the one after "@"
    in `name`, else the case's `engine`."""
    check_engine_name(engine)
    return parse_qconfig_name(name).calibrated_for or engine


def _named_qconfig(parsed: QconfigName, qat: bool) -> QConfig:
    activation_args = {"dtype": torch.quint8, "qscheme": torch.per_tensor_affine, "quant_min": 0, "quant_max": 255,
                       "reduce_range": parsed.reduce_range}
    weight_args = {"dtype": torch.qint8, "qscheme": _QSCHEMES[parsed.granularity, parsed.symmetry],
                   "quant_min": -128, "quant_max": 127}
    if parsed.per_channel:
        weight_args["ch_axis"] = 0
    activation = ACTIVATION_OBSERVERS[parsed.observer]
    if not qat:
        return QConfig(activation=activation.with_args(**activation_args),
                       weight=_PTQ_WEIGHT_OBSERVERS[parsed.granularity].with_args(**weight_args))
    return QConfig(activation=FakeQuantize.with_args(observer=activation, **activation_args),
                   weight=FakeQuantize.with_args(observer=_QAT_WEIGHT_OBSERVERS[parsed.granularity], **weight_args))


def build_qconfig(name: str, engine: str, *, qat: bool = False) -> QConfig:
    """The QConfig that qconfig `name` means for a case of `engine` (eager mode: model.qconfig = ...). With
    qat=True, its fake-quantize version for prepare_qat."""
    parsed = parse_qconfig_name(name)
    source = calibration_engine(name, engine)
    if parsed.is_default:
        return get_default_qat_qconfig(source) if qat else get_default_qconfig(source)
    return _named_qconfig(parsed, qat)


def build_qconfig_mapping(name: str, engine: str, *, qat: bool = False) -> QConfigMapping:
    """The QConfigMapping that qconfig `name` means for a case of `engine` (FX mode): the default mapping of the
    calibration engine with the named qconfig put wherever that mapping used its global qconfig or its global
    activation observer."""
    parsed = parse_qconfig_name(name)
    source = calibration_engine(name, engine)
    mapping = get_default_qat_qconfig_mapping(source) if qat else get_default_qconfig_mapping(source)
    if parsed.is_default:
        return mapping
    named, default = _named_qconfig(parsed, qat), mapping.global_qconfig
    mapping.set_global(named)
    for pattern, qconfig in list(mapping.object_type_qconfigs.items()):
        if qconfig is default:
            mapping.set_object_type(pattern, named)
        elif qconfig is not None and qconfig.activation is default.activation:
            mapping.set_object_type(pattern, QConfig(activation=named.activation, weight=qconfig.weight))
    return mapping


def qconfig_origin(name: str, engine: str, *, qat: bool = False, mapping: bool = False) -> str:
    """How the qconfig was built, in words, for the record: e.g. "get_default_qconfig_mapping('qnnpack')" or
    "named 'minmax/per_tensor/affine' (qbench.runner.registry.qconfigs)"; cross-engine names say where they converted."""
    parsed = parse_qconfig_name(name)
    source = calibration_engine(name, engine)
    if parsed.is_default:
        function = "get_default_" + ("qat_" if qat else "") + "qconfig" + ("_mapping" if mapping else "")
        origin = f"{function}({source!r})"
    else:
        origin = f"named {parsed.base!r} (qbench.runner.registry.qconfigs" + (", fake-quantize" if qat else "") + ")"
    if source != engine:
        origin += f", prepared and calibrated under {source}, converted and run under {engine}"
    return origin
