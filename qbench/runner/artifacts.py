"""The worker's side of the artifact cache: cached state_dicts read with torch.load(weights_only=True) and written
with torch.save, and restored into a converted model (layout, keys and listing: qbench.launch.artifact_cache)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from qbench.errors import StoreError, one_line
from qbench.launch.artifact_cache import ArtifactFolder

__all__ = ["ArtifactCache", "restore_into"]


class ArtifactCache(ArtifactFolder):
    """ArtifactFolder plus reading and writing the states themselves."""

    def get(self, key: str) -> dict | None:
        """The cached state_dict, or None on a miss. A damaged entry is deleted and counts as a miss."""
        blob = self.verified_blob(key)
        return None if blob is None else self._load(key, blob)

    def _load(self, key: str, blob: Path) -> dict | None:
        try:
            state_dict = torch.load(blob, weights_only=True, map_location="cpu")
        except Exception as exc:  # every way a file fails to load is the same miss, weights_only refusals included
            self._discard(key, f"torch.load(weights_only=True) refused it: {one_line(exc)}")
            return None
        if not isinstance(state_dict, dict) or not all(isinstance(name, str) for name in state_dict):
            self._discard(key, f"holds a {type(state_dict).__name__}, not a state_dict")
            return None
        with contextlib.suppress(FileNotFoundError):
            os.utime(blob)  # its mtime is the entry's last use, what clear(older_than_s) ages by
        return state_dict

    def put(self, key: str, state_dict: dict, meta: dict) -> Path:
        """Store `state_dict` under `key` with `meta` (JSON data) in the sidecar; returns the state file's path. The
        state is checked to load back with weights_only=True before it becomes visible; StoreError when it does
        not."""
        meta_text = self.prepare_put(key, meta)
        tmp_blob = self.tmp_path(".pt")
        try:
            torch.save(state_dict, tmp_blob)
            torch.load(tmp_blob, weights_only=True, map_location="cpu")
        except Exception as exc:
            tmp_blob.unlink(missing_ok=True)
            raise StoreError(f"artifact cache: the state_dict of {key[:12]} does not load back with "
                             f"weights_only=True: {one_line(exc)}") from None
        return self.store(key, tmp_blob, len(state_dict), meta_text)


def _state_signature(value: Any) -> tuple:
    """What must agree between a cached value and the skeleton's: type, and shape/dtype/qscheme of tensors."""
    if isinstance(value, torch.Tensor):
        scheme = str(value.qscheme()) if value.is_quantized else None
        return ("tensor", tuple(value.shape), str(value.dtype), scheme)
    if isinstance(value, (tuple, list)):
        return ("sequence", tuple(_state_signature(item) for item in value))
    return (type(value).__name__,)


def restore_into(model, state_dict: dict) -> None:
    """Load a cached state_dict into the converted skeleton `model` (strict). StoreError naming the first
    differences when the entry does not fit: keys missing or extra, or tensors of another shape, dtype or qscheme."""
    skeleton = model.state_dict()
    missing = sorted(set(skeleton) - set(state_dict))
    extra = sorted(set(state_dict) - set(skeleton))
    differing = sorted(name for name in set(skeleton) & set(state_dict)
                       if _state_signature(skeleton[name]) != _state_signature(state_dict[name]))
    problems = [f"{label} {', '.join(names[:3])}{' …' if len(names) > 3 else ''}"
                for label, names in (("missing", missing), ("unexpected", extra), ("differing", differing)) if names]
    if problems:
        raise StoreError(f"cached artifact does not fit the model ({'; '.join(problems)}); a recipe changed without "
                         f"a RECIPE_VERSION bump, or clear the cache with `qbench cache clear`")
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise StoreError(f"cached artifact does not load into the model: {one_line(exc)}") from None
