"""results/<machine>/peaks.json: the machine's measured bandwidth and compute peaks, one entry per runner profile,
thread count and torch version."""
from __future__ import annotations

from pathlib import Path

from qbench.errors import StoreError
from qbench.history.files import read_versioned, write_json_atomic

__all__ = ["PEAKS_SCHEMA_VERSION", "PEAKS_FILE", "peaks_key", "load_peaks", "save_peaks"]

PEAKS_SCHEMA_VERSION = 1
PEAKS_FILE = "peaks.json"
_HINT = "; move it away to measure again"


def peaks_key(runner: str, threads: int, torch_version: str) -> str:
    return f"{runner}/t{int(threads)}/torch-{torch_version}"


def _path(results_dir, machine_id: str) -> Path:
    return Path(results_dir) / machine_id / PEAKS_FILE


def _read(path: Path) -> dict:
    data = read_versioned(path, "peaks file", PEAKS_SCHEMA_VERSION, hint=_HINT,
                          missing={"schema_version": PEAKS_SCHEMA_VERSION, "entries": {}})
    if not isinstance(data.get("entries"), dict):
        raise StoreError(f"{path}: not a qbench peaks file (needs schema_version and entries){_HINT}")
    return data


def load_peaks(results_dir, machine_id: str, runner: str, threads: int, torch_version: str) -> dict | None:
    """The stored peaks of this machine, runner profile, thread count and torch version, or None."""
    return _read(_path(results_dir, machine_id))["entries"].get(peaks_key(runner, threads, torch_version))


def save_peaks(results_dir, machine_id: str, peaks: dict) -> Path:
    """Add or replace `peaks` (keyed by its runner, threads and torch) in results/<machine_id>/peaks.json,
    atomically; other entries are kept. A corrupt file is a StoreError, never overwritten."""
    path = _path(results_dir, machine_id)
    data = _read(path)
    data["entries"][peaks_key(peaks["runner"], peaks["threads"], peaks["torch"])] = peaks
    data["schema_version"], data["machine_id"] = PEAKS_SCHEMA_VERSION, machine_id
    return write_json_atomic(path, data)
