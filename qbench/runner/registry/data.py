"""Model inputs: seeded synthetic images, calibration batches (synthetic, from an ImageFolder, or from a split of a
named set, "data:<name>/<split>"), and the eval
transform that fits a model's weights. Every calibration set comes with its identity (a dict with a sha256 over
its tensors), identical across processes for identical input.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable

import torch

from qbench.data.sets import is_named, resolve_source
from qbench.errors import ConfigError
from qbench.records import CalibrationSpec
from qbench.runner.registry.weights import default_weights
from qbench.runner.registry.torchvision_compat import import_torchvision

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "example_input", "calibration_batches", "default_transform",
           "transform_for"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _generator(seed: int, stream: str) -> torch.Generator:
    """A generator per (seed, purpose): the example input and calibration batch 0 never coincide."""
    digest = hashlib.sha256(f"qbench:{stream}:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def _synthetic_images(count: int, input_size: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform [0, 1) pixels, normalized as the ImageNet eval transform does."""
    pixels = torch.rand(count, 3, input_size, input_size, generator=generator)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


def example_input(batch_size: int, input_size: int, seed: int = 0) -> torch.Tensor:
    """A seeded [batch_size, 3, input_size, input_size] float32 batch."""
    return _synthetic_images(batch_size, input_size, _generator(seed, "example"))


def default_transform(input_size: int) -> Callable:
    """torchvision's ImageNet eval preset for a side of `input_size` (resize 256/224 of it, then center crop)."""
    import_torchvision()
    from torchvision.transforms._presets import ImageClassification
    return ImageClassification(crop_size=input_size, resize_size=int(input_size * 256 / 224))


def transform_for(source, variant: str = "float") -> Callable:
    """The eval transform of `source`'s weights when pretrained (of its quantized weights when variant is
    "prequantized"), else default_transform(source.input_size)."""
    kind = getattr(source, "weights_kind", None) or source.weights_info()["kind"]
    if kind == "pretrained":
        name = f"quantized_{source.name}" if variant == "prequantized" else source.name
        return default_weights(name).transforms()
    return default_transform(source.input_size)


def _folder_batches(spec: CalibrationSpec, input_size: int, transform: Callable | None):
    if is_named(spec.source):  # "data:<name>/<split>", a fetched named set (qbench.data.sets)
        root = resolve_source(spec.source)[0]
    else:
        root = os.path.abspath(os.path.expanduser(spec.source))
    if not os.path.isdir(root):
        raise ConfigError(f"calibration source {spec.source!r} is neither 'synthetic' nor an existing folder")
    datasets = import_torchvision().datasets
    try:
        dataset = datasets.ImageFolder(root, transform=transform or default_transform(input_size))
    except OSError as exc:
        raise ConfigError(f"calibration folder {root} holds no images in class subfolders: "
                          f"{' '.join(str(exc).split())}") from None
    count = min(len(dataset), spec.batches * spec.batch_size)
    order = torch.randperm(len(dataset), generator=_generator(spec.seed, "calibration-subset"))[:count].tolist()
    images, files = [], []
    for index in order:
        path = dataset.samples[index][0]
        try:
            images.append(dataset[index][0])
        except OSError as exc:
            raise ConfigError(f"calibration image {path} cannot be read: {' '.join(str(exc).split())}") from None
        files.append(os.path.relpath(path, root).replace(os.sep, "/"))
    batches = [torch.stack(images[start:start + spec.batch_size]) for start in range(0, count, spec.batch_size)]
    return batches, files


def _identity_hash(batches: list[torch.Tensor], files: list[str] | None) -> str:
    digest = hashlib.sha256()
    for batch in batches:
        digest.update(f"{tuple(batch.shape)}:{batch.dtype};".encode())
        digest.update(batch.contiguous().numpy().tobytes())
    if files is not None:
        digest.update("\n".join(files).encode())
    return digest.hexdigest()


def calibration_batches(spec: CalibrationSpec, input_size: int,
                        transform: Callable | None = None) -> tuple[list[torch.Tensor], dict]:
    """The calibration batches `spec` describes and their identity: {"source", "batches", "batch_size", "seed",
    "images", "sha256"}. A folder holding fewer than batches × batch_size images gives all of them."""
    if spec.batches < 1 or spec.batch_size < 1:
        raise ConfigError(f"calibration needs batches >= 1 and batch_size >= 1, "
                          f"got {spec.batches} × {spec.batch_size}")
    if spec.source == "synthetic":
        generator = _generator(spec.seed, "calibration")
        batches = [_synthetic_images(spec.batch_size, input_size, generator) for _ in range(spec.batches)]
        files = None
    else:
        batches, files = _folder_batches(spec, input_size, transform)
    identity = {"source": spec.source, "batches": len(batches), "batch_size": spec.batch_size, "seed": spec.seed,
                "images": sum(len(batch) for batch in batches), "sha256": _identity_hash(batches, files)}
    if is_named(spec.source):
        identity["dataset"] = resolve_source(spec.source)[1]
    return batches, identity
