"""The data qbench passes along its one direction of flow: Case (what to measure) and RunRecord (what happened).

Stdlib only: the parent process, the store and the reports use these without importing torch.
docs/records.md documents the JSON form field by field.

Format history (bump SCHEMA_VERSION and add `update_to_N` in qbench/history/store.py on any incompatible change):
  1 (qbench 0.1): first version. One JSON object per line; a run file holds a header line
    (kind "run"), one line per case (kind "case") and, when the run finished, a footer line (kind "run_end").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from typing import Any

from qbench.errors import StoreError

__all__ = ["SCHEMA_VERSION", "STATUSES", "MODES", "ENGINES", "ENGINELESS_MODES", "BF16_ISA", "WEIGHT_KINDS", "QAT_SCHEDULES", "CalibrationSpec",
           "QatSpec", "AccuracySpec", "MeasureSpec", "Case", "RunRecord", "canonical_json", "mode_rank"]

SCHEMA_VERSION = 1

STATUSES = ("ok", "skipped", "failed", "timeout")
MODES = ("fp32", "fp32_bf16", "dynamic", "static_eager", "static_fx", "prequantized", "qat", "pt2e")
ENGINES = ("x86", "fbgemm", "onednn", "qnnpack")
WEIGHT_KINDS = ("random", "pretrained", "checkpoint")
# Modes that do not use a quantized engine: one case per model, engine None.
ENGINELESS_MODES = ("fp32", "fp32_bf16")
# fp32 weights and activations with oneDNN allowed to compute in bf16 (fast math): what AWS's Graviton guide and
# AMX hosts deploy instead of int8. It needs bf16 in the ISA (qbench.plan.expand skips it elsewhere).
BF16_ISA = {"x86_64": ("avx512_bf16", "amx_bf16"), "aarch64": ("bf16",)}


def mode_rank(mode: str) -> int:
    """Sort key of a mode: MODES order, then modes qbench run does not produce (kernel micro-benchmarks) last."""
    return MODES.index(mode) if mode in MODES else len(MODES)


_UNSET = object()
# Case fields added after schema 1, with the default that older records implicitly had.
_ADDED_FIELDS = {"runner": "native", "qat": None}


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the form that identities are hashed over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _from_dict(cls, data: dict, where: str):
    """Build a frozen dataclass from a dict, rejecting unknown keys (a misspelt key must never pass silently)."""
    if not isinstance(data, dict):
        raise StoreError(f"{where}: expected an object, got {type(data).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise StoreError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(names))}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise StoreError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class CalibrationSpec:
    """Where calibration images come from. `source` is "synthetic" (seeded random images) or an ImageFolder path."""

    source: str = "synthetic"
    batches: int = 2
    batch_size: int = 8
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> CalibrationSpec:
        return _from_dict(cls, data, "calibration")


QAT_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class QatSpec:
    """Quantization-aware fine-tuning of a `qat` case: SGD steps over the calibration batches (cycled), with the
    learning rate following `schedule` ("constant" or "cosine") from `lr`. Part of the case's identity."""

    steps: int = 20
    lr: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    freeze_observers_after: int = 10
    freeze_bn_after: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> QatSpec:
        return _from_dict(cls, data, "qat")


@dataclass(frozen=True)
class AccuracySpec:
    """The evaluation images of a case. Not part of a case's identity: the subset actually used (count, seed,
    file-list hash) is recorded with the accuracy metrics, and accuracy compares only on equal subsets.

    source: "synthetic" (seeded random images: label-free metrics only) or a folder of class folders (ImageFolder;
    folder names are WordNet ids in torchvision's ImageNet order, or `labels` names a label-map file).
    labels: "auto" (WordNet ids when every class folder is one, unlabelled when none is), "wnid", "none", or the
    path of a label-map file (`folder index` lines or JSON {folder: index}; qbench.runner.registry.evalset).
    images: how many images to evaluate (a seeded random subset when the folder has more); 0 turns accuracy off.
    source may also be "data:<name>/<split>", a split of a named set (qbench.data.sets, `qbench data fetch`).
    max_drop: the accuracy gate's limit on an int8 case's top-1 drop from its fp32 parent, relative, e.g. "1%", then
    optional per-model overrides "1%, mobilenet_v3*=3%"; "" means qbench's defaults (qbench.compare.accuracy_gate).
    """

    source: str = "synthetic"
    images: int = 32
    batch_size: int = 16
    seed: int = 0
    labels: str = "auto"
    max_drop: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        if not data["max_drop"]:
            del data["max_drop"]  # at its default it is left out, so workers of older commits (qbench ab) accept it
        return data

    @classmethod
    def from_dict(cls, data: dict) -> AccuracySpec:
        return _from_dict(cls, data, "accuracy")


