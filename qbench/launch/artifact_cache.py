"""A cache of quantized artifacts: the converted state_dict of a calibrated (or QAT-trained) model, so that repeated
runs of a case skip calibration and training.

Key (artifact_key): model, weights (kind + file sha256 for pretrained/checkpoint, seed for random), mode, engine,
qconfig name, runner profile, calibration spec plus the sha256 of its batches, QAT spec, torch/torchvision/torchao
versions and RECIPE_VERSION (bump it whenever a recipe in qbench.runner.registry.modes changes what it builds). Batch size
and threads are left out: they do not change a converted model, so one entry serves every batch size and thread
count. The runner profile is in: calibration runs float kernels whose rounding depends on the ISA.

Safety: an entry is a state file `<key>.<sha16>.pt` (torch.save of the state_dict, named by its content's sha256)
plus a sidecar `<key>.json` (the caller's meta, the state file's name and sha256). Entries are read with
torch.load(weights_only=True, map_location="cpu") only, so a planted pickle is refused, never executed. Both files
are written under a temporary name and renamed (os.replace), the state file first, and a state file is never
rewritten in place, so two concurrent runs putting and getting one key never see half or mismatched entries. A
corrupt, tampered or unreadable entry is a miss: it is deleted and a one-line warning is appended to
ArtifactCache.warnings; reading a damaged entry never raises. `qbench cache list|info|clear` manages the folder.

Location: $QBENCH_CACHE_DIR, else $XDG_CACHE_HOME/qbench/artifacts, else ~/.cache/qbench/artifacts.

How a worker uses it (on a hit, the recipe runs on one example batch, QAT with 0 steps, to build the converted
skeleton; the cached state then replaces the skeleton's):

    key = artifact_key(case, weights_identity=source.weights_info(), calibration_identity=identity["sha256"],
                       versions=current_versions())
    cached = cache.get(key)
    if cached is None:
        prepared = apply_mode(...real calibration...)
        cache.put(key, prepared.model.state_dict(), {"identity": describe_key(...), "case_id": case.case_id})
    else:
        prepared = apply_mode(...calibration=[example_input]...)
        restore_into(prepared.model, cached)   # StoreError when the entry does not fit: treat as a miss
    (ArtifactCache and restore_into are in qbench.runner.artifacts)

This module is the layout, keys, listing and clearing (no torch); qbench.runner.artifacts adds get/put/restore_into,
which run in the worker.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import importlib.metadata
import json
import os
import re
import tempfile
import time
from pathlib import Path

from qbench.errors import ConfigError, StoreError, one_line
from qbench.records import Case, canonical_json

__all__ = ["RECIPE_VERSION", "CACHEABLE_MODES", "NOT_CACHEABLE", "cacheable", "current_versions", "describe_key",
           "artifact_key", "key_of", "default_root", "ArtifactFolder"]

RECIPE_VERSION = 1
SIDECAR_FORMAT = 1
CACHEABLE_MODES = ("static_eager", "static_fx", "qat")
# Why the other modes are not cached.
NOT_CACHEABLE = {
    "fp32": "nothing is calibrated or trained",
    "fp32_bf16": "nothing is calibrated or trained",
    "dynamic": "quantize_dynamic observes no data; rebuilding costs no more than loading",
    "prequantized": "torchvision's quantize=True weights are already a file",
    "pt2e": "convert_pt2e bakes activation scales and zero points into the graph as literal arguments, not "
            "state_dict entries, so a state_dict cannot restore a calibration (and torch.compile's work is "
            "not saved either)",
}
_KEY = re.compile(r"[0-9a-f]{64}")
_BLOB = re.compile(r"[0-9a-f]{64}\.[0-9a-f]{16}\.pt")
# How old a superseded state file or a temporary file must be before it is deleted: one a concurrent run is still
# writing or reading is younger.
_GRACE_S = 600.0
_VERSIONED = ("torch", "torchvision", "torchao")


def cacheable(mode: str) -> bool:
    """True for the modes whose calibration or training the cache can skip (CACHEABLE_MODES)."""
    return mode in CACHEABLE_MODES


def current_versions() -> dict:
    """{"torch", "torchvision", "torchao"}: installed distribution versions (None when not installed)."""
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _weights_key(case: Case, weights_identity: dict) -> dict:
    kind = weights_identity.get("kind")
    if kind == "random":
        return {"kind": "random", "seed": case.seed}
    if kind in ("pretrained", "checkpoint") and weights_identity.get("sha256"):
        return {"kind": kind, "name": weights_identity.get("name"), "sha256": weights_identity["sha256"]}
    raise ConfigError(f"weights identity {weights_identity!r}: expected kind 'random', or 'pretrained'/'checkpoint' "
                      f"with the file's sha256")


def _calibration_sha(calibration_identity: str | dict | None) -> str | None:
    if isinstance(calibration_identity, dict):  # the whole identity calibration_batches returns
        return calibration_identity.get("sha256")
    return calibration_identity


def describe_key(case: Case, *, weights_identity: dict, calibration_identity: str | dict | None,
                 versions: dict) -> dict:
    """The fields artifact_key hashes, as JSON data. `calibration_identity` is the sha256 calibration_batches
    returns (or its whole identity dict); `versions` must name torch, and every entry in it counts (torchvision and
    torchao are None when absent; extra entries such as a caller's own recipe version are kept)."""
    if not versions.get("torch"):
        raise ConfigError(f"artifact key needs the torch version, got versions {versions!r}")
    return {
        "recipe_version": RECIPE_VERSION,
        "model": case.model,
        "weights": _weights_key(case, weights_identity),
        "mode": case.mode,
        "engine": case.engine,
        "qconfig": case.qconfig,
        "runner": case.runner,
        "calibration": {**case.calibration.to_dict(), "sha256": _calibration_sha(calibration_identity)},
        "qat": None if case.qat is None else case.qat.to_dict(),
        "versions": {**{name: None for name in _VERSIONED}, **versions},
    }


def artifact_key(case: Case, *, weights_identity: dict, calibration_identity: str | dict | None,
                 versions: dict) -> str:
    """sha256 (hex) of describe_key(...): the name of the case's artifact in the cache."""
    return key_of(describe_key(case, weights_identity=weights_identity, calibration_identity=calibration_identity,
                               versions=versions))


def key_of(description: dict) -> str:
    """The cache key of a describe_key(...) result, for callers that keep the description too."""
    return hashlib.sha256(canonical_json(description).encode()).hexdigest()


def default_root() -> Path:
    """$QBENCH_CACHE_DIR, else $XDG_CACHE_HOME/qbench/artifacts, else ~/.cache/qbench/artifacts."""
    if os.environ.get("QBENCH_CACHE_DIR"):
        return Path(os.environ["QBENCH_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qbench" / "artifacts"



def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _utc(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unlink(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


class ArtifactFolder:
    """Converted state_dicts on disk under `root` (default_root() when None), keyed by artifact_key: the layout,
    listing and clearing, without torch (qbench.runner.artifacts.ArtifactCache reads and writes the states).

    An entry is `<key>.json`, naming its state file `<key>.<first 16 hex of its sha256>.pt`. State files are
    content-addressed and never rewritten in place, so a reader that read a sidecar finds the very bytes it names,
    even while another run puts the same key.
    """

    def __init__(self, root: Path | str | None = None):
        self._root = Path(root).expanduser() if root is not None else default_root()
        self.warnings: list[str] = []

    @property
    def root(self) -> Path:
        return self._root

    def _sidecar(self, key: str) -> Path:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ConfigError(f"cache key {key!r} is not a 64-digit lowercase hex sha256")
        return self._root / f"{key}.json"

    def _blobs(self, key: str) -> list[Path]:
        return [path for path in self._root.glob(f"{key}.*.pt") if _BLOB.fullmatch(path.name)]

    def _discard(self, key: str, why: str) -> None:
        _unlink(self._sidecar(key), *self._blobs(key))
        self.warnings.append(f"artifact cache: entry {key[:12]} discarded ({why}); recomputing")

    def info(self, key: str) -> dict | None:
        """The entry's sidecar (key, blob, sha256, bytes, created_at, meta), or None when there is no valid one."""
        try:
            data = json.loads(self._sidecar(key).read_text())
        except (OSError, ValueError):
            return None
        valid = (isinstance(data, dict) and data.get("key") == key and isinstance(data.get("sha256"), str)
                 and data.get("blob") == f"{key}.{data['sha256'][:16]}.pt")
        return data if valid else None

    def verified_blob(self, key: str) -> Path | None:
        """The entry's state file, checked against its recorded sha256, or None on a miss. A damaged entry is
        deleted and counts as a miss."""
        for _ in range(3):  # a concurrent put may swap the sidecar between our reading it and opening its file
            if not self._sidecar(key).exists():
                return None  # absent, or a writer has not finished the entry yet
            info = self.info(key)
            if info is None:
                self._discard(key, "unreadable sidecar")
                return None
            try:
                digest = _file_sha256(self._root / info["blob"])
            except FileNotFoundError:
                if self.info(key) != info:
                    continue
                self._discard(key, "state file missing")
                return None
            if digest != info["sha256"]:
                self._discard(key, "file does not match its recorded sha256")
                return None
            return self._root / info["blob"]
        return None

    def store(self, key: str, tmp_blob: Path, entries: int, meta_text: str) -> Path:
        """Make the written state file `tmp_blob` (in this folder, from `tmp_path`) the entry of `key`, with its
        sidecar: the state file is renamed into place first, then the sidecar, so readers never see a half entry."""
        digest = _file_sha256(tmp_blob)
        blob = self._root / f"{key}.{digest[:16]}.pt"
        sidecar_data = {"format": SIDECAR_FORMAT, "key": key, "blob": blob.name, "sha256": digest,
                        "bytes": tmp_blob.stat().st_size, "entries": entries,
                        "created_at": _utc(time.time()), "meta": json.loads(meta_text)}
        tmp_sidecar = self.tmp_path(".json")
        tmp_sidecar.write_text(json.dumps(sidecar_data, indent=1, sort_keys=True))
        os.replace(tmp_blob, blob)
        os.replace(tmp_sidecar, self._sidecar(key))
        self._drop_superseded(key, blob)
        return blob

    def prepare_put(self, key: str, meta: dict) -> str:
        """Check the key and meta and create the folder before a state file is written; returns meta as JSON."""
        self._sidecar(key)
        try:
            meta_text = json.dumps(meta, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"artifact cache: meta is not JSON data: {one_line(exc)}") from None
        try:
            self._root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"artifact cache folder {self._root} cannot be created: {one_line(exc)}") from None
        return meta_text

    def _drop_superseded(self, key: str, current: Path) -> None:
        """Remove the key's older state files, sparing any a concurrent writer may have just placed."""
        cutoff = time.time() - _GRACE_S
        for path in self._blobs(key):
            with contextlib.suppress(FileNotFoundError):
                if path != current and path.stat().st_mtime < cutoff:
                    path.unlink()

    def tmp_path(self, suffix: str) -> Path:
        handle, name = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=self._root)
        os.close(handle)
        return Path(name)

    def entries(self) -> list[dict]:
        """One dict per entry, most recently used first: key, bytes, created_at, last_used, meta, path, and `error`
        when its sidecar or state file is damaged or missing."""
        if not self._root.is_dir():
            return []
        keys = {path.name[:64] for path in self._root.iterdir()
                if _BLOB.fullmatch(path.name) or (path.suffix == ".json" and _KEY.fullmatch(path.stem))}
        return sorted((self._entry(key) for key in keys), key=lambda e: (-e["last_used_ts"], e["key"]))

    def _entry(self, key: str) -> dict:
        info = self.info(key)
        blobs = {path: path.stat() for path in self._blobs(key) if path.exists()}
        blob = self._root / info["blob"] if info is not None else None
        used = blobs[blob].st_mtime if blob in blobs else max((st.st_mtime for st in blobs.values()), default=0.0)
        entry = {"key": key, "bytes": sum(st.st_size for st in blobs.values()), "last_used_ts": used,
                 "last_used": _utc(used) if used else None, "created_at": None, "meta": {},
                 "path": str(blob) if blob is not None else None}
        if info is None:
            entry["error"] = "no readable sidecar (damaged, or still being written)"
        else:
            entry.update(created_at=info.get("created_at"), meta=info.get("meta") or {})
            if blob not in blobs:
                entry["error"] = "state file missing"
        return entry

    def clear(self, older_than_s: float | None = None) -> int:
        """Delete every entry (or those not used for more than older_than_s seconds) and temporary files a killed
        writer left, and the same in the reuse store under `reuse/` (qbench.runner.reuse); returns how many entries
        went."""
        if older_than_s is not None and older_than_s < 0:
            raise ConfigError(f"older than {older_than_s} s: expected a non-negative age")
        if not self._root.is_dir():
            return 0
        cutoff = None if older_than_s is None else time.time() - older_than_s
        removed = ArtifactFolder(self._root / "reuse").clear(older_than_s) if self._root.name != "reuse" else 0
        for entry in self.entries():
            if cutoff is None or entry["last_used_ts"] < cutoff:
                _unlink(self._sidecar(entry["key"]), *self._blobs(entry["key"]))
                removed += 1
        stale = min(cutoff if cutoff is not None else time.time(), time.time() - _GRACE_S)
        for tmp in self._root.glob(".tmp-*"):
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime < stale:
                    tmp.unlink()
        return removed
