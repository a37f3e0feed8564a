"""The int8 kernels quantized models spend their time in, benchmarked with pytest-benchmark per engine and shape:
quantize_per_tensor and dequantize of a layer's input, quantize_per_channel of its weight, and the quantized conv2d
and linear operators on prepacked weights (what torch.ao.nn.quantized.Conv2d and Linear call, without the module).

Tensors follow what the engine's default qconfig produces: quint8 affine activations; qint8 symmetric weights, per
channel except on qnnpack (per tensor). Shapes and engines come from conftest.py.
"""

from __future__ import annotations

import torch

__all__ = ["test_quantize_per_tensor", "test_quantize_per_channel", "test_dequantize", "test_quantized_conv2d",
           "test_quantized_linear"]


def _activation(shape, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A float input in [0, 1) and its quint8 form (scale 1/255, zero point 0)."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(seed))
    return x, torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8)


def _weight(shape, engine: str, seed: int = 1) -> torch.Tensor:
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 0.05
    if engine == "qnnpack":
        return torch.quantize_per_tensor(w, float(w.abs().max()) / 127, 0, torch.qint8)
    scales = w.flatten(1).abs().amax(dim=1).clamp(min=1e-8).double() / 127
    return torch.quantize_per_channel(w, scales, torch.zeros(shape[0], dtype=torch.long), 0, torch.qint8)


def _weight_scheme(engine: str) -> str:
    return "per_tensor_symmetric" if engine == "qnnpack" else "per_channel_symmetric"


def test_quantize_per_tensor(kernel, layer_shape):
    x, _ = _activation(layer_shape.input_shape)
    kernel(lambda: torch.quantize_per_tensor(x, 1 / 255, 0, torch.quint8), layer_shape)


def test_quantize_per_channel(kernel, layer_shape):
    w = torch.randn(layer_shape.weight_shape)
    scales = w.flatten(1).abs().amax(dim=1).clamp(min=1e-8).double() / 127
    zero_points = torch.zeros(layer_shape.weight_shape[0], dtype=torch.long)
    kernel(lambda: torch.quantize_per_channel(w, scales, zero_points, 0, torch.qint8), layer_shape, axis=0)


def test_dequantize(kernel, layer_shape):
    _, xq = _activation(layer_shape.input_shape)
    kernel(xq.dequantize, layer_shape)


def test_quantized_conv2d(kernel, engine, conv_shape):
    s = conv_shape
    _, xq = _activation(s.input_shape)
    packed = torch.ops.quantized.conv2d_prepack(_weight(s.weight_shape, engine), torch.zeros(s.out_channels),
                                                list(s.stride), list(s.padding), list(s.dilation), s.groups)
    kernel(lambda: torch.ops.quantized.conv2d.new(xq, packed, 0.05, 64), s, weight=_weight_scheme(engine),
           macs=s.macs)


def test_quantized_linear(kernel, engine, linear_shape):
    s = linear_shape
    _, xq = _activation(s.input_shape)
    packed = torch.ops.quantized.linear_prepack(_weight(s.weight_shape, engine), torch.zeros(s.out_features))
    kernel(lambda: torch.ops.quantized.linear(xq, packed, 0.05, 64), s, weight=_weight_scheme(engine), macs=s.macs)
