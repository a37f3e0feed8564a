"""The qconfig name grammar: the `qconfigs` axis of a suite, parsed and validated in the parent (stdlib only; the
torch side that builds a QConfig from a name is qbench.runner.registry.qconfigs).

Grammar:

    name         := base [ "@" engine ]
    base         := "default" | observer "/" granularity "/" symmetry [ "/reduce_range" ]
    observer     := "minmax" | "moving_average" | "histogram"
    granularity  := "per_tensor" | "per_channel"
    symmetry     := "affine" | "symmetric"
    engine       := "x86" | "fbgemm" | "onednn" | "qnnpack"

"default" is torch's own default for the case's engine (get_default_qconfig / get_default_qconfig_mapping, or
their QAT versions). Names are case-sensitive and have one spelling each, so a name is its own canonical form
(except that an "@engine" suffix is kept as written).

What a named qconfig sets:
  observer     the activation observer (MinMaxObserver, MovingAverageMinMaxObserver, HistogramObserver). Weights
               are seen once in post-training quantization, so their observer is always the MinMax family
               (MinMaxObserver / PerChannelMinMaxObserver; for QAT the moving-average versions, as torch's own
               QAT defaults), and the sweep of observers is a sweep of how activation ranges are calibrated.
  granularity  of the weights: per-tensor, or per-channel along the output-channel axis. Activations are always
               per-tensor (the quantized kernels take one scale per activation tensor).
  symmetry     of the weights: qint8 per_*_affine, or per_*_symmetric (zero point 0). Activations stay affine
               quint8 in every name: they are mostly non-negative (after ReLU), where a symmetric scheme would
               throw away half of the 256 levels, and the quantized kernels take quint8 activations.
  reduce_range activations use 7 bits (quant_max 127) instead of 8, which FBGEMM's and x86's int8 dot products
               need to avoid overflow in their 16-bit accumulation; without it activations use the full 0..255.
  @engine      "calibrated for another engine": the qconfig (default or named) is that engine's, and preparation
               and calibration run under that engine; conversion (weight packing) and the measurement then run
               under the case's own engine, so the measured kernels are always the case engine's. For example
               `default@qnnpack` on an x86 case measures x86 kernels fed with qnnpack's full-range activations
               and per-tensor weights.

Modes that cannot take a name other than "default": see qconfig_skip_reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from qbench.errors import ConfigError
from qbench.records import ENGINES

__all__ = ["OBSERVERS", "GRANULARITIES", "SYMMETRIES", "REDUCE_RANGE", "DEFAULT", "QCONFIG_EXAMPLES", "QconfigName",
           "parse_qconfig_name", "canonical_name", "qconfig_skip_reason"]

DEFAULT = "default"
OBSERVERS = ("minmax", "moving_average", "histogram")
GRANULARITIES = ("per_tensor", "per_channel")
SYMMETRIES = ("affine", "symmetric")
REDUCE_RANGE = "reduce_range"

QCONFIG_EXAMPLES = (
    "default",
    "minmax/per_tensor/affine",
    "minmax/per_channel/symmetric",
    "moving_average/per_tensor/symmetric/reduce_range",
    "histogram/per_channel/symmetric/reduce_range",
    "default@qnnpack",
    "histogram/per_tensor/symmetric@qnnpack",
)

# Modes whose quantization is fixed by something other than a qconfig, with the reason a sweep skips them.
_FIXED = {
    "fp32": "fp32 is not quantized: it takes only the qconfig 'default'",
    "prequantized": "prequantized models come quantized by torchvision: they take only the qconfig 'default'",
    "dynamic": "dynamic quantization measures activation ranges at run time and its weights are fixed per-tensor "
               "MinMax: it takes only the qconfig 'default'",
    "pt2e": "pt2e's quantizers (X86InductorQuantizer, XNNPACKQuantizer) choose their own observers: it takes only "
            "the qconfig 'default'",
}


@dataclass(frozen=True)
class QconfigName:
    """A parsed qconfig name. observer/granularity/symmetry are None for "default"; calibrated_for is the engine
    after "@", or None."""

    observer: str | None = None
    granularity: str | None = None
    symmetry: str | None = None
    reduce_range: bool = False
    calibrated_for: str | None = None

    @property
    def is_default(self) -> bool:
        """True for "default" and "default@engine": torch's default qconfig of an engine."""
        return self.observer is None

    @property
    def per_channel(self) -> bool:
        return self.granularity == "per_channel"

    @property
    def symmetric(self) -> bool:
        return self.symmetry == "symmetric"

    @property
    def base(self) -> str:
        """The name without its "@engine" suffix."""
        if self.is_default:
            return DEFAULT
        parts = [self.observer, self.granularity, self.symmetry] + ([REDUCE_RANGE] if self.reduce_range else [])
        return "/".join(parts)

    @property
    def name(self) -> str:
        """The canonical spelling."""
        return self.base if self.calibrated_for is None else f"{self.base}@{self.calibrated_for}"


def _pick(value: str, allowed: tuple[str, ...], what: str, name: str) -> str:
    if value not in allowed:
        raise ConfigError(f"qconfig {name!r}: unknown {what} {value!r}; allowed: {', '.join(allowed)}")
    return value


def _parse_base(base: str, name: str) -> dict:
    if base == DEFAULT:
        return {}
    parts = base.split("/")
    if len(parts) not in (3, 4):
        raise ConfigError(f"qconfig {name!r}: expected 'default' or <observer>/<granularity>/<symmetry>"
                          f"[/reduce_range][@engine], e.g. {QCONFIG_EXAMPLES[4]!r}")
    if len(parts) == 4 and parts[3] != REDUCE_RANGE:
        raise ConfigError(f"qconfig {name!r}: unknown fourth part {parts[3]!r}; allowed: {REDUCE_RANGE}")
    return {"observer": _pick(parts[0], OBSERVERS, "observer", name),
            "granularity": _pick(parts[1], GRANULARITIES, "granularity", name),
            "symmetry": _pick(parts[2], SYMMETRIES, "symmetry", name),
            "reduce_range": len(parts) == 4}


def parse_qconfig_name(name: str) -> QconfigName:
    """Parse a qconfig name (grammar in the module docstring); ConfigError naming the allowed values otherwise."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"qconfig name must be a non-empty string, got {name!r}")
    base, at, engine = name.partition("@")
    fields = _parse_base(base, name)
    if at:
        fields["calibrated_for"] = _pick(engine, ENGINES, "engine", name)
    return QconfigName(**fields)


def canonical_name(name: str) -> str:
    """The one spelling of a valid qconfig name (ConfigError for an invalid one)."""
    return parse_qconfig_name(name).name


def qconfig_skip_reason(mode: str, name: str) -> str | None:
    """Why `mode` cannot be measured under qconfig `name`, or None when it can. Every mode takes "default"."""
    parsed = parse_qconfig_name(name)
    if parsed.name == DEFAULT:
        return None
    return _FIXED.get(mode)
