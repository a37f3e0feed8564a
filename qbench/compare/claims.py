"""PyTorch's four INT8 claims, checked per case: about 4x smaller, 2-4x less memory bandwidth, 2-4x faster and
about the same accuracy. Each int8 case is paired with its fp32 parent and each claim is marked "holds", "partly",
"fails" or "n/a" (with the reason) by the criteria below. Pure: records in, rows out (qbench.report.claims renders).

Pairing. An int8 case's fp32 parent is the fp32 case with the same model, batch size, threads, weights, seed and
runner profile, on the same machine, from the same run (or, when parents are passed in, from those records: a
chosen fp32 run, newest first). Nothing else pairs: never across runners, batch sizes, thread counts, weights or
machines. A case measured in several processes (--repeat) counts once; its figures are medians over processes.

Criteria (CRITERIA holds the numbers):
  size       fp32 state_dict bytes / int8. holds ≥ 3.5x (int8 weights are 4x smaller; biases, scales and float
             layers keep it a little under 4), partly ≥ 2x, fails below.
  bandwidth  fp32 bytes moved per forward / int8 (metrics.bandwidth.bytes_total: derived from the tensors of one
             forward pass, not a hardware counter). holds ≥ 2x, partly ≥ 1.2x, fails below; "exceeds" above 4x.
  speedup    fp32 median latency / int8 median, with a 95% bootstrap interval: over per-process medians when both
             sides ran in 3 or more processes, else over the samples of the single process (which leaves out the
             process-to-process noise: the note says so). holds when the interval's low end is ≥ 2x (the claim is
             established, not only the point estimate); partly when the estimate is ≥ 1.2x and the interval is
             above 1x (int8 is measurably faster, by more than this VM's run-to-run noise); fails otherwise.
             "exceeds" above 4x.
  accuracy   labelled: the paired top-1 delta (int8 - fp32 on the same images) and its 95% interval, in points.
             holds when |delta| ≤ 1 pt and the interval lies within ±2 pt; partly when |delta| ≤ 3 pt (including a
             small delta whose interval is too wide to tell, or with no interval); fails beyond 3 pt.
             label-free: top-1 agreement with fp32. holds ≥ 0.99, partly ≥ 0.95, fails below; SQNR of the logits
             is shown beside it. Random-init weights: n/a, since their near-tied logits make agreement and accuracy
             say nothing about a trained model (the measured figures are still shown).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

from qbench.metrics import achieved_gbps, peak_bandwidth_pct
from qbench.records import ENGINELESS_MODES, ENGINES, MODES, RunRecord, canonical_json
from qbench.stats.bootstrap import ratio_of_medians_interval
from qbench.stats.summary import summarize

__all__ = ["CRITERIA", "VERDICTS", "CLAIMS", "Claim", "judge_size", "judge_bandwidth", "judge_speedup",
           "judge_accuracy", "speedup_interval", "parent_key", "claim_rows", "FORMATS"]

CRITERIA = {
    "size": {"holds": 3.5, "partly": 2.0},
    "bandwidth": {"holds": 2.0, "partly": 1.2, "exceeds": 4.0},
    "speedup": {"holds_low": 2.0, "partly": 1.2, "partly_low": 1.0, "exceeds": 4.0, "confidence": 0.95,
                "min_processes": 3, "resamples": 2000},
    "accuracy_labelled_pt": {"holds": 1.0, "holds_ci": 2.0, "partly": 3.0},
    "accuracy_agreement": {"holds": 0.99, "partly": 0.95},
}
VERDICTS = ("holds", "partly", "fails", "n/a")
FORMATS = ("table", "markdown", "json")
CLAIMS = ("size", "bandwidth", "speedup", "accuracy")
SENSITIVITY_SUITE = "sensitivity"  # qbench.launch.sensitivity.SUITE_NAME


@dataclass(frozen=True)
class Claim:
    """One claim of one case: the measured value (with its interval when there is one), the verdict, and why."""

    verdict: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    reason: str | None = None
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {**asdict(self), "flags": list(self.flags)}


def _na(reason: str) -> Claim:
    return Claim("n/a", reason=reason)


# ---------------------------------------------------------------------------------------------- verdicts

def judge_size(ratio: float | None) -> Claim:
    if ratio is None:
        return _na("no size measured")
    c = CRITERIA["size"]
    verdict = "holds" if ratio >= c["holds"] else "partly" if ratio >= c["partly"] else "fails"
    return Claim(verdict, ratio)


def judge_bandwidth(ratio: float | None) -> Claim:
    if ratio is None:
        return _na("not measured (no metrics.bandwidth)")
    c = CRITERIA["bandwidth"]
    verdict = "holds" if ratio >= c["holds"] else "partly" if ratio >= c["partly"] else "fails"
    return Claim(verdict, ratio, flags=("exceeds",) if ratio > c["exceeds"] else ())


def judge_speedup(ratio: float | None, low: float | None, high: float | None, basis: str = "") -> Claim:
    if ratio is None:
        return _na("no latency measured")
    c = CRITERIA["speedup"]
    reason = None
    if low is not None and low >= c["holds_low"]:
        verdict = "holds"
    elif ratio >= c["partly"] and (low is None or low > c["partly_low"]):
        verdict = "partly"
        if ratio >= c["holds_low"]:
            reason = f"the 95% interval reaches below {c['holds_low']:g}x"
    else:
        verdict = "fails"
        if ratio >= c["partly"]:
            reason = f"the 95% interval reaches {c['partly_low']:g}x: not measurably faster"
    if basis == "samples":
        reason = "; ".join(filter(None, [reason, "interval over one process's samples (run --repeat 3 for "
                                                  "between-process noise)"]))
    return Claim(verdict, ratio, low, high, reason, ("exceeds",) if ratio > c["exceeds"] else ())


def _points(fraction: float | None) -> float | None:
    return None if fraction is None else fraction * 100.0


def _judge_labelled(accuracy: dict) -> Claim:
    c = CRITERIA["accuracy_labelled_pt"]
    delta = _points(accuracy["delta_top1"])
    interval = accuracy.get("delta_top1_ci")
    low, high = (None, None) if not interval else (_points(interval[0]), _points(interval[1]))
    images = (accuracy.get("subset") or {}).get("images")
    reason = f"top-1 delta in points on {images} labelled images" if images else "top-1 delta in points"
    if abs(delta) <= c["holds"] and low is not None and -c["holds_ci"] <= low and high <= c["holds_ci"]:
        verdict = "holds"
    elif abs(delta) <= c["partly"]:
        verdict = "partly"
        if abs(delta) <= c["holds"]:
            reason += ("; no interval" if low is None else
                       f"; the interval exceeds ±{c['holds_ci']:g} pt: evaluate more images")
    else:
        verdict = "fails"
    return Claim(verdict, delta, low, high, reason)


def _judge_label_free(accuracy: dict) -> Claim:
    c = CRITERIA["accuracy_agreement"]
    agreement = accuracy["agreement"]
    verdict = "holds" if agreement >= c["holds"] else "partly" if agreement >= c["partly"] else "fails"
    return Claim(verdict, agreement, reason="top-1 agreement with fp32 (no labels)")


def judge_accuracy(accuracy: dict | None, weights_kind: str) -> Claim:
    """accuracy: the int8 record's metrics.accuracy (its fp32 reference is evaluated on the same images)."""
    if not accuracy:
        return _na("not measured (no metrics.accuracy)")
    if weights_kind == "random":
        measured = ", ".join(filter(None, [
            None if accuracy.get("agreement") is None else f"agreement {accuracy['agreement']:.3f}",
            None if accuracy.get("sqnr_db") is None else f"SQNR {accuracy['sqnr_db']:.1f} dB"]))
        return _na("random-init weights: accuracy is not meaningful" + (f" ({measured}, fidelity only)"
                                                                         if measured else ""))
    if accuracy.get("labelled") and accuracy.get("delta_top1") is not None:
        return _judge_labelled(accuracy)
    if accuracy.get("agreement") is not None:
        return _judge_label_free(accuracy)
    return _na("accuracy has neither a labelled delta nor an agreement")


