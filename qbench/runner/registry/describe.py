"""Qconfigs as data: describe a QConfig, a QConfigMapping or an already converted model as JSON-ready dicts."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from qbench.runner.probes.size import classify_module

__all__ = ["describe_qconfig", "describe_converted"]

_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)
_SYMMETRIC = (torch.per_tensor_symmetric, torch.per_channel_symmetric)


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


def describe_converted(model: nn.Module) -> dict:
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
