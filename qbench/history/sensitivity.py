"""Stored sensitivity measurements (runs of suite "sensitivity") read back as a table, one row per run × layer."""

from __future__ import annotations

from pathlib import Path

__all__ = ["SENSITIVITY_COLUMNS", "load_sensitivity"]

SENSITIVITY_COLUMNS = ("run_id", "record_id", "machine_id", "model", "mode", "engine", "weights", "runner",
                       "threads", "torch", "started_at", "images", "rank", "layer", "type", "sqnr_db",
                       "only_this_quantized_agreement", "only_this_quantized_sqnr_db", "all_but_this_agreement",
                       "all_but_this_sqnr_db", "full_agreement", "full_sqnr_db")


def load_sensitivity(results_dir: Path | str, errors: list | None = None):
    """Every stored sensitivity measurement under results_dir as a DataFrame, one row per run × layer (columns
    SENSITIVITY_COLUMNS), ordered by run then rank."""
    import pandas as pd

    from qbench.history.store import iter_records

    rows = []
    for _, record in iter_records(Path(results_dir), errors):
        found = record.metrics.get("sensitivity") if record.status == "ok" else None
        if not found:
            continue
        base = {"run_id": record.run_id, "record_id": record.record_id,
                "machine_id": record.machine.get("machine_id"), "model": record.case.model,
                "mode": record.case.mode, "engine": record.case.engine, "weights": record.case.weights_kind,
                "runner": record.case.runner, "threads": record.case.threads,
                "torch": record.environment.get("torch"), "started_at": record.started_at,
                "images": (found.get("images") or {}).get("count")}
        full = found.get("full") or {}
        for entry in found.get("per_layer", []):
            only, all_but = entry.get("only_this_quantized") or {}, entry.get("all_but_this") or {}
            rows.append({**base, "rank": entry.get("rank"), "layer": entry.get("layer"), "type": entry.get("type"),
                         "sqnr_db": entry.get("sqnr_db"), "only_this_quantized_agreement": only.get("agreement"),
                         "only_this_quantized_sqnr_db": only.get("sqnr_db"),
                         "all_but_this_agreement": all_but.get("agreement"),
                         "all_but_this_sqnr_db": all_but.get("sqnr_db"), "full_agreement": full.get("agreement"),
                         "full_sqnr_db": full.get("sqnr_db")})
    frame = pd.DataFrame(rows, columns=list(SENSITIVITY_COLUMNS))
    if not frame.empty:
        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
        frame = frame.sort_values(["started_at", "run_id", "rank"], kind="stable").reset_index(drop=True)
    return frame
