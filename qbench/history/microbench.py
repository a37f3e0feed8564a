"""pytest-benchmark's JSON of benchmarks/kernels turned into qbench run records (suite "kernels"): one record per
benchmark, Case(model="kernel:<op>[<shape id>]", mode="kernel", engine, batch_size (the shape's N), threads,
runner), its latency samples pytest-benchmark's raw per-call times; skipped and failed benchmarks become records
with their reason."""

from __future__ import annotations

import uuid

from qbench.history.store import utc_now
from qbench.records import Case, RunRecord

__all__ = ["SUITE_NAME", "KERNEL_MODE", "kernel_case", "records_from_json"]

SUITE_NAME = "kernels"
KERNEL_MODE = "kernel"


def kernel_case(info: dict, runner: str, threads: int) -> Case:
    """The case identity of one benchmark, from the metadata conftest.py records (extra_info or report item)."""
    return Case(model=f"kernel:{info['op']}[{info['shape_id']}]", mode=KERNEL_MODE, engine=info["engine"],
                batch_size=_batch_size(info["shape"]), threads=threads, runner=runner)


def _batch_size(shape: dict) -> int:
    return shape["n"] if shape.get("layer") == "conv2d" else shape["input"][0]


def _latency(stats: dict, slowdown: int) -> dict:
    return {"unit": "s", "samples": list(stats["data"]), "loops": stats["iterations"], "warmup_rounds": 0,
            "rounds": stats["rounds"], "calls_per_loop": slowdown}


def _details(bench: dict, summary: dict) -> dict:
    info = bench["extra_info"]
    kernels = dict(summary.get("kernels") or {})
    kernels["int8_conv"] = info.get("int8_conv")
    if info.get("engine_substitution"):
        kernels["engine_substitution"] = info["engine_substitution"]
    return {"kernel": {"op": info["op"], "shape": info["shape"], "shape_id": info["shape_id"],
                       "weight": info.get("weight"), "macs": info.get("macs"), "slowdown": info.get("slowdown", 1)},
            "kernels": kernels, "benchmark": {"fullname": bench["fullname"], "options": bench.get("options", {})},
            "input_shape": _input_shape(info["shape"])}


def _input_shape(shape: dict) -> list[int]:
    if shape.get("layer") == "conv2d":
        return [shape["n"], shape["c"], shape["h"], shape["w"]]
    return list(shape["input"])


def _record(case: Case, context: dict, environment: dict, started_at: str, duration_s: float,
            **fields) -> RunRecord:
    return RunRecord(run_id=context["run_id"], record_id=uuid.uuid4().hex, case=case, suite=context["suite"],
                     machine=context["machine"], environment=environment, qbench=context["qbench"],
                     started_at=started_at, finished_at=started_at, duration_s=duration_s, **fields)


def records_from_json(benchmark_json: dict | None, context: dict, report: dict | None = None, *,
                      runner: str | None = None, threads: int | None = None) -> list[RunRecord]:
    """RunRecords of one pytest-benchmark JSON written by benchmarks/kernels: one "ok" record per benchmark, plus
    (from conftest's --kernel-report) a "skipped" or "failed" record for each benchmark that did not run.

    context: run_id, suite, machine, qbench (as in qbench.launch.session). runner and threads default to what the
    benchmark process recorded."""
    summary = (benchmark_json or {}).get("qbench") or (report or {})
    environment = summary.get("environment") or {}
    started_at = (benchmark_json or {}).get("datetime") or utc_now()
    started_at = started_at if started_at.endswith("Z") else _as_utc(started_at)
    runner = runner or summary.get("runner") or "native"
    records, done = [], set()
    for bench in (benchmark_json or {}).get("benchmarks", []):
        info = bench.get("extra_info") or {}
        if "op" not in info:
            continue  # not a qbench kernel benchmark
        case = kernel_case(info, runner, threads or info.get("threads") or 1)
        records.append(_record(case, context, environment, started_at, bench["stats"]["total"], status="ok",
                               metrics={"latency": _latency(bench["stats"], info.get("slowdown", 1))},
                               details=_details(bench, summary)))
        done.add(bench["fullname"])
    for nodeid, item in sorted(((report or {}).get("items") or {}).items()):
        if nodeid in done or item.get("shape") is None:
            continue
        status = "skipped" if item["outcome"] in ("skipped", "not run") else "failed"
        reason = item.get("reason") or ("not run" if item["outcome"] == "not run" else "benchmark failed")
        case = kernel_case(item, runner, threads or 1)
        records.append(_record(case, context, environment, started_at, 0.0, status=status, reason=reason,
                               details={"benchmark": {"fullname": nodeid}, "kernels": summary.get("kernels")}))
    return records


def _as_utc(stamp: str) -> str:
    from datetime import datetime, timezone

    moment = datetime.fromisoformat(stamp)
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
