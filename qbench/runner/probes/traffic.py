"""Count the bytes one forward pass moves and the multiply-accumulates it does, from the real tensors of that pass.

A TorchDispatchMode sees every operator the forward runs: aten ops, functional calls that module hooks would miss,
and the quantized::* kernels of eager-, FX-, dynamic- and torchvision-prequantized models (their packed weights are
ScriptObjects, unpacked here to count the int8 weight, its scales and zero points, and the bias). Forward hooks on
leaf modules are not used: they miss functional calls and see no operator inside a module. Per operator:

* weights read: operands that are the model's parameters, buffers or tensor attributes, and packed weights;
* activations read: every other tensor operand (each distinct storage once per operator);
* activations written: each output whose storage is new, plus operands an in-place or out= operator writes.

This is an estimate of the compulsory traffic of each operator, and says so in `method`: views and aliases move
nothing; an in-place operator reads and writes its operand; the intermediates inside a fused kernel (conv+relu) are
not counted; caches are ignored (a tensor read by two operators counts twice, one that stays in cache too); per-tensor
qparams of activations are Python scalars and cost nothing; per-channel weight qparams count 4-byte scales and 4-byte
zero points, as FBGEMM and oneDNN store them. The real memory-controller traffic needs hardware counters, which
`measured_traffic_support` looks for. A pt2e reference graph (quantized_decomposed quantize/dequantize around float
operators) is counted as the int8 kernels torch.compile lowers it to; see _lower_qdq for the rules.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["METHOD", "PT2E_NOTE", "count_traffic", "measured_traffic_support", "tensor_bytes"]

METHOD = ("torch_dispatch: one forward under a TorchDispatchMode; per operator, tensor operands read and new or "
          "mutated outputs written at their dtype's size, model parameters/buffers/packed weights as weights; "
          "views free, in-place ops read+write, fused-kernel intermediates and cache reuse not counted")
# Bits per element of sub-byte dtypes, whose element_size() says 1.
_SUB_BYTE_BITS = {"quint4x2": 4, "quint2x4": 2}
# Per-channel weight qparams as the int8 kernels hold them: a float32 scale and an int32 zero point per channel.
_QPARAM_BYTES_PER_CHANNEL = 8
_PER_TENSOR_QPARAM_BYTES = 8
_FREE_OPS = {"aten.empty", "aten.empty_like", "aten.empty_strided", "aten._empty_affine_quantized",
             "aten._empty_per_channel_affine_quantized", "aten.lift_fresh", "aten.detach", "aten.alias"}
_MATMUL_OPS = {"aten.mm", "aten.bmm", "aten.matmul", "aten.addmm", "aten.baddbmm", "aten.addbmm", "aten.mv",
               "aten.addmv", "aten.dot"}
_QDQ_NAMESPACE = "quantized_decomposed"
_FUSIBLE_UNARY = {"aten.relu", "aten.relu_", "aten.hardtanh", "aten.hardtanh_", "aten.clamp", "aten.clamp_",
                  "aten.silu", "aten.silu_", "aten.hardswish", "aten.hardswish_", "aten.gelu", "aten.sigmoid"}
PT2E_NOTE = ("; pt2e reference graph counted as lowered: dequantize free (consumers read the int8 source), "
             "quantize folded into its producer's int8 write, unary elementwise ops fused into their producer")
_ATTENTION_OPS = {"aten.scaled_dot_product_attention", "aten._scaled_dot_product_flash_attention_for_cpu",
                  "aten._scaled_dot_product_attention_math"}


def tensor_bytes(tensor) -> int:
    """Bytes of a tensor's elements at its dtype (quantized dtypes included; sub-byte dtypes packed)."""
    bits = _SUB_BYTE_BITS.get(str(tensor.dtype).removeprefix("torch."))
    if bits:
        return (tensor.numel() * bits + 7) // 8
    return tensor.numel() * tensor.element_size()


