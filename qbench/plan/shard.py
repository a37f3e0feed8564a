"""Split planned cases into N shards deterministically, balanced by each case's expected cost: the median wall time
of that case in this machine's history, else the median of the known costs. The unit of assignment is a model group:
every case of one model under one weights choice, seed, thread count and runner profile, whatever its mode, engine,
qconfig and batch (model_group_key). So each shard's run holds the fp32 parents its speedup and compression ratios
need (qbench.history.series.pair_key: a group is a union of such families), and the reuse store
(qbench.runner.reuse), which keeps a model's fp32 reference logits and its batch-independent figures (size,
accuracy) per runner, computes them once per night: split by batch, a model's accuracy figures were computed again in
each shard that held one of its batch sizes. Longest-processing-time-first greedy assignment of groups (ties broken
by key), so every shard computes the same split and the shards' union is the suite."""

from __future__ import annotations

import re
import statistics
from collections import defaultdict
from pathlib import Path

from qbench.plan.expand import PlannedCase
from qbench.errors import ConfigError
from qbench.records import canonical_json
from qbench.history.store import load_history

__all__ = ["parse_shard", "expected_costs", "assign_shards", "select_shard", "model_group_key"]

DEFAULT_COST_S = 5.0


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 1 <= I <= N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise ConfigError(f"--shard {text!r} must be I/N with 1 <= I <= N, e.g. 2/4")
    return int(match[1]), int(match[2])


def expected_costs(results: Path | str, machine_id: str) -> dict[str, float]:
    """case_id -> median seconds of its past runs on this machine (unreadable files are passed over)."""
    frame = load_history(results, errors=[], columns=["machine_id", "status", "case_id", "duration_s"])
    if frame.empty:
        return {}
    frame = frame[(frame["machine_id"] == machine_id) & (frame["status"] != "skipped") & frame["duration_s"].notna()]
    durations: dict[str, list[float]] = defaultdict(list)
    for case_id, seconds in zip(frame["case_id"], frame["duration_s"]):
        durations[case_id].append(float(seconds))
    return {case_id: statistics.median(values) for case_id, values in durations.items()}


def model_group_key(case) -> str:
    """What every case of one model shares on one runner: the case's identity without mode, engine, qconfig,
    calibration, QAT settings and batch size."""
    shared = {k: v for k, v in case.to_dict().items()
              if k not in ("mode", "engine", "qconfig", "calibration", "qat", "batch_size")}
    return canonical_json(shared)


def assign_shards(planned: list[PlannedCase], count: int, costs: dict[str, float]) -> list[list[PlannedCase]]:
    fallback = statistics.median(costs.values()) if costs else DEFAULT_COST_S

    def cost(plan: PlannedCase) -> float:
        return 0.0 if plan.skip_reason else costs.get(plan.case.case_id, fallback)

    families: dict[str, list[PlannedCase]] = defaultdict(list)
    for plan in planned:
        families[model_group_key(plan.case)].append(plan)
    family_cost = {key: sum(cost(p) for p in members) for key, members in families.items()}
    shards: list[list[PlannedCase]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for key in sorted(families, key=lambda k: (-family_cost[k], k)):
        target = min(range(count), key=lambda i: (loads[i], i))
        shards[target].extend(families[key])
        loads[target] += family_cost[key]
    order = {plan.case.case_id: index for index, plan in enumerate(planned)}
    return [sorted(shard, key=lambda p: order[p.case.case_id]) for shard in shards]


def select_shard(planned: list[PlannedCase], shard: str, costs: dict[str, float]) -> list[PlannedCase]:
    index, count = parse_shard(shard)
    return assign_shards(planned, count, costs)[index - 1]