@dataclass(frozen=True)
class MeasureSpec:
    """How latency is sampled. Not part of a case's identity: it changes precision, not what is measured.

    Fixed (target_rel_ci 0): rounds until min_rounds and min_time_s. Adaptive (target_rel_ci > 0): after those
    minimums, rounds until the 95% interval of the median is within ±target_rel_ci of it, or max_time_s, or
    max_rounds (qbench.stats.stopping); every sample is kept and the record names the rule and why it stopped."""

    warmup_rounds: int = 3
    min_time_s: float = 1.0
    min_rounds: int = 10
    max_rounds: int = 500
    min_sample_s: float = 0.001
    timeout_s: float = 600.0
    target_rel_ci: float = 0.0
    max_time_s: float = 0.0

    def to_dict(self) -> dict:
        # The adaptive fields only when set: `qbench ab` hands this dict to workers of older commits, whose
        # MeasureSpec rejects keys it does not know.
        data = asdict(self)
        if not self.target_rel_ci:
            data.pop("target_rel_ci")
            data.pop("max_time_s")
        return data

    @classmethod
    def from_dict(cls, data: dict) -> MeasureSpec:
        return _from_dict(cls, data, "measure")


@dataclass(frozen=True)
class Case:
    """The frozen identity of one measurement: what is measured, never how long it took.

    `weights` is "random", "pretrained" or "checkpoint:<path>"; `engine` is None for engine-less modes (fp32);
    `runner` is the ISA profile (qbench.suite.profiles): results of different profiles are different series.
    """

    model: str
    mode: str
    engine: str | None
    batch_size: int
    threads: int
    weights: str = "random"
    qconfig: str = "default"
    calibration: CalibrationSpec = field(default_factory=CalibrationSpec)
    seed: int = 0
    runner: str = "native"
    qat: QatSpec | None = None

    @property
    def weights_kind(self) -> str:
        return self.weights.split(":", 1)[0]

    @cached_property  # a Case is frozen: computed once per object (every reader calls it per record)
    def case_id(self) -> str:
        """A readable, unique name within a suite: model/mode/engine/bN/tN/weights, plus #qconfig when not the
        default and @runner when not native."""
        name = "/".join([self.model, self.mode, self.engine or "-", f"b{self.batch_size}", f"t{self.threads}",
                         self.weights_kind])
        if self.qconfig != "default":
            name += f"#{self.qconfig}"
        return name if self.runner == "native" else f"{name}@{self.runner}"

    @cached_property
    def case_version(self) -> str:
        """Hash of the whole definition: two records compare only when their case_version is equal. Fields added
        after schema 1 count only when they differ from their default, so older records keep their version."""
        identity = {k: v for k, v in self.to_dict().items() if _ADDED_FIELDS.get(k, _UNSET) != v}
        return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["calibration"] = self.calibration.to_dict()
        data["qat"] = None if self.qat is None else self.qat.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Case:
        if isinstance(data, dict) and isinstance(data.get("calibration"), dict):
            data = {**data, "calibration": CalibrationSpec.from_dict(data["calibration"])}
        if isinstance(data, dict) and isinstance(data.get("qat"), dict):
            data = {**data, "qat": QatSpec.from_dict(data["qat"])}
        return _from_dict(cls, data, "case")


@dataclass(frozen=True)
class RunRecord:
    """What happened to one case in one run. Failures are data: status plus reason, never a missing record.

    metrics (all raw; summaries are derived on read by qbench.stats.summary):
      latency:  {"unit": "s", "samples": [seconds per inference, ...], "loops": int, "warmup_rounds": int}
      size:     {"state_dict_bytes", "bytes_by_dtype", "parameters", "modules_quantized", "modules_float", ...}
      memory:   {"unit": "bytes", "rss_start", "peak_rss_build", "peak_rss_run", "method"}
    details: provenance of this case's numbers (qconfig, calibration hash, weights, input shape, phase timings).
    """

    run_id: str
    record_id: str
    case: Case
    status: str
    suite: dict
    machine: dict
    environment: dict
    qbench: dict
    started_at: str
    finished_at: str
    duration_s: float
    reason: str | None = None
    error_tail: str | None = None
    metrics: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)
    worker: dict = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.status not in STATUSES:
            raise StoreError(f"record {self.record_id}: status {self.status!r} is not one of {', '.join(STATUSES)}")

    @property
    def case_id(self) -> str:
        return self.case.case_id

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["case"] = self.case.to_dict()
        data["case_id"] = self.case.case_id
        data["case_version"] = self.case.case_version
        data["kind"] = "case"
        return data

    @classmethod
    def from_dict(cls, data: dict, case: Case | None = None) -> RunRecord:
        """case: the Case read from an equal `case` object, when a reader shares one per distinct case."""
        if not isinstance(data, dict):
            raise StoreError(f"record: expected an object, got {type(data).__name__}")
        data = dict(data)
        data.pop("kind", None)
        raw_case = data.pop("case", None)
        case = case if case is not None else Case.from_dict(raw_case)
        stored_id, stored_version = data.pop("case_id", None), data.pop("case_version", None)
        if stored_version is not None and stored_version != case.case_version:
            raise StoreError(f"record {data.get('record_id')}: case_version {stored_version} does not match its case "
                             f"definition ({case.case_version}); the file was edited or corrupted")
        if stored_id is not None and stored_id != case.case_id:
            raise StoreError(f"record {data.get('record_id')}: case_id {stored_id} does not match its case")
        return _from_dict(cls, {**data, "case": case}, "record")
