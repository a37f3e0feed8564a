"""The accuracy gate of the nightly: three checks of labelled top-1 that run records already carry (their
metrics.accuracy holds the per-image predictions and labels, and, for an int8 case, its fp32 parent's top-1 on the
same images, measured in the same worker).

1. parent: an int8 case fails when its top-1 drops from its fp32 parent's by more than a limit, relative:
   (top1_fp32 - top1_int8) / top1_fp32 > max_drop. Defaults: 1% (Intel Neural Compressor's criterion; MLPerf
   allows 1% too), and wider ones for the families whose own published int8 weights lose more (torchvision:
   MobileNetV3-L -1.04 pt of 74.04 = 1.4% relative; ShuffleNetV2 -0.9 to -2.6 pt, x0.5 4.3% relative):
   mobilenet_v3* 3%, shufflenet_v2* 5%. A suite sets its own in `[accuracy] max_drop`: "1%" replaces the general
   default, "1%, mobilenet_v3*=2%" also a family's (model-name globs, first match wins; families the suite does
   not name keep their defaults). The limit cannot be finer than one image: on N images, one image is 1/N.
2. history: an int8 or fp32 case fails when its top-1 moved down against its reference, the latest earlier record
   of the same case (same definition, weights file and evaluation subset) in the same ISA class, by more than
   McNemar's exact test on the same images allows (two-sided p < HISTORY_ALPHA, fewer images right than before).
   References are kept per ISA class, not per machine: a new machine of a known class is judged at once, and an
   AVX2 runner is never judged against a VNNI one.
3. isa: the same case on two machines or ISA classes (latest record of each; a runner profile such as avx2 on one
   machine counts as another class), with the same weights, calibration and evaluation images, whose top-1
   differs by more than ISA_EFFECT_POINTS is flagged as an ISA effect (e.g. int16 saturation of u8*s8 products
   without VNNI): reported, not failed, since neither machine regressed.

ISA class (isa_class): architecture and the best int8 dot-product path the worker could use: amx, vnni, avx2 or
sse on x86 (capped by the runner profile: the avx2 profile is avx2 whatever the host has), i8mm, dotprod or neon
on ARM. Pure, stdlib only: no torch.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterable
from dataclasses import dataclass

from qbench.errors import ConfigError
from qbench.records import RunRecord
from qbench.stats.accuracy import discordant_counts, mcnemar_exact

__all__ = ["DEFAULT_MAX_DROP", "FAMILY_MAX_DROP", "HISTORY_ALPHA", "ISA_EFFECT_POINTS", "AccuracyFinding",
           "parse_max_drop", "max_drop_for", "isa_class", "parent_findings", "history_findings", "isa_findings",
           "gate", "gate_runs", "render_findings"]

DEFAULT_MAX_DROP = 0.01
FAMILY_MAX_DROP = (("mobilenet_v3*", 0.03), ("shufflenet_v2*", 0.05))
HISTORY_ALPHA = 0.01
ISA_EFFECT_POINTS = 0.01
_EPSILON = 1e-12


@dataclass(frozen=True)
class AccuracyFinding:
    """One check of one case. kind: "parent", "history" or "isa"; verdict: "fails", "passes" or "flagged" (isa).
    top1 and reference are fractions; reference is the fp32 parent's top-1 (parent), the reference run's (history),
    or the other machine's (isa). limit: the relative drop allowed (parent), alpha (history), points (isa)."""

    kind: str
    verdict: str
    case_id: str
    machine_id: str
    run_id: str
    isa_class: str
    top1: float
    reference: float
    images: int
    limit: float
    limit_source: str
    p_value: float | None = None
    detail: str = ""

    @property
    def failing(self) -> bool:
        return self.verdict == "fails"

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def parse_max_drop(text: str) -> tuple[tuple[str, float], ...]:
    """`[accuracy] max_drop` → ((glob, fraction), ...): "" → (); "1%" → (("*", 0.01),); "1%, shufflenet*=4%" →
    (("shufflenet*", 0.04), ("*", 0.01)) (specific globs first)."""
    entries, general = [], []
    for part in (p.strip() for p in text.split(",")) if text.strip() else ():
        glob, equals, amount = part.rpartition("=")
        glob = glob.strip() if equals else "*"
        amount = amount.strip()
        try:
            value = float(amount[:-1]) / 100 if amount.endswith("%") else math.nan
        except ValueError:
            value = math.nan
        if not glob or not (value >= 0):
            raise ConfigError(f"max_drop {text!r}: each part must be \"N%\" or \"model-glob=N%\" (relative drop of "
                              f"top-1 from the fp32 parent), got {part!r}")
        (general if glob == "*" else entries).append((glob, value))
    if len(general) > 1:
        raise ConfigError(f"max_drop {text!r} gives the general limit twice")
    return tuple(entries + general)


