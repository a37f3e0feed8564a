"""Test data that a real model has really learned, built in a temporary folder in seconds (no ImageNet and no
pretrained weights exist here): procedurally drawn images of six classes in an ImageNet-style layout
(`<root>/<wnid>/<wnid>_<n>.JPEG`, real ImageNet wnids, deliberately not the first six), and a torchvision
resnet18 (1000 classes, so its checkpoint fits torchvision's weights) whose classifier is trained on them.

The classes differ by hue (60° apart, saturation and value jittered) under random distractor shapes and pixel
noise. The model is a seeded random resnet18 whose `fc` is fitted, by multinomial logistic regression, to its own
pooled features of training images put through `ResNet18_Weights.DEFAULT.transforms()` — the transform the
evaluation uses too (tests/test_accuracy.py checks its held-out top-1). The other 994 classes get a constant logit just
below the lowest winning logit of the training images: present in the logits, never winning, and not so far off
that they stretch the int8 output range of fc.

The weights are saved as a checkpoint file and as the TORCH_HOME hub cache file torchvision's weights API looks
for, so `open_model("resnet18", "pretrained")` loads them with TORCH_HOME set.

Use the session fixture `learned` (import it into a test module) or build_learned(folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
import torch
from PIL import Image, ImageDraw

from qbench.runner.registry.weights import cache_path, default_weights
from qbench.runner.registry.torchvision_compat import import_torchvision

__all__ = ["MODEL", "WNIDS", "CLASS_INDICES", "Learned", "draw_image", "write_image_folder", "build_learned",
           "learned"]

MODEL = "resnet18"
# tench, goldfish, English springer, chain saw, parachute, volcano
WNIDS = ("n01440764", "n01443537", "n02102040", "n03000684", "n03888257", "n09472597")
CLASS_INDICES = (0, 1, 217, 491, 701, 980)
IMAGE_SIDE = 40
TRAIN_PER_CLASS = 8
EVAL_PER_CLASS = 8
FIT_STEPS = 300
L2 = 1e-3
# Standardizing by std + STD_FLOOR·mean(std) keeps near-constant features from getting huge weights, which int8
# per-channel weight quantization of fc would then wipe out for the rest of the row.
STD_FLOOR = 0.3
# How far below the lowest winning logit of a training image the other 994 classes' constant logit sits.
OTHER_CLASS_MARGIN = 2.0


@dataclass(frozen=True)
class Learned:
    """Where build_learned put things: `train` (the images the classifier was fitted on, TRAIN_PER_CLASS per class;
    use them to calibrate), `val` (held-out, EVAL_PER_CLASS per class), both ImageNet-style folders; `checkpoint`
    (a state_dict file) and `torch_home` (set TORCH_HOME to it for weights="pretrained")."""

    train: str
    val: str
    checkpoint: str
    torch_home: str


def _hsv_colour(hue: float, generator: torch.Generator) -> tuple[int, int, int]:
    saturation, value = (0.6 + 0.4 * torch.rand(2, generator=generator)).tolist()
    image = Image.new("HSV", (1, 1), (int(hue * 255 / 360) % 256, int(saturation * 255), int(value * 255)))
    return image.convert("RGB").getpixel((0, 0))


def draw_image(position: int, generator: torch.Generator, side: int = IMAGE_SIDE) -> Image.Image:
    """An image of class `position` (0..5): a background of hue 60°·position, two random grey-ish shapes, noise."""
    hue = 60.0 * position + float(torch.empty(1).uniform_(-10, 10, generator=generator))
    image = Image.new("RGB", (side, side), _hsv_colour(hue, generator))
    draw = ImageDraw.Draw(image)
    for _ in range(2):
        x, y = (torch.rand(2, generator=generator) * side * 0.7).tolist()
        extent = side * (0.1 + 0.15 * float(torch.rand(1, generator=generator)))
        grey = int(60 + 140 * float(torch.rand(1, generator=generator)))
        shape = draw.ellipse if float(torch.rand(1, generator=generator)) < 0.5 else draw.rectangle
        shape([x, y, x + extent, y + extent], fill=(grey, grey, grey))
    pixels = torch.tensor(list(image.getdata()), dtype=torch.float32).view(side, side, 3)
    pixels = (pixels + 12 * torch.randn(side, side, 3, generator=generator)).clamp(0, 255).to(torch.uint8)
    return Image.fromarray(pixels.numpy())


def write_image_folder(root: str, per_class: int, seed: int, wnids=WNIDS, extension: str = ".JPEG") -> None:
    """`per_class` seeded images of each class as <root>/<wnid>/<wnid>_<n><extension>."""
    generator = torch.Generator().manual_seed(seed)
    for position, wnid in enumerate(wnids):
        os.makedirs(os.path.join(root, wnid), exist_ok=True)
        for number in range(per_class):
            draw_image(position, generator).save(os.path.join(root, wnid, f"{wnid}_{number:04d}{extension}"),
                                                 quality=95)


def _features(model: torch.nn.Module, folder: str, transform) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled resnet features (input of fc) of every image in an ImageFolder, and the class positions."""
    dataset = import_torchvision().datasets.ImageFolder(folder, transform=transform)
    images = torch.stack([dataset[index][0] for index in range(len(dataset))])
    backbone = torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Flatten())
    with torch.no_grad():
        return backbone(images), torch.tensor(dataset.targets)


