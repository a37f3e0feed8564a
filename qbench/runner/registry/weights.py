"""Load model weights safely: torchvision's pretrained checkpoints from the TORCH_HOME cache (downloaded there
first when missing, unless offline: qbench.runner.registry.hub), or a user's checkpoint file. Every torch.load here is weights_only=True, map_location="cpu". Each loader
also returns the weights' provenance: {"kind", "name", "file", "sha256"}.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from qbench.errors import ConfigError, one_line
from qbench.runner.registry.torchvision_compat import import_torchvision

__all__ = ["parse_weights", "default_weights", "cache_path", "safe_load", "file_sha256", "random_provenance",
           "pretrained_provenance", "load_pretrained", "checkpoint_provenance", "load_checkpoint"]

_WRAPPER_KEYS = ("model", "state_dict")
_sha256_cache: dict[tuple, str] = {}



def parse_weights(spec: str) -> tuple[str, str | None]:
    """"random" | "pretrained" | "checkpoint:<path>" → (kind, path or None)."""
    if spec in ("random", "pretrained"):
        return spec, None
    kind, sep, path = spec.partition(":")
    if kind == "checkpoint" and sep and path:
        return kind, os.path.abspath(os.path.expanduser(path))
    raise ConfigError(f"weights {spec!r}: expected 'random', 'pretrained' or 'checkpoint:<path>'")


def default_weights(name: str):
    """The DEFAULT member of torchvision's weights enum for a builder name ("resnet18", "quantized_resnet18")."""
    return import_torchvision().models.get_model_weights(name).DEFAULT


def cache_path(weights) -> str:
    """Where torch.hub keeps `weights`' checkpoint: <torch.hub.get_dir()>/checkpoints/<file name of its URL>."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def safe_load(path: str, what: str = "checkpoint") -> Any:
    """torch.load with weights_only=True on CPU; a missing, corrupt or unsafe file is a one-line ConfigError."""
    if not os.path.isfile(path):
        raise ConfigError(f"{what} file {path} does not exist")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:  # every way a file can fail to unpickle is the same user-facing problem
        raise ConfigError(f"{what} file {path} cannot be loaded with weights_only=True: {one_line(exc)}") from None


def file_sha256(path: str) -> str:
    """sha256 of a file, computed once per process for an unchanged file."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _sha256_cache:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _sha256_cache[key] = digest.hexdigest()
    return _sha256_cache[key]


def random_provenance() -> dict:
    return {"kind": "random", "name": None, "file": None, "sha256": None}


def pretrained_provenance(weights) -> dict:
    """Provenance of a pretrained checkpoint, downloaded into the hub cache first when missing (qbench.runner.
    registry.hub: offline, mirror and stand-in settings); WeightsNotFound when it is not cached and cannot be
    downloaded. "verified" says how the file was checked; on a cache hit the file's sha256 is compared with its
    name's prefix again ("matches": False marks a cached file that is not the published one)."""
    from qbench.runner.registry.hub import ensure_cached

    path, verified = ensure_cached(weights)
    verified = {key: value for key, value in verified.items() if key != "downloaded"}  # records stay deterministic
    digest = file_sha256(path)
    expected = verified.get("sha256") or verified.get("prefix")
    if expected:
        verified = {**verified, "matches": digest.startswith(expected)}
    return {"kind": "pretrained", "name": str(weights), "file": path, "sha256": digest, "verified": verified}


def load_pretrained(weights) -> tuple[dict, dict]:
    """(state_dict, provenance) of a torchvision weights enum member, from the hub cache (downloaded when missing)."""
    provenance = pretrained_provenance(weights)
    state_dict = _as_state_dict(safe_load(provenance["file"], f"pretrained weights {weights}"), provenance["file"])
    return state_dict, provenance


def checkpoint_provenance(path: str) -> dict:
    if not os.path.isfile(path):
        raise ConfigError(f"checkpoint file {path} does not exist")
    return {"kind": "checkpoint", "name": None, "file": path, "sha256": file_sha256(path)}


def load_checkpoint(path: str) -> tuple[dict, dict]:
    """(state_dict, provenance) of a checkpoint file: a raw state_dict, or a dict holding one under "model" or
    "state_dict"."""
    provenance = checkpoint_provenance(path)
    return _as_state_dict(safe_load(path), path), provenance


def _as_state_dict(obj: Any, path: str) -> dict:
    if isinstance(obj, dict):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(key, str) for key in obj):
        raise ConfigError(f"checkpoint file {path} holds no state_dict (expected a dict of tensors, or one under "
                          f"'model' or 'state_dict')")
    return obj
