"""Tiny float models named as `tests.tiny_models:<factory>` in test suites: real torch, built in milliseconds."""

import time

import torch
from torch import nn

INPUT_SIZE = 32


def convnet() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(32, 10))


def convnet_wide() -> nn.Module:
    """A second model, for tests that need two (a shard holds every case of a model)."""
    return nn.Sequential(nn.Conv2d(3, 24, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(24, 10))


class _Slow(nn.Module):
    """Sleeps in forward so that a run is still going when a test interrupts it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3 * INPUT_SIZE * INPUT_SIZE, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.05)
        return self.linear(x.flatten(1))


def slow() -> nn.Module:
    return _Slow()
