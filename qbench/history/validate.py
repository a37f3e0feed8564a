"""Check the values of history lines when they are read: types, ranges, and finite numbers where a metric needs them.

The rules are pydantic models of the parts of a line that qbench's readers compute with (docs/records.md, "Values
readers accept"); every other field passes through untouched (`extra="allow"`), so a record keeps everything it
carried. A case line that breaks a rule is left out of the history with one line naming the file, line, record and
the first broken field; the rest of the file is still read. A header line that breaks a rule makes its file
unreadable, as a corrupt header does.

The rules, by metric (a value that is absent or null is always allowed: that metric is then missing):
  latency.samples        a list of finite numbers > 0 (seconds per inference)
  latency.cpu_samples    a list of finite numbers >= 0 (process CPU seconds per inference), when present
  size.state_dict_bytes  a finite number > 0 (a serialized state_dict is never empty); other counts >= 0
  memory.*, bandwidth.*  finite numbers >= 0 (bytes and counts; qbench writes integers)
  accuracy               top1, top5, agreement in [0, 1]; delta_top1 in [-1, 1]; sqnr_db any finite number
  details.peaks          finite numbers >= 0
Booleans are not numbers here, and a string is never coerced into one. Pure; no torch.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

__all__ = ["RULES_VERSION", "check_case_line", "check_header_line", "describe_error"]

# The version of the value rules below. The columnar store records it for the records it checked at compaction;
# a reader re-checks a compacted run's records only when its rules are another version.
RULES_VERSION = 1

FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
PositiveFloat = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]
NonNegativeFloat = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
Fraction = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1)]
SignedFraction = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1, le=1)]
# Byte and element counts: integers as qbench writes them, but a float of the same meaning reads the same.
Count = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
PositiveCount = Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0)]


class _Open(BaseModel):
    """Checks the fields it names and keeps every other one as it is."""

    model_config = ConfigDict(extra="allow", strict=True)


class _Latency(_Open):
    samples: list[PositiveFloat] | None = None
    cpu_samples: list[NonNegativeFloat] | None = None


class _Size(_Open):
    state_dict_bytes: PositiveCount | None = None
    parameters: Count | None = None
    modules_quantized: Count | None = None
    modules_float: Count | None = None


class _Memory(_Open):
    rss_start: Count | None = None
    peak_rss_build: Count | None = None
    peak_rss_run: Count | None = None


class _Bandwidth(_Open):
    bytes_total: Count | None = None
    bytes_weights: Count | None = None
    bytes_activations_read: Count | None = None
    bytes_activations_written: Count | None = None
    macs: Count | None = None


class _Subset(_Open):
    files_sha256: StrictStr | None = None
    images: Count | None = None


class _Accuracy(_Open):
    subset: _Subset | None = None
    labelled: StrictBool | None = None
    top1: Fraction | None = None
    top5: Fraction | None = None
    agreement: Fraction | None = None
    sqnr_db: FiniteFloat | None = None
    delta_top1: SignedFraction | None = None
    delta_top1_ci: list[SignedFraction | None] | None = Field(default=None, min_length=2, max_length=2)


class _Metrics(_Open):
    latency: _Latency | None = None
    size: _Size | None = None
    memory: _Memory | None = None
    bandwidth: _Bandwidth | None = None
    accuracy: _Accuracy | None = None


class _Peaks(_Open):
    copy_gbps: NonNegativeFloat | None = None
    triad_gbps: NonNegativeFloat | None = None
    fp32_gmacs: NonNegativeFloat | None = None
    int8_gmacs: NonNegativeFloat | None = None


class _Details(_Open):
    peaks: _Peaks | None = None
    phases_s: dict[StrictStr, NonNegativeFloat | None] | None = None


class _Machine(_Open):
    machine_id: StrictStr
    isa: list[StrictStr] | None = None


class _Provenance(_Open):
    commit: StrictStr | None = None
    dirty: StrictBool | None = None


class _Suite(_Open):
    name: StrictStr | None = None


class _Environment(_Open):
    torch: StrictStr | None = None
    torchvision: StrictStr | None = None
    torchao: StrictStr | None = None
    python: StrictStr | None = None
    cpu_capability: StrictStr | None = None


class _CaseLine(_Open):
    run_id: StrictStr
    record_id: StrictStr
    status: StrictStr
    reason: StrictStr | None = None
    suite: _Suite
    machine: _Machine
    environment: _Environment
    qbench: _Provenance
    started_at: StrictStr
    finished_at: StrictStr
    duration_s: NonNegativeFloat
    metrics: _Metrics = Field(default_factory=_Metrics)
    details: _Details = Field(default_factory=_Details)


class _HeaderLine(_Open):
    """Readers take every header field with a default, so only the type of one that is there is checked."""

    run_id: StrictStr | None = None
    started_at: StrictStr | None = None
    suite: _Suite | None = None
    machine: _Machine | None = None
    qbench: _Provenance | None = None


def describe_error(error: ValidationError) -> str:
    """The first broken field as `path.to.field: message (got 'value')`, plus how many more there are."""
    problems = error.errors(include_url=False)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "line"
    got = first.get("input")
    shown = repr(got)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    text = f"{where}: {first['msg']}"
    if first["type"] != "missing":
        text += f" (got {shown})"
    if len(problems) > 1:
        text += f"; and {len(problems) - 1} more"
    return text


def check_case_line(line: dict) -> str | None:
    """None when the values of a case line can be read, else why not in one line."""
    try:
        _CaseLine.model_validate(line)
    except ValidationError as exc:
        return describe_error(exc)
    return None


def check_header_line(line: dict) -> str | None:
    """None when a run header's values can be read, else why not in one line."""
    try:
        _HeaderLine.model_validate(line)
    except ValidationError as exc:
        return describe_error(exc)
    return None


def finite_positive(value) -> bool:
    """True for a number that can be a ratio's denominator or be inverted: finite and > 0 (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