# ---------------------------------------------------------------------------------------------- figures

def _bootstrap_ratio(fp32: list[float], int8: list[float]) -> tuple[float, float]:
    """Percentile interval of median(fp32) / median(int8) with both sides resampled; seeded, so repeatable."""
    c = CRITERIA["speedup"]
    return ratio_of_medians_interval(fp32, int8, c["resamples"], c["confidence"], seed=0)


def _samples(record: RunRecord) -> list[float]:
    return list((record.metrics.get("latency") or {}).get("samples") or [])


def speedup_interval(fp32: Sequence[RunRecord], int8: Sequence[RunRecord]) -> tuple[float, float, float, str] | None:
    """(speedup, low, high, basis) from the ok records of each side (one per process); None without latency.
    basis "processes": ratio of the medians of per-process medians, interval over processes; "samples": one
    side ran in fewer than 3 processes, so the interval resamples the pooled samples."""
    fp32_medians = [s.median for s in (summarize(_samples(r)) for r in fp32) if s]
    int8_medians = [s.median for s in (summarize(_samples(r)) for r in int8) if s]
    if not fp32_medians or not int8_medians:
        return None
    ratio = statistics.median(fp32_medians) / statistics.median(int8_medians)
    if min(len(fp32_medians), len(int8_medians)) >= CRITERIA["speedup"]["min_processes"]:
        return (ratio, *_bootstrap_ratio(fp32_medians, int8_medians), "processes")
    fp32_pool = [x for r in fp32 for x in _samples(r)]
    int8_pool = [x for r in int8 for x in _samples(r)]
    return (ratio, *_bootstrap_ratio(fp32_pool, int8_pool), "samples")


