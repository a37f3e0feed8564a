"""Torch-side registries used inside worker processes: models (and their weights), calibration data,
quantization modes and engines. Everything under qbench.runner.registry may import torch; the parent process never
imports this package.

The two contracts shared between models.py and modes.py live here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

__all__ = ["ModelSource", "Prepared"]


class ModelSource(Protocol):
    """One model under one weights choice, able to build each variant a mode needs.

    Every builder returns a fresh module in eval() mode. Builders that do not exist for this model raise
    qbench.errors.NotApplicable with a one-line reason (that becomes a `skipped` record).
    """

    name: str
    quantizable: bool          # torchvision.models.quantization has a builder for it
    input_size: int            # square input side the model expects (299 for inception_v3)

    def float_model(self) -> "torch.nn.Module":
        """The plain float model (torchvision.models.<name>), weights as requested."""

    def quantizable_model(self) -> "torch.nn.Module":
        """The Quantizable* variant (QuantStub/DeQuantStub, fuse_model()), float, same weights. Not fused yet."""

    def prequantized_model(self, engine: str) -> "torch.nn.Module":
        """torchvision's quantize=True model with its weights packed for `engine`. On return the process's
        torch.backends.quantized.engine is `engine` (torchvision's builder switches it silently)."""

    def weights_info(self) -> dict:
        """Provenance of the weights: {"kind": "random"|"pretrained"|"checkpoint", "name": str|None,
        "file": str|None, "sha256": str|None}."""


@dataclass
class Prepared:
    """A model ready to measure, and how it was made. `qconfig` is JSON data (observers, dtypes, qscheme,
    per-channel, reduce_range), None for fp32. `phases` holds wall seconds per recipe step."""

    model: Any
    qconfig: dict | None
    phases: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
