"""qbench runs as records of the PyTorch OSS benchmark database (schema v3), which HUD's benchmark dashboards read.

The shape is that of the `benchmark.oss_ci_benchmark_v3` ClickHouse table (pytorch/test-infra,
clickhouse_db_schema/benchmark.oss_ci_benchmark_v3/schema.sql) as filled by pytorch/test-infra's
.github/scripts/upload_benchmark_results.py (the `upload-benchmark-results` action), and documented on the PyTorch
wiki page "How to integrate with PyTorch OSS benchmark database" (`benchmark.name`, `model.name`, `metric.name` and
`metric.benchmark_values` required; everything else optional). Producers of the same shape: torchao's
`write_json_result_ossci`, vLLM's `convert_to_pytorch_benchmark_format`. One record per metric:

    {"benchmark": {name, mode, dtype, extra_info}, "model": {name, type, backend, origins, extra_info},
     "inputs": {name: {dtype, extra_info}}, "metric": {name, benchmark_values, extra_info},
     "runners": [{name, type, cpu_info, cpu_count, avail_mem_in_gb, extra_info}],
     "dependencies": {name: {repo, branch, sha, version, extra_info}}}

The run metadata columns (`timestamp`, `repo`, `head_sha`, `workflow_id`, `job_id`, ...) are left to the uploader,
which adds them from the CI job; it keeps the `runners` and `dependencies` a record already has. Every `extra_info`
is a ClickHouse Map(String, String): a string value is kept as it is, any other value is written as its JSON.

Mapping (nothing of a record's identity or provenance is dropped):
  benchmark   name: "qbench" (or the caller's), mode: "inference", dtype: the qbench mode (fp32, dynamic, static_fx,
              ...); extra_info: every field of the case (model, mode, engine, batch_size, threads, weights, qconfig,
              calibration, seed, runner, qat), case_id, case_version, suite (name, path, sha256), run_id,
              record_id, repeat, start/finish times and duration, run_complete, run_counts (records per status in
              the run), and every `details` entry (qconfig, calibration, weights, kernels, cache, peaks, phases, ...)
  model       name: the case's model, backend: the quantized engine (absent for fp32), origins: where the model
              comes from (torchvision, or the module of `module:attr`), extra_info: weights and qconfig
  inputs      the timed input: dtype float32, shape and batch size
  metric      one per qbench metric a record has (qbench.metrics.METRICS), named `<metric>(<display unit>)`;
              benchmark_values: every raw sample in the display unit (latency: each timed sample in ms), else the one
              value; extra_info: unit, direction, kind, the value qbench compares (median), and the record's raw
              metric section (accuracy without its per-image prediction lists, which stay in qbench's store)
  runners     name: "cpu" or "arm64-cpu" (as the upload action names CPU runners), type: the machine id (plus
              @profile under an ISA profile), cpu_info: the CPU model, cpu_count, avail_mem_in_gb; extra_info: every
              machine field (ISA, signature, flags hash, cores, sockets, OS, kernel, ...) and the worker's
              environment besides package versions (cpu_capability, quantized_engine, threads, affinity, variables)
  dependencies pytorch (version and git sha), torchvision, torchao, numpy, python, qbench (version, commit, dirty)

Records that measured nothing (skipped, failed, timeout) have no metric and make no record; they are counted in
each exported record's `run_counts` and in the export's summary.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

from qbench.metrics import METRICS
from qbench.records import RunRecord

__all__ = ["SCHEMA_VERSION", "BENCHMARK_NAME", "run_to_records", "record_to_records"]

SCHEMA_VERSION = "v3"
BENCHMARK_NAME = "qbench"
# Accuracy lists with one entry per evaluation image: data, not provenance, and most of a record's bytes.
_PER_IMAGE = ("predictions", "reference_predictions", "labels")
_VERSIONS = {"pytorch": ("torch", "pytorch/pytorch"), "torchvision": ("torchvision", "pytorch/vision"),
             "torchao": ("torchao", "pytorch/ao"), "numpy": ("numpy", "numpy/numpy"), "python": ("python", "")}


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _strings(mapping: dict) -> dict[str, str]:
    """A Map(String, String): strings as they are, other values as JSON."""
    return {str(key): _text(value) for key, value in mapping.items()}


def _origin(model: str) -> str:
    return model.split(":", 1)[0] if ":" in model else "torchvision"


def _benchmark(record: RunRecord, header: dict, complete: bool, counts: dict, name: str) -> dict:
    case = record.case
    extra = {**case.to_dict(), "case_id": case.case_id, "case_version": case.case_version,
             "suite": record.suite, "run_id": record.run_id, "record_id": record.record_id,
             "repeat": (record.worker or {}).get("repeat", 0), "started_at": record.started_at,
             "finished_at": record.finished_at, "duration_s": record.duration_s,
             "run_started_at": header.get("started_at"), "run_complete": complete, "run_counts": counts,
             "worker": record.worker, "schema_version": record.schema_version}
    extra.update({f"details.{key}": value for key, value in (record.details or {}).items()})
    return {"name": name, "mode": "inference", "dtype": case.mode, "extra_info": _strings(extra)}


def _model(record: RunRecord) -> dict:
    case = record.case
    model = {"name": case.model, "type": "model", "origins": [_origin(case.model)],
             "extra_info": _strings({"weights": case.weights, "qconfig": case.qconfig})}
    if case.engine:
        model["backend"] = case.engine
    return model


def _inputs(record: RunRecord) -> dict:
    shape = (record.details or {}).get("input_shape")
    return {"images": {"dtype": "float32",
                       "extra_info": _strings({"shape": shape, "batch_size": record.case.batch_size})}}


def _runner(record: RunRecord) -> dict:
    machine, environment = record.machine or {}, record.environment or {}
    versions = {key for key, _ in _VERSIONS.values()} | {"torch_git"}
    extra = {**machine, "runner_profile": record.case.runner,
             **{f"environment.{key}": value for key, value in environment.items() if key not in versions}}
    runner = {"name": "arm64-cpu" if machine.get("arch") in ("aarch64", "arm64") else "cpu",
              "type": str(machine.get("machine_id", "")) + ("" if record.case.runner == "native"
                                                            else f"@{record.case.runner}"),
              "cpu_info": str(machine.get("cpu_model") or machine.get("arch") or ""),
              "extra_info": _strings(extra)}
    for key, field in (("cpu_count", "logical_cpus"), ("avail_mem_in_gb", "memory_gib")):
        value = machine.get(field)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            runner[key] = value
    return runner


def _dependencies(record: RunRecord) -> dict:
    environment, qbench = record.environment or {}, record.qbench or {}
    found = {}
    for name, (key, repo) in _VERSIONS.items():
        if environment.get(key) is not None:
            found[name] = {"repo": repo, "version": str(environment[key])}
    if "pytorch" in found and environment.get("torch_git"):
        found["pytorch"]["sha"] = str(environment["torch_git"])
    found["qbench"] = {"version": str(qbench.get("version") or ""), "sha": str(qbench.get("commit") or ""),
                       "extra_info": _strings({"dirty": qbench.get("dirty")})}
    return found


def _raw_section(record: RunRecord, metric: str) -> dict:
    section = {"latency": "latency", "throughput": "latency", "memory": "memory", "size": "size",
               "bytes_moved": "bandwidth", "bandwidth": "bandwidth"}.get(metric, "accuracy")
    raw = dict(record.metrics.get(section) or {})
    raw.pop("samples", None)
    for key in _PER_IMAGE:
        raw.pop(key, None)
    return {f"{section}.{key}": value for key, value in raw.items()}


def record_to_records(record: RunRecord, header: dict | None = None, complete: bool = True,
                      counts: dict | None = None, name: str = BENCHMARK_NAME) -> list[dict]:
    """The v3 records of one qbench record: one per metric it has; none when it measured nothing."""
    if record.status != "ok":
        return []
    shared = {"benchmark": _benchmark(record, header or {}, complete, counts or {record.status: 1}, name),
              "model": _model(record), "inputs": _inputs(record), "runners": [_runner(record)],
              "dependencies": _dependencies(record)}
    found = []
    for metric in METRICS.values():
        value = metric.extract(record)
        if value is None:
            continue
        values = [v * metric.scale for v in (value.samples or (value.value,))]
        extra = {"unit": metric.display_unit, "direction": f"{metric.direction} is better", "kind": metric.kind,
                 "value": value.value * metric.scale, "samples": len(value.samples), "qbench_metric": metric.name,
                 **_raw_section(record, metric.name)}
        found.append({**shared, "metric": {"name": f"{metric.name}({metric.display_unit})",
                                           "benchmark_values": values, "extra_info": _strings(extra)}})
    return found


def run_to_records(run, name: str = BENCHMARK_NAME) -> tuple[Iterator[dict], Counter]:
    """The v3 records of a run (a qbench.history.store.RunFile), made one qbench record at a time (a run of the full
    grid makes about 44,000), and the run's records counted by status."""
    counts = Counter(record.status for record in run.records)
    made = (record_to_records(record, run.header, run.complete, dict(counts), name) for record in run.records)
    return (item for items in made for item in items), counts
