"""Bring torchvision's pretrained checkpoints into the TORCH_HOME hub cache by torch.hub's own path: the file goes to
<torch.hub.get_dir()>/checkpoints/<file name of its URL> (where torchvision's `weights.get_state_dict()` looks), it
is downloaded by `torch.hub.download_url_to_file` (progress bar on stderr, a uniquely named `.partial` file moved
into place only when complete and verified, so a broken or concurrent download never leaves a half file under the
real name), and checked against the sha256 prefix in its file name exactly as `load_state_dict_from_url` checks it
(torch.hub.HASH_REGEX, `-<hex>.`; a name without one, such as resnet18_fbgemm_16fa66dd.pth, is not checked by torch
either and the provenance says so). An exclusive lock per file makes concurrent workers download it once.

Network settings (qbench.data.network): QBENCH_OFFLINE=1 never downloads (the one-line "not in the torch hub
cache" error); QBENCH_MIRROR replaces the download host.

Stand-ins (QBENCH_WEIGHTS_MANIFEST=FILE): a checkpoint that is not the published file cannot pass the published
name's hash (that is the point of the check), so a stand-in, such as the learned resnet18 the tests serve, must be
declared, never smuggled. The manifest is JSON:

    {"format": "qbench-weights-manifest/1", "note": "why",
     "files": {"resnet18-f37072fd.pth": {"sha256": "<64 hex digits of the stand-in>"}}}

For a listed file name the download is verified against the full sha256 given there (stronger than the 8-digit
prefix), and it is cached apart, under checkpoints/qbench-stand-ins/<sha256[:16]>/<file name>, so the official cache
path never holds anything but the published file. The provenance of weights loaded this way records the manifest
(path and sha256) and the stand-in's sha256; nothing weakens the check silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
from urllib.parse import urlsplit

import torch

from qbench.data.download import locked
from qbench.data.network import WEIGHTS_MANIFEST_VARIABLE, mirrored, offline
from qbench.errors import ConfigError, WeightsHashMismatch, WeightsNotFound

__all__ = ["MANIFEST_FORMAT", "STAND_IN_FOLDER", "file_name", "hash_prefix", "read_weights_manifest",
           "ensure_cached"]

MANIFEST_FORMAT = "qbench-weights-manifest/1"
STAND_IN_FOLDER = "qbench-stand-ins"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _one_line(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def file_name(weights) -> str:
    return os.path.basename(urlsplit(weights.url).path)


def hash_prefix(name: str) -> str | None:
    """The sha256 prefix torch.hub checks for a cached file name (None when the name carries none)."""
    match = torch.hub.HASH_REGEX.search(name)
    return match.group(1) if match and match.group(1) else None


def read_weights_manifest(path: str) -> tuple[dict[str, dict], str]:
    """({file name: {"sha256", ...}}, sha256 of the manifest file); a malformed manifest is a one-line ConfigError."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        data = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"weights manifest {path} cannot be read: {_one_line(exc)}") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("files"), dict):
        raise ConfigError(f"weights manifest {path}: expected {{\"format\": \"{MANIFEST_FORMAT}\", \"files\": "
                          f"{{file name: {{\"sha256\": ...}}}}}}")
    for name, entry in data["files"].items():
        if not isinstance(entry, dict) or not _SHA256.fullmatch(str(entry.get("sha256", ""))):
            raise ConfigError(f"weights manifest {path}: entry {name!r} needs a \"sha256\" of 64 lowercase hex digits")
    return data["files"], hashlib.sha256(raw).hexdigest()


def _stand_in(name: str) -> dict | None:
    path = os.environ.get(WEIGHTS_MANIFEST_VARIABLE)
    if not path:
        return None
    files, digest = read_weights_manifest(path)
    entry = files.get(name)
    if entry is None:
        return None
    return {"sha256": entry["sha256"], "manifest": os.path.abspath(path), "manifest_sha256": digest}


def _target(weights) -> tuple[str, str | None, dict]:
    """(cache path, the hash the download must match, verification provenance)."""
    name = file_name(weights)
    checkpoints = os.path.join(torch.hub.get_dir(), "checkpoints")
    stand_in = _stand_in(name)
    if stand_in is not None:
        path = os.path.join(checkpoints, STAND_IN_FOLDER, stand_in["sha256"][:16], name)
        return path, stand_in["sha256"], {"by": "weights manifest (stand-in, not the published file)", **stand_in}
    prefix = hash_prefix(name)
    if prefix is None:
        return (os.path.join(checkpoints, name), None,
                {"by": "none: the file name carries no -<sha256 prefix>. part, so torch.hub checks nothing"})
    return os.path.join(checkpoints, name), prefix, {"by": "file-name sha256 prefix", "prefix": prefix}


def _not_cached(weights, path: str, why: str) -> WeightsNotFound:
    return WeightsNotFound(f"pretrained weights {weights} are not in the torch hub cache: need file {path} ({why}; "
                           f"fetch {weights.url} on a machine with network and copy it there, or name an internal "
                           f"mirror with --mirror / QBENCH_MIRROR)")


def ensure_cached(weights, *, progress: bool = True) -> tuple[str, dict]:
    """(path of `weights`' checkpoint in the hub cache, how it was verified): downloaded first when missing, unless
    offline. WeightsNotFound when it is missing and cannot be downloaded, WeightsHashMismatch when the download
    does not match its hash (nothing is cached then, and no partial file is left)."""
    path, expected, verification = _target(weights)
    if os.path.isfile(path):
        return path, {**verification, "downloaded": False}
    if offline():
        raise _not_cached(weights, path, "QBENCH_OFFLINE is set, so qbench does not download")
    url = mirrored(weights.url)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    with locked(folder, os.path.basename(path)):
        if os.path.isfile(path):  # another worker finished it while this one waited
            return path, {**verification, "downloaded": False}
        try:
            torch.hub.download_url_to_file(url, path, hash_prefix=expected, progress=progress)
        except RuntimeError as exc:
            if "invalid hash value" not in str(exc):
                raise
            raise WeightsHashMismatch(f"pretrained weights {weights} from {url} do not match their sha256 "
                                      f"({verification['by']}: expected {expected}); nothing was cached") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise _not_cached(weights, path, f"downloading {url} failed: {_one_line(exc)}") from None
    return path, {**verification, "downloaded": True, "url": url}
