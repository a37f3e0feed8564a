"""The size of a model: serialized state_dict bytes, bytes per dtype, weight count, and how many compute modules
are quantized.

Quantized modules keep their weights inside packed parameter objects (`_packed_params` tuples and TorchScript
objects). Those are unpacked here, so an int8 weight counts as qint8 bytes and as parameters like a float one does.
"""

from __future__ import annotations

import functools
import io
import pickle
from collections import Counter
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["measure_size", "classify_module"]

_FLOAT_COMPUTE = (nn.modules.conv._ConvNd, nn.Linear, nn.RNNBase, nn.RNNCellBase, nn.Embedding, nn.EmbeddingBag)
# Names of the per-module output quantization parameters that quantized modules write into their state_dict.
_QPARAM_NAMES = ("scale", "zero_point")
# Packed objects nest (an LSTM's cell params hold packed linears); this bounds the unpacking.
_MAX_DEPTH = 8


@functools.cache
def _quantized_compute_types() -> tuple[type, ...]:
    from torch.ao.nn.quantized import Embedding
    from torch.ao.nn.quantized.dynamic.modules.rnn import RNNBase, RNNCellBase
    from torch.ao.nn.quantized.modules.utils import WeightedQuantizedModule
    from torch.ao.nn.quantized.reference.modules.utils import ReferenceQuantizedModule

    return (WeightedQuantizedModule, ReferenceQuantizedModule, RNNBase, RNNCellBase, Embedding)


def classify_module(module: nn.Module) -> str | None:
    """"quantized" or "float" for a compute module (conv, linear, RNN, embedding), None for anything else."""
    if isinstance(module, _quantized_compute_types()):
        return "quantized"
    if isinstance(module, _FLOAT_COMPUTE):
        return "float"
    return None


def _type_name(module: nn.Module) -> str:
    """The class name, qualified by its torch.ao.nn namespace ("quantized.dynamic.Linear") where that namespace
    tells a quantized class from the float class of the same name."""
    cls = type(module)
    if cls.__module__.startswith("torch.ao.nn."):
        namespace = cls.__module__.removeprefix("torch.ao.nn.").split(".modules", 1)[0]
        return f"{namespace}.{cls.__name__}"
    return cls.__name__


def _compute_modules(root: nn.Module) -> Iterator[tuple[nn.Module, str | None]]:
    """Every module with its class, not descending into compute modules (their children are their packing)."""
    stack = [root]
    while stack:
        module = stack.pop()
        kind = classify_module(module)
        yield module, kind
        if kind is None:
            stack.extend(reversed(list(module.children())))


def _unpack(value, depth: int = 0) -> Iterator[torch.Tensor]:
    """The tensors inside one state_dict value: a tensor, a tuple/list/dict of them, or a packed TorchScript object
    (opened through its __getstate__). Raises TypeError or RuntimeError for a packed object that cannot be opened."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _unpack(item, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _unpack(item, depth + 1)
    elif isinstance(value, torch.ScriptObject):
        if depth > _MAX_DEPTH:
            raise TypeError(f"packed object nested deeper than {_MAX_DEPTH}")
        yield from _unpack(value.__getstate__(), depth + 1)


def _storage_parts(tensor: torch.Tensor) -> Iterator[torch.Tensor]:
    """The tensor itself, plus the per-channel scales and zero points a per-channel quantized tensor carries."""
    yield tensor
    if tensor.is_quantized and tensor.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                                                   torch.per_channel_affine_float_qparams):
        yield tensor.q_per_channel_scales()
        yield tensor.q_per_channel_zero_points()


def _same_memory_key(tensor: torch.Tensor) -> tuple:
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()),
            tensor.dtype)


def _state_tensors(state: dict) -> tuple[list[tuple[str, torch.Tensor]], list[str]]:
    """(key, tensor) for every tensor in a state_dict, packed ones unpacked; and the keys that could not be opened.
    A tensor stored under two keys (tied weights) is listed once, as torch.save stores it once."""
    found, unsized, seen, alive = [], [], set(), []
    for key, value in state.items():
        try:
            tensors = list(_unpack(value))
        except (TypeError, RuntimeError):
            unsized.append(key)
            continue
        # Unpacking makes new tensors; holding them all keeps a freed one's address from being taken for a copy.
        alive += tensors
        for tensor in tensors:
            memory = _same_memory_key(tensor)
            if memory not in seen:
                seen.add(memory)
                found.append((key, tensor))
    return found, unsized


def _is_weight(key: str, tensor: torch.Tensor) -> bool:
    return key.rsplit(".", 1)[-1] not in _QPARAM_NAMES and (tensor.is_floating_point() or tensor.is_quantized)


def _parameter_count(model: nn.Module) -> int:
    """Weights and biases, each once: a float module's own parameters, a quantized module's unpacked ones."""
    weights = []
    for module, kind in _compute_modules(model):
        if kind == "quantized":
            tensors, _ = _state_tensors(module.state_dict())
            weights += [t for key, t in tensors if _is_weight(key, t)]
        else:
            weights += list(module.parameters(recurse=False))
    return sum(t.numel() for t in {_same_memory_key(t): t for t in weights}.values())


def _serialized_bytes(state: dict) -> int | None:
    buffer = io.BytesIO()
    try:
        torch.save(state, buffer)
    except (RuntimeError, TypeError, pickle.PicklingError):
        return None
    return buffer.getbuffer().nbytes


def measure_size(model: nn.Module) -> dict:
    """Size metrics of `model` (eager or FX GraphModule), as JSON data.

    state_dict_bytes is None when torch.save cannot serialize the state_dict (an object listed in
    unsized_entries, which is neither a tensor nor a packed object that can be opened, is the usual cause).
    bytes_by_dtype counts every tensor of the state_dict once, packed weights included; a per-channel quantized
    weight also brings its scales (float64) and zero points (int64). modules_by_type counts the compute modules,
    so its values sum to modules_quantized + modules_float; a class from torch.ao.nn is named with its namespace
    ("quantized.Linear", "intrinsic.quantized.ConvReLU2d"), a plain torch.nn class by its name ("Linear").
    """
    state = model.state_dict()
    tensors, unsized = _state_tensors(state)
    by_dtype: Counter[str] = Counter()
    for _, tensor in tensors:
        for part in _storage_parts(tensor):
            by_dtype[str(part.dtype)] += part.numel() * part.element_size()
    kinds = Counter()
    by_type = Counter()
    for module, kind in _compute_modules(model):
        if kind is not None:
            kinds[kind] += 1
            by_type[_type_name(module)] += 1
    return {
        "state_dict_bytes": _serialized_bytes(state),
        "bytes_by_dtype": dict(sorted(by_dtype.items())),
        "parameters": _parameter_count(model),
        "modules_quantized": kinds["quantized"],
        "modules_float": kinds["float"],
        "modules_by_type": dict(sorted(by_type.items())),
        "unsized_entries": unsized,
    }
