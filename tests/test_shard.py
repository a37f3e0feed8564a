"""Sharding: deterministic, balanced by expected cost, and the shards together are exactly the suite."""

import pytest

from qbench.plan.expand import PlannedCase
from qbench.errors import ConfigError
from qbench.plan.shard import assign_shards, expected_costs, model_group_key, parse_shard
from qbench.history.store import RunWriter
from tests.factories import MACHINE, make_case, make_record

PLANNED = [PlannedCase(make_case(model=f"m{i:02d}", batch_size=b)) for i in range(20) for b in (1, 8)]
PLANNED.append(PlannedCase(make_case(model="skipped"), skip_reason="engine does not work here"))


def costs():
    return {p.case.case_id: float(1 + (i * 7) % 13) for i, p in enumerate(PLANNED) if not p.skip_reason}


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7])
def test_shards_partition_the_suite_and_keep_suite_order(count):
    shards = assign_shards(PLANNED, count, costs())
    ids = [p.case.case_id for shard in shards for p in shard]
    assert sorted(ids) == sorted(p.case.case_id for p in PLANNED) and len(ids) == len(set(ids))
    order = [p.case.case_id for p in PLANNED]
    for shard in shards:
        assert [p.case.case_id for p in shard] == sorted((p.case.case_id for p in shard), key=order.index)


def test_shards_are_balanced_by_cost():
    known = costs()
    loads = [sum(known.get(p.case.case_id, 0.0) for p in shard) for shard in assign_shards(PLANNED, 4, known)]
    group_cost = {}
    for plan in PLANNED:
        group_cost[plan.case.model] = group_cost.get(plan.case.model, 0.0) + known.get(plan.case.case_id, 0.0)
    assert max(loads) - min(loads) <= max(group_cost.values())
    assert max(loads) / (sum(known.values()) / 4) < 1.15


def test_split_is_deterministic_whatever_the_input_order():
    forward = assign_shards(PLANNED, 3, costs())
    backward = assign_shards(list(reversed(PLANNED)), 3, costs())
    assert [{p.case.case_id for p in s} for s in forward] == [{p.case.case_id for p in s} for s in backward]


def test_costs_come_from_this_machines_history(tmp_path):
    writer = RunWriter(tmp_path, MACHINE, {"run_id": "a" * 32, "started_at": "2026-11-22T00:00:00Z"})
    for duration in (1.0, 3.0, 100.0):
        writer.append(make_record(duration_s=duration))
    writer.append(make_record(make_case(model="other"), duration_s=9.0, machine={**MACHINE, "machine_id": "x"}))
    writer.finish({"interrupted": False})
    assert expected_costs(tmp_path, MACHINE["machine_id"]) == {make_case().case_id: 3.0}


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_bad_shard_is_a_config_error(text):
    with pytest.raises(ConfigError, match="must be I/N"):
        parse_shard(text)


def test_listed_shards_together_equal_the_unsharded_suite():
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def listed(*extra):
        done = subprocess.run([sys.executable, "-m", "qbench", "list", "--suite", "smoke", "--json", *extra],
                              capture_output=True, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        assert done.returncode == 0, done.stderr
        return [json.loads(line)["case_id"] for line in done.stdout.splitlines()]

    whole = listed()
    parts = [listed("--shard", f"{i}/3") for i in (1, 2, 3)]
    assert sorted(sum(parts, [])) == sorted(whole) and len(whole) == 108
    assert all(30 <= len(part) <= 42 for part in parts)


def test_every_case_of_a_model_lands_in_one_shard():
    """With its fp32 parents (ratios), and at every batch size: the reuse store then computes the model's reference
    logits and its batch-independent accuracy figures once per night, not once per shard holding a batch of it."""
    models = [f"m{i}" for i in range(8)]
    planned = [PlannedCase(make_case(model=m, mode=mode, engine=engine, batch_size=b))
               for m in models for b in (1, 8)
               for mode, engine in (("fp32", None), ("static_fx", "x86"), ("static_fx", "qnnpack"), ("qat", "x86"))]
    shards = assign_shards(planned, 4, {})
    homes = {}
    for index, shard in enumerate(shards):
        parents = {(p.case.model, p.case.batch_size) for p in shard if p.case.mode == "fp32"}
        assert {(p.case.model, p.case.batch_size) for p in shard} == parents
        for plan in shard:
            assert homes.setdefault(plan.case.model, index) == index
    assert sorted(len(s) for s in shards) == [16, 16, 16, 16]


def test_runner_profiles_of_one_model_are_separate_groups():
    native, avx2 = make_case(model="m", runner="native"), make_case(model="m", runner="avx2")
    assert model_group_key(native) != model_group_key(avx2)
    assert model_group_key(native) == model_group_key(make_case(model="m", batch_size=8, mode="dynamic",
                                                                engine="x86"))