def max_drop_for(model: str, text: str = "") -> tuple[float, str]:
    """(relative limit, where it came from) for a model under a suite's max_drop."""
    suite = parse_max_drop(text)
    for glob, value in suite:
        if glob != "*" and fnmatch.fnmatch(model, glob):
            return value, f"suite ({glob})"
    for glob, value in FAMILY_MAX_DROP:
        if fnmatch.fnmatch(model, glob):
            return value, f"default for {glob}"
    for glob, value in suite:
        if glob == "*":
            return value, "suite"
    return DEFAULT_MAX_DROP, "default"


def isa_class(record: RunRecord) -> str:
    machine = record.machine or {}
    arch = machine.get("arch") or "unknown"
    features = set(machine.get("isa") or ())
    if arch in ("aarch64", "arm64"):
        level = "i8mm" if "i8mm" in features else "dotprod" if "asimddp" in features else "neon"
        return f"{arch}/{level}"
    if record.case.runner != "native":
        return f"{arch}/{record.case.runner}"
    if "amx_int8" in features:
        level = "amx"
    elif features & {"avx512_vnni", "avx_vnni"}:
        level = "vnni"
    elif "avx2" in features:
        level = "avx2"
    else:
        level = "sse"
    return f"{arch}/{level}"


def _labelled(record: RunRecord) -> dict | None:
    accuracy = record.metrics.get("accuracy") if record.status == "ok" else None
    if not accuracy or not accuracy.get("labelled") or accuracy.get("top1") is None:
        return None
    if record.case.weights_kind == "random":  # near-tied logits: accuracy means nothing (claims says n/a too)
        return None
    return accuracy


def _first_per_case(records: Iterable[RunRecord]) -> list[RunRecord]:
    """One record per run and case (repeats of a case see the same images and give the same predictions)."""
    seen, kept = set(), []
    for record in records:
        key = (record.run_id, record.case_id)
        if key not in seen and _labelled(record) is not None:
            seen.add(key)
            kept.append(record)
    return kept


def parent_findings(records: Iterable[RunRecord]) -> list[AccuracyFinding]:
    found = []
    for record in _first_per_case(records):
        accuracy = _labelled(record)
        parent = (accuracy.get("reference") or {}).get("top1")
        if record.case.mode == "fp32" or parent is None:
            continue
        limit, source = max_drop_for(record.case.model, accuracy.get("max_drop") or "")
        drop = (parent - accuracy["top1"]) / parent if parent > 0 else 0.0
        images = (accuracy.get("subset") or {}).get("images") or len(accuracy.get("labels") or ())
        fails = drop > limit + _EPSILON
        detail = f"drop {drop:+.2%} relative ({(accuracy['top1'] - parent) * 100:+.2f} pt) vs limit {limit:.1%}"
        if images and 1 / images > limit * parent:
            detail += f"; one image is {100 / images:.2f} pt here, coarser than the limit"
        found.append(AccuracyFinding("parent", "fails" if fails else "passes", record.case_id,
                                     str(record.machine.get("machine_id")), record.run_id, isa_class(record),
                                     accuracy["top1"], parent, images, limit, source,
                                     accuracy.get("mcnemar_p"), detail))
    return found


def _correct(accuracy: dict) -> list[bool] | None:
    predictions, labels = accuracy.get("predictions"), accuracy.get("labels")
    if not predictions or not labels or len(predictions) != len(labels):
        return None
    return [p == label for p, label in zip(predictions, labels)]


def _reference_key(record: RunRecord, accuracy: dict) -> tuple:
    subset = accuracy.get("subset") or {}
    weights = (record.details.get("weights") or {}).get("sha256")
    return (record.case_id, record.case.case_version, isa_class(record), weights, subset.get("files_sha256"),
            subset.get("labels"), subset.get("transform"))


def history_findings(candidates: Iterable[RunRecord], history: Iterable[RunRecord],
                     alpha: float = HISTORY_ALPHA) -> list[AccuracyFinding]:
    """Each candidate against its reference: the latest record of `history` started before it with the same
    _reference_key (same case, ISA class, weights file and images)."""
    earlier: dict[tuple, list[RunRecord]] = {}
    for record in _first_per_case(history):
        earlier.setdefault(_reference_key(record, _labelled(record)), []).append(record)
    found = []
    for record in _first_per_case(candidates):
        accuracy = _labelled(record)
        before = [r for r in earlier.get(_reference_key(record, accuracy), ())
                  if (r.started_at, r.run_id) < (record.started_at, record.run_id)]
        if not before:
            continue
        reference = max(before, key=lambda r: (r.started_at, r.run_id))
        mine, theirs = _correct(accuracy), _correct(_labelled(reference))
        if mine is None or theirs is None or len(mine) != len(theirs):
            continue
        gained, lost = discordant_counts(mine, theirs)
        p = mcnemar_exact(gained, lost)
        fails = lost > gained and p < alpha
        found.append(AccuracyFinding(
            "history", "fails" if fails else "passes", record.case_id, str(record.machine.get("machine_id")),
            record.run_id, isa_class(record), accuracy["top1"], _labelled(reference)["top1"], len(mine), alpha,
            f"McNemar vs run {reference.run_id[:8]} ({reference.started_at[:19]})", p,
            f"{gained} image(s) gained, {lost} lost; p={p:.3g}"))
    return found


