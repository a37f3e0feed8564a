"""The shapes at which a model runs its quantizable kernels: every Conv2d's input and parameters and every Linear's
input and features, taken from one forward pass of the float model with hooks and deduplicated. The kernel
micro-benchmarks (benchmarks/kernels, run by qbench.launch.microbench) measure int8 kernels at these shapes.

Runs where torch is (a pytest-benchmark process, or `python -m qbench.runner.kernel_shapes`, which writes the shapes of a
suite's models as JSON for the benchmark processes to read), never in qbench's parent process.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from qbench.errors import ConfigError

__all__ = ["ConvShape", "LinearShape", "DEFAULT_SHAPES", "shape_from_dict", "extract_shapes", "model_shapes",
           "suite_models", "suite_shapes", "dump_shapes", "load_shapes"]


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value), int(value))


def _dims(prefix: str, pair: tuple[int, int]) -> str:
    return f"{prefix}{pair[0]}" if pair[0] == pair[1] else f"{prefix}{pair[0]}x{pair[1]}"


@dataclass(frozen=True)
class ConvShape:
    """A Conv2d call: input (n, c, h, w), out_channels, kernel, stride, padding, dilation (pairs) and groups."""

    n: int
    c: int
    h: int
    w: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1

    layer = "conv2d"

    def __post_init__(self):
        for name in ("kernel", "stride", "padding", "dilation"):
            object.__setattr__(self, name, _pair(getattr(self, name)))

    @property
    def batch_size(self) -> int:
        return self.n

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.n, self.c, self.h, self.w)

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.c // self.groups, *self.kernel)

    @property
    def shape_id(self) -> str:
        """Readable and unique, e.g. conv-1x3x224x224-o64-k7-s2-p3-g1 (dilation only when it is not 1)."""
        parts = ["conv-" + "x".join(map(str, self.input_shape)), f"o{self.out_channels}", _dims("k", self.kernel),
                 _dims("s", self.stride), _dims("p", self.padding)]
        if self.dilation != (1, 1):
            parts.append(_dims("d", self.dilation))
        return "-".join(parts + [f"g{self.groups}"])

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one call (what the benchmark's throughput is relative to)."""
        out_h = (self.h + 2 * self.padding[0] - self.dilation[0] * (self.kernel[0] - 1) - 1) // self.stride[0] + 1
        out_w = (self.w + 2 * self.padding[1] - self.dilation[1] * (self.kernel[1] - 1) - 1) // self.stride[1] + 1
        return self.n * self.out_channels * out_h * out_w * (self.c // self.groups) * self.kernel[0] * self.kernel[1]

    def to_dict(self) -> dict:
        return {"layer": self.layer, **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}}


