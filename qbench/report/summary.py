"""The end-of-run tables: per model and mode, int8 against its fp32 parent (same batch, threads, weights) on each
engine, as size ratio (fp32 bytes / int8 bytes) and speedup (fp32 median latency / int8 median latency); then the
cases that did not produce numbers, with their reasons. A case measured in several processes counts once, by the
median of its per-process medians. Pure: records in, text out."""

from __future__ import annotations

from collections import Counter

from qbench.history.frame import record_row
from qbench.records import ENGINES, RunRecord, mode_rank

__all__ = ["provenance_lines", "ratio_table", "quality_table", "problem_lines", "reuse_line", "render_summary"]


def provenance_lines(records: list[RunRecord]) -> list[str]:
    if not records:
        return ["no cases ran"]
    first = records[0]
    env = next((r.environment for r in records if r.status == "ok"), first.environment)
    machine = first.machine
    weights = sorted({r.case.weights_kind for r in records})
    lines = [
        f"machine   {machine.get('machine_id')}  ({machine.get('cpu_model')}, {machine.get('logical_cpus')} cpus)",
        f"isa       {' '.join(machine.get('isa') or [])}; torch dispatches to {env.get('cpu_capability')}",
        f"software  torch {env.get('torch')}, torchvision {env.get('torchvision')} "
        f"({env.get('torchvision_ops')}), python {env.get('python')}",
        f"qbench    {first.qbench.get('version')} commit {(first.qbench.get('commit') or 'unknown')[:12]}"
        f"{' (dirty)' if first.qbench.get('dirty') else ''}; suite {first.suite.get('name')}",
        f"weights   {', '.join(weights)}",
    ]
    if "random" in weights:
        lines.append("          RANDOM-INIT WEIGHTS: sizes and latencies are real, accuracy would not be meaningful")
    return lines


def _fmt_ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


def ratio_table(records: list[RunRecord]) -> str:
    import pandas as pd

    rows = [record_row(r) for r in records if r.status == "ok"]
    if not rows:
        return "(no successful cases)"
    keys = ["model", "runner", "batch_size", "threads", "weights"]
    frame = pd.DataFrame(rows)
    frame["mode"] = [m if q == "default" else f"{m}#{q}" for m, q in zip(frame["mode"], frame["qconfig"])]
    # With repeats, a case has one record per process: take the median of the per-process figures.
    frame = (frame.groupby(keys + ["mode", "engine"], dropna=False, sort=False)
             .agg(latency_median_s=("latency_median_s", "median"), latency_iqr_s=("latency_iqr_s", "median"),
                  size_bytes=("size_bytes", "first")).reset_index())
    fp32 = frame[frame["mode"] == "fp32"].set_index(keys)
    quant = frame[frame["mode"] != "fp32"]
    engines = [e for e in ENGINES if e in set(quant["engine"].dropna())]
    out = []
    for key, group in frame.groupby(keys, sort=True):
        base = fp32.loc[key] if key in fp32.index else None
        if isinstance(base, pd.DataFrame):
            base = base.iloc[0]
        modes = sorted(set(group["mode"]) - {"fp32"}, key=_mode_order) or ["fp32"]
        for mode in modes:
            row = {"model": key[0], "runner": key[1], "batch": key[2], "threads": key[3], "mode": mode,
                   "fp32 ms": _fmt_ms(None if base is None else base["latency_median_s"]),
                   "fp32 IQR ms": _fmt_ms(None if base is None else base["latency_iqr_s"])}
            for engine in engines:
                hit = group[(group["mode"] == mode) & (group["engine"] == engine)]
                if hit.empty or base is None:
                    row[f"{engine} size×"] = row[f"{engine} speed×"] = "-"
                    row[f"{engine} ms"] = _fmt_ms(None if hit.empty else hit.iloc[0]["latency_median_s"])
                    continue
                q = hit.iloc[0]
                row[f"{engine} ms"] = _fmt_ms(q["latency_median_s"])
                row[f"{engine} size×"] = f"{base['size_bytes'] / q['size_bytes']:.2f}"
                row[f"{engine} speed×"] = f"{base['latency_median_s'] / q['latency_median_s']:.2f}"
            out.append(row)
    return pd.DataFrame(out).to_string(index=False)