def _without_runner(record: RunRecord) -> str:
    """The case definition but its runner profile: the same case measured under another ISA cap."""
    import json

    return json.dumps({k: v for k, v in record.case.to_dict().items() if k != "runner"}, sort_keys=True)


def isa_findings(candidates: Iterable[RunRecord], history: Iterable[RunRecord],
                 points: float = ISA_EFFECT_POINTS) -> list[AccuracyFinding]:
    """Each candidate against the latest record of the same case (same definition but the runner profile, same
    weights, calibration images and evaluation images) on every other machine or ISA class (another runner
    profile on one machine is one); a top-1 gap above `points` is flagged."""
    def key(record: RunRecord) -> tuple:
        subset = _labelled(record).get("subset") or {}
        # the calibration images' identity too: a gap from other calibration data is not an ISA effect
        return (_without_runner(record), (record.details.get("weights") or {}).get("sha256"),
                (record.details.get("calibration") or {}).get("sha256"), subset.get("files_sha256"),
                subset.get("labels"), subset.get("transform"))

    def place(record: RunRecord) -> tuple[str, str]:
        return str(record.machine.get("machine_id")), isa_class(record)

    latest: dict[tuple, dict[tuple, RunRecord]] = {}
    for record in _first_per_case(history):
        places = latest.setdefault(key(record), {})
        here = places.get(place(record))
        if here is None or (record.started_at, record.run_id) > (here.started_at, here.run_id):
            places[place(record)] = record
    found = []
    for record in _first_per_case(candidates):
        mine = _labelled(record)["top1"]
        for (other_machine, other_isa), other in sorted(latest.get(key(record), {}).items()):
            if (other_machine, other_isa) == place(record):
                continue
            theirs = _labelled(other)["top1"]
            if abs(mine - theirs) > points + _EPSILON:
                found.append(AccuracyFinding(
                    "isa", "flagged", record.case_id, place(record)[0], record.run_id, isa_class(record), mine,
                    theirs, len(_labelled(record).get("labels") or ()), points, "ISA effect threshold", None,
                    f"{(mine - theirs) * 100:+.2f} pt vs {other.case_id} on {other_machine} ({other_isa}): an ISA "
                    f"effect (e.g. AVX2 int16 saturation without VNNI), not noise"))
    return found


def gate(candidates: Iterable[RunRecord], history: Iterable[RunRecord]) -> list[AccuracyFinding]:
    """All three checks of the candidate records (e.g. tonight's merged runs) against the whole history."""
    candidates, history = list(candidates), list(history)
    return parent_findings(candidates) + history_findings(candidates, history) + isa_findings(candidates, history)


def render_findings(findings: list[AccuracyFinding]) -> str:
    """A table of every check, then REGRESSION blocks for the failing ones (the lines nightly CI quotes)."""
    if not findings:
        return "accuracy  no labelled accuracy on pretrained or checkpoint weights in these runs: nothing to gate"
    rows = [("check", "case", "isa", "top1", "reference", "verdict", "why")]
    for f in findings:
        rows.append((f.kind, f.case_id, f.isa_class, f"{f.top1 * 100:.2f}%", f"{f.reference * 100:.2f}%",
                     f.verdict, f.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    failing = [f for f in findings if f.failing]
    for f in failing:
        what = "top-1 below fp32 parent" if f.kind == "parent" else "top-1 down against history"
        lines += ["", f"REGRESSION accuracy {what}  {f.case_id}  ({f.machine_id}, {f.isa_class})",
                  f"  top1 {f.top1 * 100:.2f}% vs {f.reference * 100:.2f}%: {f.detail}; limit {f.limit_source}"]
    flagged = sum(1 for f in findings if f.verdict == "flagged")
    lines.append(f"verdict   accuracy gate: {len(failing)} failing, {flagged} ISA effect(s) flagged, "
                 f"{len(findings) - len(failing) - flagged} passing")
    return "\n".join(lines)


def gate_runs(results, run_ids: set[str]) -> tuple[list[AccuracyFinding], list]:
    """gate() of the runs `run_ids` of a results folder against all of its history, and the unreadable files."""
    from qbench.history.sides import ResultsFolder

    history = ResultsFolder(results)
    records = history.accuracy_records()
    return gate([r for r in records if r.run_id in run_ids], records), history.errors