def _median_metric(records: Sequence[RunRecord], metric: str, key: str) -> float | None:
    values = [(r.metrics.get(metric) or {}).get(key) for r in records]
    values = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(values) if values else None


def _ratio(fp32: float | None, int8: float | None) -> float | None:
    return None if fp32 is None or not int8 else fp32 / int8


def _bandwidth_figures(records: Sequence[RunRecord]) -> dict:
    """bytes per forward, achieved GB/s (bytes / median latency) and % of the measured triad peak."""
    bytes_total = _median_metric(records, "bandwidth", "bytes_total")
    medians = [s.median for s in (summarize(_samples(r)) for r in records) if s]
    gbps = achieved_gbps(bytes_total, statistics.median(medians) if medians else None)
    peaks = next((r.details.get("peaks") for r in records if r.details.get("peaks")), None)
    return {"bytes_total": bytes_total, "gbps": gbps, "pct_of_peak": peak_bandwidth_pct(gbps, peaks)}


# ---------------------------------------------------------------------------------------------- pairing

def parent_key(record: RunRecord) -> str:
    """What an int8 case shares with its fp32 parent: the machine and the case identity without mode, engine,
    qconfig, calibration and the QAT recipe (model, batch, threads, weights, seed, runner, and any identity field
    added later)."""
    shared = {k: v for k, v in record.case.to_dict().items()
              if k not in ("mode", "engine", "qconfig", "calibration", "qat")}
    return canonical_json({"machine": record.machine.get("machine_id"), **shared})


@dataclass
class _Group:
    """The records of one case in one run (one per process)."""

    records: list[RunRecord] = field(default_factory=list)

    @property
    def first(self) -> RunRecord:
        return self.records[0]

    @property
    def ok(self) -> list[RunRecord]:
        return [r for r in self.records if r.status == "ok"]

    @property
    def started_at(self) -> str:
        return min(r.started_at for r in self.records)


def _groups(records: Iterable[RunRecord]) -> list[_Group]:
    groups: dict[tuple, _Group] = defaultdict(_Group)
    for record in records:
        groups[(record.run_id, record.case.case_version, record.machine.get("machine_id"))].records.append(record)
    return list(groups.values())


def _order(group: _Group):
    case = group.first.case
    return (group.first.machine.get("machine_id") or "", group.started_at, group.first.run_id, case.model,
            case.runner, case.batch_size, case.threads, case.weights, MODES.index(case.mode) if case.mode in MODES
            else len(MODES), ENGINES.index(case.engine) if case.engine in ENGINES else len(ENGINES), case.qconfig)


def _not_ok(group: _Group) -> str:
    record = group.first
    return f"{record.status}: {record.reason or 'no reason recorded'}"


def _paired_claims(int8: _Group, parent: _Group | None, where: str) -> tuple[dict, dict]:
    """(claims size/bandwidth/speedup, figures) of an ok int8 case against its parent."""
    if parent is None:
        reason = f"no fp32 parent (same model, batch, threads, weights, runner, machine) in {where}"
        return {name: _na(reason) for name in ("size", "bandwidth", "speedup")}, {}
    if not parent.ok:
        reason = f"fp32 parent {_not_ok(parent)}"
        return {name: _na(reason) for name in ("size", "bandwidth", "speedup")}, {}
    size = judge_size(_ratio(_median_metric(parent.ok, "size", "state_dict_bytes"),
                             _median_metric(int8.ok, "size", "state_dict_bytes")))
    fp32_bw, int8_bw = _bandwidth_figures(parent.ok), _bandwidth_figures(int8.ok)
    bandwidth = judge_bandwidth(_ratio(fp32_bw["bytes_total"], int8_bw["bytes_total"]))
    interval = speedup_interval(parent.ok, int8.ok)
    speedup = judge_speedup(*interval) if interval else _na("no latency measured")
    figures = {"fp32_bandwidth": fp32_bw, "int8_bandwidth": int8_bw, "speedup_basis": interval[3] if interval
               else None, "fp32_processes": len(parent.ok), "fp32_run_id": parent.first.run_id}
    return {"size": size, "bandwidth": bandwidth, "speedup": speedup}, figures


