"""The full grid's CPU cost per night from a measured sample, by the work each phase does (issue 12, item 4).

A random sample scaled case for case (`qbench cost`) is dominated by whether it drew one of the few very heavy
models: evaluating 500 images is most of a case's cost, and vit_h_14 (1,017 GFLOPs an image) alone is ~40% of the
grid's evaluation work. So this script scales by work instead, from the same records:

* evaluation phases (`accuracy`, `reference_logits` in details.phases_cpu_s): CPU seconds per image-GFLOP, measured
  per kind (fp32 logits; int8 by engine; dynamic; fp32_bf16), applied to each evaluation the grid computes;
* every other phase of a process (imports, probe, build, size, latency, traffic, ...): a least-squares line in the
  case's GFLOPs x batch, cold (a case's first process) and warm (the others) apart.

The grid's evaluations are counted as the worker computes them with the reuse store, per shard: the fp32 logits
once per model and shard, each (model, mode, engine, qconfig) accuracy figure once per shard that holds it; shards
split as `qbench run --shard` splits them (qbench.plan.shard), by model group now, or by (model, batch) family
before (--split family). GFLOPs an image are torchvision's weights meta `_ops`, scaled to batch 1.

    qbench list --suite nightly --json > nightly.jsonl
    python benchmarks/gridcost/estimate.py nightly.jsonl RUN.jsonl... --shards 1 8 16 24 32
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict

EVAL_PHASES = ("accuracy", "reference_logits")


def model_gflops() -> dict[str, float]:
    from qbench.runner.registry.torchvision_compat import import_torchvision

    models = import_torchvision().models
    return {name: float(models.get_model_weights(name).DEFAULT.meta["_ops"]) for name in models.list_models(module=models)}


def eval_kind(mode: str, engine: str | None) -> str:
    if mode == "fp32":
        return "fp32"
    if mode in ("fp32_bf16", "dynamic"):
        return mode
    return f"int8-{engine}"


def read_records(paths: list[str]) -> list[dict]:
    records = []
    for path in paths:
        with open(path) as handle:
            for line in handle:
                record = json.loads(line)
                if record.get("kind") == "case" and record["status"] == "ok":
                    records.append(record)
    return records


def fit_rates(records: list[dict], gflops: dict, images: int) -> tuple[dict, dict]:
    """(eval CPU s per image-GFLOP by kind, {cold|warm: (intercept, slope per GFLOP x batch)} of the rest)."""
    per_kind, rest = defaultdict(list), {"cold": [], "warm": []}
    for record in records:
        case, cpu = record["case"], record["details"]["phases_cpu_s"]
        work = images * gflops[case["model"]]
        if cpu.get("reference_logits", 0) > 0.5:
            per_kind["fp32"].append(cpu["reference_logits"] / work)
        accuracy = cpu.get("accuracy", 0.0)
        if "accuracy" not in record["details"].get("reused", {}) and accuracy > 0.5:
            per_kind[eval_kind(case["mode"], case["engine"])].append(
                accuracy / (work * (2 if case["mode"] == "fp32_bf16" else 1)))
        other = cpu["total"] - sum(cpu.get(p, 0.0) for p in EVAL_PHASES)
        rest["cold" if record["worker"]["repeat"] == 0 else "warm"].append(
            (gflops[case["model"]] * case["batch_size"], other))
    lines = {}
    for key, points in rest.items():
        if len(points) < 2:
            continue
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
        lines[key] = (my - slope * mx, max(slope, 0.0))
    return {kind: statistics.median(v) for kind, v in per_kind.items()}, lines


def grid_cpu_s(cases: list[dict], shards: list[list[dict]], gflops: dict, rates: dict, lines: dict,
               images: int, repeat: int, before: bool = False) -> tuple[float, float, list[float]]:
    """(total CPU s, evaluation CPU s, per-shard CPU s) of one night. `before`: the worker before this change, where
    the fp32 case evaluated its images apart from the reference logits and fp32_bf16 evaluated in every process."""
    fallback = rates.get("fp32")
    shard_costs, evaluation = [], 0.0
    for shard in shards:
        cost, seen = 0.0, set()
        for case in shard:
            model, mode, engine = case["model"], case["mode"], case["engine"]
            x = gflops[model] * case["batch_size"]
            cold, warm = lines["cold"], lines.get("warm", lines["cold"])
            cost += cold[0] + cold[1] * x + (repeat - 1) * (warm[0] + warm[1] * x)
            work = images * gflops[model]
            figures = [("acc", model, mode, engine, case["qconfig"])]
            if mode != "fp32_bf16":
                figures.append(("ref", model))
            if before and mode == "fp32_bf16":
                figures = [("acc", model, mode, engine, case["qconfig"], case["batch_size"], r) for r in range(repeat)]
            for figure in figures:
                if figure in seen:
                    continue
                seen.add(figure)
                if figure[0] == "ref":
                    spent = work * rates["fp32"]
                else:
                    spent = work * rates.get(eval_kind(mode, engine), fallback) * (2 if mode == "fp32_bf16" else 1)
                    if mode == "fp32" and not before:
                        spent = 0.0  # the fp32 case's accuracy is its reference logits
                cost += spent
                evaluation += spent
        shard_costs.append(cost)
    return sum(shard_costs), evaluation, shard_costs


def split(cases: list[dict], count: int, by: str, gflops: dict) -> list[list[dict]]:
    """LPT by each group's evaluation work (a stand-in for its history cost), as qbench.plan.shard does."""
    groups = defaultdict(list)
    for case in cases:
        key = (case["model"],) if by == "model" else (case["model"], case["batch_size"])
        groups[key].append(case)
    weight = {k: sum(gflops[c["model"]] * (c["batch_size"] + 50) for c in v) for k, v in groups.items()}
    shards, loads = [[] for _ in range(count)], [0.0] * count
    for key in sorted(groups, key=lambda k: (-weight[k], k)):
        target = min(range(count), key=lambda i: (loads[i], i))
        shards[target].extend(groups[key])
        loads[target] += weight[key]
    return shards


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", help="qbench list --suite nightly --json output")
    parser.add_argument("runs", nargs="+", help="run files of the measured sample")
    parser.add_argument("--shards", type=int, nargs="+", default=[1])
    parser.add_argument("--split", choices=("model", "family"), default="model")
    parser.add_argument("--before", action="store_true", help="count evaluations as the worker before this change")
    parser.add_argument("--warm-night", action="store_true",
                        help="a night whose torch build and worker code are last night's: every evaluation comes "
                             "from the shard's kept reuse store")
    parser.add_argument("--budget-h", type=float, default=2.0)
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--exclude", nargs="*", default=[], help="models left out of the grid (e.g. vit_h_14)")
    args = parser.parse_args()
    gflops = model_gflops()
    cases = [json.loads(line) for line in open(args.plan)]
    cases = [c["case"] for c in cases if not c["skip_reason"] and c["case"]["model"] not in args.exclude]
    rates, lines = fit_rates(read_records(args.runs), gflops, args.images)
    if args.warm_night:
        rates = {kind: 0.0 for kind in rates}
    print("evaluation CPU s per image-GFLOP:", {k: f"{v:.4f}" for k, v in sorted(rates.items())})
    print("other phases, CPU s = a + b x GFLOPs x batch:", {k: (round(a, 2), round(b, 4)) for k, (a, b) in lines.items()})
    for count in args.shards:
        total, evaluation, per_shard = grid_cpu_s(cases, split(cases, count, args.split, gflops), gflops, rates,
                                                  lines, args.images, args.repeat, args.before)
        print(f"{len(cases)} cases x {args.repeat}, {count:3d} shards by {args.split}{' (worker before)' if args.before else ''}: {total / 3600:6.1f} CPU h "
              f"(evaluations {evaluation / 3600:5.1f} h), longest shard {max(per_shard) / 3600:5.2f} h, "
              f"{sum(c > args.budget_h * 3600 for c in per_shard)} over {args.budget_h:g} h")


if __name__ == "__main__":
    main()
