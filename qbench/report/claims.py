"""Render the INT8 claims rows (qbench.compare.claims) as a table, markdown, JSON or a pandas frame."""

from __future__ import annotations

import json
from collections.abc import Sequence

from qbench.compare.claims import CLAIMS, CRITERIA

__all__ = ["claims_frame", "render_claims"]


def claims_frame(rows: Sequence[dict]):
    """The rows flattened for pandas: one column per claim's value, interval ends and verdict."""
    import pandas as pd

    flat = []
    for row in rows:
        item = {k: v for k, v in row.items() if k not in ("claims", "accuracy", "fp32_bandwidth", "int8_bandwidth")}
        for name, claim in row["claims"].items():
            item.update({f"{name}": claim["value"], f"{name}_low": claim["low"], f"{name}_high": claim["high"],
                         f"{name}_verdict": claim["verdict"], f"{name}_reason": claim["reason"]})
        flat.append(item)
    return pd.DataFrame(flat)


def _x(value: float) -> str:
    return f"{value:.2f}x"


def _cell(name: str, claim: dict) -> str:
    if claim["verdict"] == "n/a":
        return "n/a"
    flags = "".join(f", {flag}" for flag in claim["flags"])
    if name == "speedup" and claim["low"] is not None:
        return f"{_x(claim['value'])} [{claim['low']:.2f}–{claim['high']:.2f}] {claim['verdict']}{flags}"
    if name == "accuracy":
        if claim["reason"] and claim["reason"].startswith("top-1 delta"):
            interval = "" if claim["low"] is None else f" [{claim['low']:+.1f}, {claim['high']:+.1f}]"
            return f"Δtop1 {claim['value']:+.1f} pt{interval} {claim['verdict']}"
        return f"agree {claim['value']:.3f} {claim['verdict']}"
    return f"{_x(claim['value'])} {claim['verdict']}{flags}"


def _notes(row: dict) -> list[str]:
    notes = []
    for name in CLAIMS:
        reason = row["claims"][name]["reason"]
        if not reason or reason.startswith("top-1 "):
            continue
        for part in reason.split("; "):
            note = part if part.startswith("case ") else f"{name}: {part}"
            if note not in notes:
                notes.append(note)
    accuracy = row.get("accuracy") or {}
    if accuracy.get("sqnr_db") is not None and row["claims"]["accuracy"]["verdict"] != "n/a":
        notes.append(f"logits SQNR {accuracy['sqnr_db']:.1f} dB")
    if row["random_weights"] and not any("random-init" in n for n in notes):
        notes.append("random-init weights")
    return notes


def _common_notes(rows: Sequence[dict]) -> list[str]:
    """Notes every row has (said once above the table rather than on each row)."""
    if len(rows) < 2:
        return []
    first, *others = [_notes(r) for r in rows]
    return [note for note in first if all(note in notes for notes in others)]


def _bf16_cell(against: dict | None) -> str:
    """int8's speedup over the fp32 baseline with bf16 fast math, and whether it beats it (its interval above 1x)."""
    if not against:
        return "n/a"
    low, high = against["ci"]
    return (f"{against['speedup']:.2f}x [{low:.2f}–{high:.2f}] "
            f"{'beats it' if against['beats_bf16'] else 'does not beat it'}")


def _table_rows(rows: Sequence[dict]) -> tuple[list[str], list[list]]:
    machines, runs = {r["machine_id"] for r in rows}, {r["run_id"] for r in rows}
    qconfigs = {r["qconfig"] for r in rows}
    bf16 = any(r.get("vs_fp32_bf16") for r in rows)
    headers = (["machine"] if len(machines) > 1 else []) + (["run"] if len(runs) > 1 else []) + [
        "case (model/mode/engine/batch/threads/weights@runner)"] + (
        ["qconfig"] if qconfigs != {"default"} else []) + [
        "size (≥3.5x)", "bandwidth (≥2x)", "speedup [95% CI] (≥2x)", "accuracy (≈0)"] + (
        ["vs fp32+bf16 fast math [95% CI]"] if bf16 else []) + ["notes"]
    body, common = [], set(_common_notes(rows))
    for r in rows:
        body.append(([r["machine_id"]] if len(machines) > 1 else []) + ([r["run_id"][:8]] if len(runs) > 1 else [])
                    + [r["case_id"]] + ([r["qconfig"]] if qconfigs != {"default"} else [])
                    + [_cell(name, r["claims"][name]) for name in CLAIMS]
                    + ([_bf16_cell(r.get("vs_fp32_bf16"))] if bf16 else [])
                    + ["; ".join(n for n in _notes(r) if n not in common)])
    return headers, body


def _provenance(rows: Sequence[dict]) -> list[str]:
    lines = []
    seen = sorted({(r["machine_id"], r["isa"], r["cpu_capability"], r["torch"], r["torchvision"]) for r in rows},
                  key=str)
    for machine, isa, capability, torch, torchvision in seen:
        lines.append(f"machine {machine}: isa {isa or '?'}; torch dispatches to {capability}; torch {torch}, "
                     f"torchvision {torchvision}")
    runners = sorted({r["runner"] for r in rows})
    weights = sorted({r["weights"] for r in rows})
    lines.append(f"runners {', '.join(runners)}; weights {', '.join(weights)}; batch sizes "
                 f"{', '.join(str(b) for b in sorted({r['batch_size'] for r in rows}))}; threads "
                 f"{', '.join(str(t) for t in sorted({r['threads'] for r in rows}))}")
    if "random" in weights:
        lines.append("RANDOM-INIT WEIGHTS: size, bandwidth and speed are real; accuracy claims are n/a for them")
    lines += [f"every row: {note}" for note in _common_notes(rows) if note != "random-init weights"]
    lines.append("criteria: size holds ≥3.5x, partly ≥2x; bandwidth holds ≥2x, partly ≥1.2x; speedup holds "
                 "when the 95% interval is ≥2x, partly ≥1.2x and above 1x; accuracy holds |Δtop1| ≤1 pt with "
                 "its interval within ±2 pt (partly ≤3 pt), or agreement ≥0.99 without labels (partly ≥0.95)")
    return lines


def render_claims(rows: Sequence[dict], fmt: str = "table") -> str:
    """The claims as a plain table, a markdown section body, or JSON ({"provenance", "criteria", "rows"})."""
    from tabulate import tabulate

    if fmt == "json":
        return json.dumps({"provenance": _provenance(rows) if rows else [], "criteria": CRITERIA,
                           "rows": list(rows)}, indent=2, allow_nan=False)
    if not rows:
        return "No int8 cases to judge."
    headers, body = _table_rows(rows)
    if fmt == "markdown":
        lines = [f"- {'**' + line + '**' if line.startswith('RANDOM') else line}" for line in _provenance(rows)]
        return "\n".join(lines) + "\n\n" + tabulate(body, headers=headers, tablefmt="pipe", disable_numparse=True)
    return "\n".join(_provenance(rows)) + "\n\n" + tabulate(body, headers=headers, tablefmt="simple",
                                                            disable_numparse=True)