def _mode_order(label: str) -> tuple:
    mode, _, qconfig = label.partition("#")
    return (mode_rank(mode), qconfig)


def _fmt(value, spec: str) -> str:
    return "-" if value is None or value != value else format(value, spec)


def quality_table(records: list[RunRecord], markdown: bool = False) -> str:
    """Per case: bytes moved per forward, achieved bandwidth (and % of the machine's measured triad peak), and the
    label-free accuracy against the fp32 parent (top-1 agreement, logits SQNR), plus top-1 when labelled."""
    import pandas as pd

    rows = [record_row(r) for r in records if r.status == "ok"]
    if not rows:
        return "(no successful cases)"
    frame = pd.DataFrame(rows)
    keys = ["model", "mode", "qconfig", "engine", "runner", "batch_size", "threads"]
    frame = (frame.groupby(keys, dropna=False, sort=True)
             .agg(bytes_moved=("bytes_moved", "first"), bandwidth_gbps=("bandwidth_gbps", "median"),
                  peak_pct=("peak_bandwidth_pct", "median"), agreement=("agreement", "first"),
                  sqnr_db=("sqnr_db", "first"), top1=("top1", "first"), top1_delta=("top1_delta", "first"))
             .reset_index())
    out = pd.DataFrame({
        "case": ["/".join([m, mode if q == "default" else f"{mode}#{q}", e if isinstance(e, str) else "-"])
                 + ("" if r == "native" else f"@{r}")
                 for m, mode, q, e, r in zip(frame["model"], frame["mode"], frame["qconfig"], frame["engine"],
                                             frame["runner"])],
        "batch": frame["batch_size"], "threads": frame["threads"],
        "MB moved": [_fmt(None if v is None else v / 1e6, ".1f") for v in frame["bytes_moved"]],
        "GB/s": [_fmt(v, ".2f") for v in frame["bandwidth_gbps"]],
        "% peak": [_fmt(v, ".1f") for v in frame["peak_pct"]],
        "agree %": [_fmt(None if v is None else v * 100, ".1f") for v in frame["agreement"]],
        "SQNR dB": [_fmt(v, ".1f") for v in frame["sqnr_db"]],
    })
    if frame["top1"].notna().any():
        out["top1 %"] = [_fmt(None if v is None else v * 100, ".1f") for v in frame["top1"]]
        out["Δtop1 pt"] = [_fmt(None if v is None else v * 100, "+.1f") for v in frame["top1_delta"]]
    return out.to_markdown(index=False, disable_numparse=True) if markdown else out.to_string(index=False)


def problem_lines(records: list[RunRecord]) -> list[str]:
    return [f"{r.status:8} {r.case_id}: {r.reason}" for r in records if r.status != "ok"]


def reuse_line(records: list[RunRecord]) -> str | None:
    """How many case-processes took figures from the reuse store instead of measuring them, and which; None when
    none did."""
    reused = [(r.details or {}).get("reused") or {} for r in records if r.status == "ok"]
    figures = Counter(name for names in reused for name in names)
    if not figures:
        return None
    return (f"reused    {sum(1 for names in reused if names)} of {len(reused)} processes took figures from the "
            f"reuse store ({', '.join(f'{name} {count}' for name, count in sorted(figures.items()))}; "
            f"details.reused names the keys, --no-cache measures everything)")


def render_summary(records: list[RunRecord]) -> str:
    counts = Counter(r.status for r in records)
    parts = provenance_lines(records) + ["", ratio_table(records), "", quality_table(records), ""]
    parts.append("cases     " + ", ".join(f"{counts[s]} {s}" for s in ("ok", "skipped", "failed", "timeout")))
    if reuse_line(records):
        parts.append(reuse_line(records))
    problems = problem_lines(records)
    if problems:
        parts += [""] + problems
    return "\n".join(parts)