def _weight_bytes(weight) -> int:
    """An unpacked weight with its quantization parameters."""
    import torch

    size = tensor_bytes(weight)
    if weight.is_quantized:
        per_channel = weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric,
                                           torch.per_channel_affine_float_qparams)
        size += (weight.shape[weight.q_per_channel_axis()] * _QPARAM_BYTES_PER_CHANNEL if per_channel
                 else _PER_TENSOR_QPARAM_BYTES)
    return size


def _storage_key(tensor) -> int | None:
    try:
        return tensor.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        return None


def _weight_storages(model) -> set[int]:
    """Storages of everything the model holds: parameters, buffers, and plain tensor attributes (FX qparams)."""
    import torch

    keys = set()
    for module in model.modules():
        tensors = list(module.parameters(recurse=False)) + list(module.buffers(recurse=False))
        tensors += [value for value in vars(module).values() if isinstance(value, torch.Tensor)]
        keys.update(_storage_key(t) for t in tensors)
    keys.discard(None)
    return keys


def _prod(values) -> int:
    out = 1
    for value in values:
        out *= int(value)
    return out


def _conv_macs(output, weight, transposed: bool, input_) -> int:
    # Direct: every output element takes Cin/groups * kernel MACs. Transposed: every input element scatters
    # into Cout/groups * kernel outputs (weight is [Cin, Cout/groups, *kernel]).
    if transposed:
        return input_.numel() * _prod(weight.shape[1:])
    return output.numel() * _prod(weight.shape[1:])


@dataclass
class _Op:
    """One operator of the forward: what it read (storage key -> bytes, is_weight) and wrote (storage key ->
    bytes, elements)."""

    name: str
    reads: dict = field(default_factory=dict)
    writes: dict = field(default_factory=dict)
    macs: int = 0