def _fit_classifier(model: torch.nn.Module, features: torch.Tensor, positions: torch.Tensor) -> None:
    """Logistic regression on (floored) standardized features, folded into fc's rows of CLASS_INDICES."""
    std = features.std(0)
    mean, std = features.mean(0), std + STD_FLOOR * std.mean()
    standardized = (features - mean) / std
    weight = torch.zeros(len(CLASS_INDICES), features.shape[1], requires_grad=True)
    bias = torch.zeros(len(CLASS_INDICES), requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(FIT_STEPS):
        logits = standardized @ weight.T + bias
        loss = torch.nn.functional.cross_entropy(logits, positions) + L2 * weight.pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        lowest_winner = (standardized @ weight.T + bias).max(1).values.min()
        model.fc.weight.zero_()
        model.fc.bias.fill_(lowest_winner - OTHER_CLASS_MARGIN)
        rows = torch.tensor(CLASS_INDICES)
        model.fc.weight[rows] = weight / std
        model.fc.bias[rows] = bias - (weight / std) @ mean


def build_learned(folder: str) -> Learned:
    """Draw the images, fit the model, save its weights; see the module doc."""
    tv = import_torchvision()
    weights = default_weights(MODEL)
    transform = weights.transforms()
    write_image_folder(os.path.join(folder, "train"), TRAIN_PER_CLASS, seed=1)
    val = os.path.join(folder, "val")
    write_image_folder(val, EVAL_PER_CLASS, seed=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = tv.models.get_model_builder(MODEL)(weights=None, num_classes=1000).eval()
    _fit_classifier(model, *_features(model, os.path.join(folder, "train"), transform))
    checkpoint = os.path.join(folder, f"{MODEL}-learned.pth")
    torch.save(model.state_dict(), checkpoint)
    torch_home = os.path.join(folder, "torch_home")
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = torch_home
    try:
        hub_file = cache_path(weights)
    finally:
        if previous is None:
            del os.environ["TORCH_HOME"]
        else:
            os.environ["TORCH_HOME"] = previous
    os.makedirs(os.path.dirname(hub_file), exist_ok=True)
    torch.save(model.state_dict(), hub_file)
    return Learned(train=os.path.join(folder, "train"), val=val, checkpoint=checkpoint, torch_home=torch_home)


_built: dict[str, Learned] = {}


@pytest.fixture(scope="session")
def learned(tmp_path_factory) -> Learned:
    """The Learned set, built once per test process (test modules that import this fixture share it)."""
    if "learned" not in _built:
        _built["learned"] = build_learned(str(tmp_path_factory.mktemp("learned")))
    return _built["learned"]
