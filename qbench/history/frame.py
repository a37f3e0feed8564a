"""Flatten a RunRecord into one row of plain values: the columns of the history DataFrame and of the tables."""

from __future__ import annotations

from pathlib import Path

from qbench.metrics import METRICS, peak_bandwidth_pct
from qbench.records import RunRecord
from qbench.stats.summary import summarize

__all__ = ["record_row", "COLUMNS"]

COLUMNS = (
    "run_id", "record_id", "suite", "case_id", "case_version", "model", "mode", "engine", "batch_size", "threads",
    "weights", "qconfig", "runner", "status", "reason", "machine_id", "cpu_model", "isa", "cpu_capability", "torch",
    "torchvision", "python", "qbench_commit", "qbench_dirty", "started_at", "duration_s",
    "latency_median_s", "latency_q1_s", "latency_q3_s", "latency_iqr_s", "latency_p90_s", "latency_p99_s",
    "latency_n", "throughput_ips", "size_bytes", "parameters", "modules_quantized", "modules_float",
    "peak_rss_build_bytes", "peak_rss_run_bytes",
    "bytes_moved", "bytes_weights", "macs", "bandwidth_gbps", "peak_triad_gbps", "peak_bandwidth_pct",
    "top1", "top5", "top1_delta", "top1_delta_lo", "top1_delta_hi", "agreement", "sqnr_db", "eval_images",
    "eval_subset", "labelled", "compile_s", "cache_hit", "run_complete", "file",
)


def record_row(record: RunRecord, path: Path | str | None = None, run_complete: bool = True) -> dict:
    case, metrics, env = record.case, record.metrics, record.environment
    latency = summarize((metrics.get("latency") or {}).get("samples") or [])
    size = metrics.get("size") or {}
    memory = metrics.get("memory") or {}
    traffic = metrics.get("bandwidth") or {}
    accuracy = metrics.get("accuracy") or {}
    subset = accuracy.get("subset") or {}
    delta_ci = accuracy.get("delta_top1_ci") or (None, None)
    peaks = (record.details or {}).get("peaks") or {}
    achieved = METRICS["bandwidth"].extract(record)
    gbps = achieved.value if achieved else None
    row = {
        "run_id": record.run_id,
        "record_id": record.record_id,
        "suite": record.suite.get("name"),
        "case_id": case.case_id,
        "case_version": case.case_version,
        "model": case.model,
        "mode": case.mode,
        "engine": case.engine,
        "batch_size": case.batch_size,
        "threads": case.threads,
        "weights": case.weights_kind,
        "qconfig": case.qconfig,
        "runner": case.runner,
        "status": record.status,
        "reason": record.reason,
        "machine_id": record.machine.get("machine_id"),
        "cpu_model": record.machine.get("cpu_model"),
        "isa": ",".join(record.machine.get("isa") or []),
        "cpu_capability": env.get("cpu_capability"),
        "torch": env.get("torch"),
        "torchvision": env.get("torchvision"),
        "python": env.get("python"),
        "qbench_commit": record.qbench.get("commit"),
        "qbench_dirty": record.qbench.get("dirty"),
        "started_at": record.started_at,
        "duration_s": record.duration_s,
        "latency_median_s": latency.median if latency else None,
        "latency_q1_s": latency.q1 if latency else None,
        "latency_q3_s": latency.q3 if latency else None,
        "latency_iqr_s": latency.iqr if latency else None,
        "latency_p90_s": latency.p90 if latency else None,
        "latency_p99_s": latency.p99 if latency else None,
        "latency_n": latency.n if latency else 0,
        "throughput_ips": case.batch_size / latency.median if latency and latency.median > 0 else None,
        "size_bytes": size.get("state_dict_bytes"),
        "parameters": size.get("parameters"),
        "modules_quantized": size.get("modules_quantized"),
        "modules_float": size.get("modules_float"),
        "peak_rss_build_bytes": memory.get("peak_rss_build"),
        "peak_rss_run_bytes": memory.get("peak_rss_run"),
        "bytes_moved": traffic.get("bytes_total"),
        "bytes_weights": traffic.get("bytes_weights"),
        "macs": traffic.get("macs"),
        "bandwidth_gbps": gbps,
        "peak_triad_gbps": peaks.get("triad_gbps"),
        "peak_bandwidth_pct": peak_bandwidth_pct(gbps, peaks),
        "top1": accuracy.get("top1"),
        "top5": accuracy.get("top5"),
        "top1_delta": accuracy.get("delta_top1"),
        "top1_delta_lo": delta_ci[0],
        "top1_delta_hi": delta_ci[1],
        "agreement": accuracy.get("agreement"),
        "sqnr_db": accuracy.get("sqnr_db"),
        "eval_images": subset.get("images"),
        "eval_subset": subset.get("files_sha256"),
        "labelled": accuracy.get("labelled"),
        "compile_s": ((record.details or {}).get("phases_s") or {}).get("compile"),
        "cache_hit": ((record.details or {}).get("cache") or {}).get("hit"),
        "run_complete": run_complete,
        "file": None if path is None else str(path),
    }
    assert tuple(row) == COLUMNS
    return row