@dataclass(frozen=True)
class LinearShape:
    """A Linear call: its input's shape (leading dims, then in_features) and out_features."""

    input: tuple[int, ...]
    out_features: int

    layer = "linear"

    def __post_init__(self):
        object.__setattr__(self, "input", tuple(int(d) for d in self.input))
        if len(self.input) < 2:
            raise ConfigError(f"linear input shape {self.input} needs a batch and a feature dimension")

    @property
    def batch_size(self) -> int:
        return self.input[0]

    @property
    def in_features(self) -> int:
        return self.input[-1]

    @property
    def rows(self) -> int:
        """Rows of the 2-D matrix the quantized linear multiplies (all leading dimensions flattened)."""
        return math.prod(self.input[:-1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.input

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return (self.out_features, self.in_features)

    @property
    def shape_id(self) -> str:
        return "linear-" + "x".join(map(str, self.input)) + f"-o{self.out_features}"

    @property
    def macs(self) -> int:
        return self.rows * self.in_features * self.out_features

    def to_dict(self) -> dict:
        return {"layer": self.layer, "input": list(self.input), "out_features": self.out_features}


def shape_from_dict(data: dict) -> ConvShape | LinearShape:
    """The inverse of to_dict; unknown layers and keys are errors."""
    data = dict(data)
    layer = data.pop("layer", None)
    cls = {"conv2d": ConvShape, "linear": LinearShape}.get(layer)
    if cls is None:
        raise ConfigError(f"kernel shape {data}: layer must be conv2d or linear, got {layer!r}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"kernel shape {data}: {exc}") from None


# A small set that covers the kinds of convolution and linear layers ImageNet models run (all at batch 1, 224x224):
# resnet18's stem, a 3x3 conv early and late, a strided 1x1 downsample and its fc; mobilenet_v2's depthwise and
# pointwise convolutions and its classifier. tests/test_microbench.py checks each is what those models really run.
DEFAULT_SHAPES: tuple[ConvShape | LinearShape, ...] = (
    ConvShape(1, 3, 224, 224, 64, (7, 7), (2, 2), (3, 3)),            # resnet18 conv1
    ConvShape(1, 64, 56, 56, 64, (3, 3), (1, 1), (1, 1)),             # resnet18 layer1
    ConvShape(1, 256, 14, 14, 512, (1, 1), (2, 2), (0, 0)),           # resnet18 layer4 downsample
    ConvShape(1, 512, 7, 7, 512, (3, 3), (1, 1), (1, 1)),             # resnet18 layer4
    ConvShape(1, 96, 112, 112, 96, (3, 3), (2, 2), (1, 1), groups=96),  # mobilenet_v2 depthwise
    ConvShape(1, 144, 56, 56, 24, (1, 1)),                            # mobilenet_v2 pointwise projection
    LinearShape((1, 512), 1000),                                      # resnet18 fc
    LinearShape((1, 1280), 1000),                                     # mobilenet_v2 classifier
)


def _explicit_padding(conv) -> tuple[int, int]:
    """Padding as numbers: "valid" is none, "same" keeps the size (the kernels take numbers only)."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        return tuple(d * (k - 1) // 2 for d, k in zip(conv.dilation, conv.kernel_size))
    return _pair(conv.padding)


def extract_shapes(model, example) -> list[ConvShape | LinearShape]:
    """The Conv2d and Linear calls of one forward pass of `model` on `example`, deduplicated, in call order."""
    import torch

    seen: dict[str, ConvShape | LinearShape] = {}

    def on_conv(module, inputs, _output):
        shape = ConvShape(*inputs[0].shape, module.out_channels, module.kernel_size, module.stride,
                          _explicit_padding(module), module.dilation, module.groups)
        seen.setdefault(shape.shape_id, shape)

    def on_linear(module, inputs, _output):
        shape = LinearShape(tuple(inputs[0].shape), module.out_features)
        seen.setdefault(shape.shape_id, shape)

    handles = []
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            handles.append(module.register_forward_hook(on_conv))
        elif isinstance(module, torch.nn.Linear):
            handles.append(module.register_forward_hook(on_linear))
    try:
        with torch.inference_mode():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return list(seen.values())


def model_shapes(name: str, batch_size: int = 1, seed: int = 0) -> list[ConvShape | LinearShape]:
    """extract_shapes of a registered model (random weights: shapes do not depend on them) at its input size."""
    from qbench.runner.registry.data import example_input
    from qbench.runner.registry.models import open_model

    source = open_model(name, "random", seed=seed)
    return extract_shapes(source.float_model(), example_input(batch_size, source.input_size, seed))


def suite_models(suite: str) -> list[tuple[str, int]]:
    """The (model, batch size) pairs of a suite's cases, as `qbench list` expands them, in order."""
    from qbench.plan.expand import Catalog, custom_model_names, expand
    from qbench.runner.catalog import probe
    from qbench.suite.load import load_suite

    spec = load_suite(suite)
    result = probe({"engines": [], "custom_models": custom_model_names(spec)})
    if result["errors"]:
        raise ConfigError(result["errors"][0])
    planned = expand(spec, Catalog.from_dict(result["catalog"]))
    return list(dict.fromkeys((p.case.model, p.case.batch_size) for p in planned))


def suite_shapes(suite: str) -> list[ConvShape | LinearShape]:
    """Every distinct conv2d and linear shape the models of a suite run, at the suite's batch sizes."""
    shapes: dict[str, ConvShape | LinearShape] = {}
    for model, batch_size in suite_models(suite):
        for shape in model_shapes(model, batch_size):
            shapes.setdefault(shape.shape_id, shape)
    return list(shapes.values())


def dump_shapes(shapes, path: Path | str) -> None:
    Path(path).write_text(json.dumps([s.to_dict() for s in shapes], indent=1) + "\n")


def load_shapes(path: Path | str) -> list[ConvShape | LinearShape]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"kernel shapes file {path}: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"kernel shapes file {path}: expected a non-empty JSON list of shapes")
    return [shape_from_dict(item) for item in data]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qbench.runner.kernel_shapes",
                                     description="write the conv2d and linear shapes of a suite's models as JSON")
    parser.add_argument("--suite", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        dump_shapes(suite_shapes(args.suite), args.out)
    except ConfigError as exc:
        print(f"qbench: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