def _against_bf16(int8: _Group, baseline: _Group | None) -> dict | None:
    """int8 against the fp32 baseline with bf16 fast math (mode fp32_bf16) of the same run: what an ARM (Graviton)
    or AMX user would otherwise deploy. None when the run has no such baseline."""
    if baseline is None or not baseline.ok or not int8.ok:
        return None
    interval = speedup_interval(baseline.ok, int8.ok)
    if not interval:
        return None
    verdict = judge_speedup(*interval)
    return {"speedup": interval[0], "ci": [interval[1], interval[2]], "basis": interval[3],
            "beats_bf16": interval[1] > 1.0, "verdict": verdict.to_dict(), "run_id": baseline.first.run_id}


def _row(int8: _Group, parent: _Group | None, where: str, bf16: _Group | None = None) -> dict:
    record = int8.first
    case, env = record.case, record.environment
    weights = case.weights_kind
    if int8.ok:
        claims, figures = _paired_claims(int8, parent, where)
        accuracy = next((r.metrics.get("accuracy") for r in int8.ok if r.metrics.get("accuracy")), None)
        claims["accuracy"] = judge_accuracy(accuracy, weights)
    else:
        claims = {name: _na(f"case {_not_ok(int8)}") for name in CLAIMS}
        figures, accuracy = {}, None
    return {
        "machine_id": record.machine.get("machine_id"), "run_id": record.run_id, "case_id": case.case_id,
        "model": case.model, "mode": case.mode, "engine": case.engine, "runner": case.runner,
        "batch_size": case.batch_size, "threads": case.threads, "weights": weights, "qconfig": case.qconfig,
        "isa": " ".join(record.machine.get("isa") or []), "cpu_capability": env.get("cpu_capability"),
        "torch": env.get("torch"), "torchvision": env.get("torchvision"), "processes": len(int8.ok),
        "random_weights": weights == "random",
        "accuracy": None if not accuracy else {k: accuracy.get(k) for k in (
            "labelled", "top1", "delta_top1", "delta_top1_ci", "mcnemar_p", "agreement", "sqnr_db", "subset")},
        **figures,
        "vs_fp32_bf16": _against_bf16(int8, bf16),
        "claims": {name: claims[name].to_dict() for name in CLAIMS},
    }


def claim_rows(records: Iterable[RunRecord], parents: Iterable[RunRecord] | None = None) -> list[dict]:
    """One row per int8 case (per run) of `records`, each with its four claims. fp32 parents come from the same
    run, or from `parents` when given (newest matching case first). Runs of `qbench sensitivity` are not cases
    to judge and are left out."""
    groups = _groups(r for r in records if (r.suite or {}).get("name") != SENSITIVITY_SUITE)
    bf16 = {(g.first.run_id, parent_key(g.first)): g for g in groups if g.first.case.mode == "fp32_bf16"}
    if parents is None:
        candidates = {(g.first.run_id, parent_key(g.first)): g for g in groups if g.first.case.mode == "fp32"}
    else:
        candidates = {}
        for g in sorted(_groups(parents), key=lambda g: g.started_at):
            if g.first.case.mode == "fp32":
                candidates[parent_key(g.first)] = g
    rows = []
    for group in sorted(groups, key=_order):
        record = group.first
        if record.case.mode in ENGINELESS_MODES:
            continue  # fp32 parents and the fp32_bf16 baseline are what int8 is judged against
        if parents is None:
            parent, where = candidates.get((record.run_id, parent_key(record))), f"run {record.run_id[:8]}"
        else:
            parent, where = candidates.get(parent_key(record)), "the chosen fp32 runs"
        rows.append(_row(group, parent, where, bf16.get((record.run_id, parent_key(record)))))
    return rows