class _Tally:
    """Records one forward's operators. Split from the dispatch mode so that it is plain, testable code."""

    def __init__(self, weight_storages: set[int]):
        self.weight_storages = weight_storages
        self.ops: list[_Op] = []
        self._unpacked: dict[int, tuple] = {}
        self._generation: dict[int, int] = {}

    def unpack(self, packed) -> tuple:
        """(weight, bias) of a packed-params ScriptObject, cached per object."""
        key = id(packed)
        if key not in self._unpacked:
            try:
                weight, bias = packed.unpack()[:2]
            except (RuntimeError, AttributeError, TypeError, ValueError):
                weight, bias = None, None
            self._unpacked[key] = (packed, weight, bias)
        return self._unpacked[key][1:]

    def account(self, func, args: tuple, kwargs: dict, output) -> None:
        import torch
        from torch.utils._pytree import tree_leaves

        name = str(func.overloadpacket)
        if name in _FREE_OPS:
            return
        inputs = tree_leaves((args, kwargs))
        outputs = [t for t in tree_leaves(output) if isinstance(t, torch.Tensor)]
        input_storages = {_storage_key(t) for t in inputs if isinstance(t, torch.Tensor)}
        mutated = self._mutated(func, args, kwargs)
        new_outputs = [t for t in outputs if _storage_key(t) not in input_storages]
        if not new_outputs and not mutated and outputs:
            return  # a view or alias: nothing moves
        op = _Op(name, macs=self._macs(name, args, kwargs, outputs))
        for leaf in inputs:
            if isinstance(leaf, torch.Tensor):
                key = self._key(leaf)
                op.reads.setdefault(key, (tensor_bytes(leaf), key[0] in self.weight_storages))
            elif isinstance(leaf, torch.ScriptObject):
                weight, bias = self.unpack(leaf)
                size = (_weight_bytes(weight) if weight is not None else 0) + \
                    (tensor_bytes(bias) if bias is not None else 0)
                op.reads[("packed", id(leaf))] = (size, True)
        for tensor in new_outputs:
            storage = _storage_key(tensor)
            self._generation[storage] = self._generation.get(storage, 0) + 1
        for tensor in new_outputs + mutated:
            op.writes[self._key(tensor)] = (tensor_bytes(tensor), tensor.numel())
        self.ops.append(op)

    def _key(self, tensor) -> tuple:
        """Which tensor this is. The allocator reuses freed addresses, so a storage is its address plus how many
        new outputs have been written there so far."""
        storage = _storage_key(tensor)
        return (storage, self._generation.get(storage, 0), tensor.storage_offset(), tuple(tensor.shape),
                tensor.dtype)

    @staticmethod
    def _mutated(func, args: tuple, kwargs: dict) -> list:
        """Operands the schema says the operator writes (in-place self, out=)."""
        import torch

        mutated = []
        for index, argument in enumerate(func._schema.arguments):
            if argument.alias_info is None or not argument.alias_info.is_write:
                continue
            value = args[index] if index < len(args) else kwargs.get(argument.name)
            if isinstance(value, torch.Tensor):
                mutated.append(value)
        return mutated

    def _macs(self, name: str, args: tuple, kwargs: dict, outputs: list) -> int:
        if not outputs:
            return 0
        out = outputs[0]
        namespace, _, op = name.partition(".")
        if namespace == "quantized" and ("conv" in op or "linear" in op):
            weight, _ = self.unpack(args[1])
            if weight is None:
                return 0
            if "linear" in op:
                return out.numel() * weight.shape[-1]
            return _conv_macs(out, weight, "transpose" in op, args[0])
        if namespace != "aten":
            return 0
        if op in ("conv1d", "conv2d", "conv3d", "convolution", "_convolution", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d", "mkldnn_convolution"):
            transposed = "transpose" in op or (op in ("convolution", "_convolution") and bool(args[6]))
            return _conv_macs(out, args[1], transposed, args[0])
        if op == "linear":
            return out.numel() * args[1].shape[-1]
        if name in _MATMUL_OPS:
            first = args[1] if op.startswith("add") or op == "baddbmm" else args[0]
            return out.numel() * first.shape[-1]
        if name in _ATTENTION_OPS:
            query, key, value = args[:3]
            batch = _prod(query.shape[:-2])
            return batch * query.shape[-2] * key.shape[-2] * (query.shape[-1] + value.shape[-1])
        return 0

    def result(self) -> dict:
        ops, method = self.ops, METHOD
        if any(op.name.startswith(_QDQ_NAMESPACE) for op in ops):
            ops, method = _lower_qdq(ops), METHOD + PT2E_NOTE
        by_op: Counter = Counter()
        weights = read = written = 0
        for op in ops:
            op_weights = sum(size for size, is_weight in op.reads.values() if is_weight)
            op_read = sum(size for size, is_weight in op.reads.values() if not is_weight)
            op_written = sum(size for size, _ in op.writes.values())
            weights, read, written = weights + op_weights, read + op_read, written + op_written
            by_op[op.name] += op_weights + op_read + op_written
        return {
            "bytes_total": weights + read + written,
            "bytes_weights": weights,
            "bytes_activations_read": read,
            "bytes_activations_written": written,
            "macs": sum(op.macs for op in ops),
            "ops": len(ops),
            "method": method,
            "by_op": dict(sorted(by_op.items(), key=lambda item: -item[1])),
        }


def _lower_qdq(ops: list[_Op]) -> list[_Op]:
    """A pt2e reference graph (quantize/dequantize around float operators) counted as the int8 kernels it is
    lowered to: a dequantize is free and its output (and views of it) is read at the int8 source's size; a quantize
    of an operator's output that nothing else reads is free and that operator writes int8 instead; a quantize of a
    dequantized tensor is free; a unary elementwise operator (relu) that alone reads its input is fused into that
    input's producer. Binary fusions (conv + add) are not modelled; quantizing the model's input stays a kernel."""
    effective: dict = {}   # storage -> (bytes per byte read, is_weight) of dequantized tensors
    producer: dict = {}    # storage -> the lowered op that writes it
    readers = Counter(key[:2] for op in ops for key in op.reads)
    lowered: list[_Op] = []
    for op in ops:
        if op.name.startswith(_QDQ_NAMESPACE + ".dequantize"):
            source = sum(size for size, _ in op.reads.values())
            for key, (size, _) in op.writes.items():
                effective[key[:2]] = (source / size, any(w for _, w in op.reads.values()))
            continue
        source = next(iter(op.reads), (None, None))[:2]
        only_reader = source in producer and readers[source] == 1
        if op.name.startswith(_QDQ_NAMESPACE + ".quantize") and (only_reader or source in effective):
            if only_reader:
                maker = producer.pop(source)
                maker.writes = {key: value for key, value in maker.writes.items() if key[:2] != source}
                maker.writes.update(op.writes)
                producer.update((key[:2], maker) for key in op.writes)
            continue
        reads = {}
        for key, (size, is_weight) in op.reads.items():
            ratio, is_weight = effective.get(key[:2], (1.0, is_weight))
            reads[key] = (round(size * ratio), is_weight)
        if op.name in _FUSIBLE_UNARY and len(reads) == 1 and only_reader:
            maker = producer.pop(source)
            maker.writes = {key: value for key, value in maker.writes.items() if key[:2] != source}
            maker.writes.update(op.writes)
            producer.update((key[:2], maker) for key in op.writes)
            continue
        op = _Op(op.name, reads, dict(op.writes), op.macs)
        lowered.append(op)
        producer.update((key[:2], op) for key in op.writes)
    return lowered


def _dispatch_mode(counter: _Tally):
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            output = func(*args, **kwargs)
            counter.account(func, args, kwargs, output)
            return output

    return _Mode()


def count_traffic(model, example_input) -> dict:
    """metrics.bandwidth of one forward of `model` on `example_input` (a tensor or a tuple of them): bytes moved
    (weights read + activations read + activations written), MACs, operators counted, bytes per operator name,
    and whether hardware counters could measure the real traffic here (`measured`). Give a torch.compile'd model's
    uncompiled original (for pt2e, convert_pt2e's output): its reference graph is counted as the lowered kernels."""
    import torch

    counter = _Tally(_weight_storages(model))
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    with torch.inference_mode(), _dispatch_mode(counter):
        model(*inputs)
    return {**counter.result(), "measured": measured_traffic_support()}


# ------------------------------------------------------------------------------------- hardware counters

_EVENT_SOURCES = "/sys/bus/event_source/devices"
_PARANOID = "/proc/sys/kernel/perf_event_paranoid"
# Memory-controller PMUs: Intel's integrated memory controller, AMD's data fabric / unified memory controller.
_IMC_PATTERNS = ("uncore_imc*", "amd_df*", "amd_umc*")


def measured_traffic_support(sources: str = _EVENT_SOURCES, paranoid_path: str = _PARANOID) -> dict:
    """Whether this machine lets an unprivileged process count memory-controller traffic with perf, and why not."""
    pmus = sorted(os.path.basename(p) for pattern in _IMC_PATTERNS for p in glob.glob(os.path.join(sources, pattern)))
    if not pmus:
        present = sorted(os.listdir(sources)) if os.path.isdir(sources) else []
        return {"available": False,
                "reason": f"no memory-controller PMU (uncore_imc/amd_df/amd_umc) in {sources}; "
                          f"present: {', '.join(present) or 'none'} (a VM usually hides them)"}
    if shutil.which("perf") is None:
        return {"available": False, "reason": f"memory-controller PMUs {', '.join(pmus)} exist but no perf binary"}
    try:
        with open(paranoid_path) as handle:
            paranoid = int(handle.read().strip())
    except (OSError, ValueError):
        paranoid = None
    if (paranoid is None or paranoid > 0) and os.geteuid() != 0:
        return {"available": False,
                "reason": f"memory-controller PMUs {', '.join(pmus)} exist but system-wide counting needs "
                          f"perf_event_paranoid <= 0 or root (it is {paranoid})"}
    return {"available": True, "reason": f"perf with {', '.join(pmus)}", "pmus": pmus}

