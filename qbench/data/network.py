"""The settings every qbench download obeys, read from the environment so that workers inherit them:

* QBENCH_OFFLINE=1 (`qbench run --offline`): never download; a missing file is the one-line error it always was.
* QBENCH_MIRROR=URL (`--mirror URL`): a base URL that replaces the scheme and host of every download, keeping the
  path, for CI without internet but with an internal mirror: https://download.pytorch.org/models/resnet18-f37072fd.pth
  is fetched from URL/models/resnet18-f37072fd.pth, https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz
  from URL/fast-ai-imageclas/imagenette2-160.tgz. A mirror is a copy, never a different file: every hash check
  still applies.
* QBENCH_WEIGHTS_MANIFEST=FILE (`--weights-manifest FILE`): stand-in checkpoints for torchvision's file names,
  qbench.runner.registry.hub documents it.

Stdlib only.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

from qbench.errors import ConfigError

__all__ = ["OFFLINE_VARIABLE", "MIRROR_VARIABLE", "WEIGHTS_MANIFEST_VARIABLE", "offline", "mirror", "mirrored",
           "network_env", "settings"]

OFFLINE_VARIABLE = "QBENCH_OFFLINE"
MIRROR_VARIABLE = "QBENCH_MIRROR"
WEIGHTS_MANIFEST_VARIABLE = "QBENCH_WEIGHTS_MANIFEST"
_TRUE = ("1", "true", "yes", "on")


def offline(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(OFFLINE_VARIABLE, "").strip().lower() in _TRUE


def _check_mirror(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise ConfigError(f"mirror {url!r} must be an http(s):// or file:// base URL, such as "
                          f"https://mirror.example.com/pytorch")
    return url.rstrip("/")


def mirror(environ=None) -> str | None:
    environ = os.environ if environ is None else environ
    value = environ.get(MIRROR_VARIABLE, "").strip()
    return _check_mirror(value) if value else None


def mirrored(url: str, environ=None) -> str:
    """`url` with its scheme and host replaced by the mirror's base URL (path and query kept); unchanged without a
    mirror."""
    base = mirror(environ)
    if base is None:
        return url
    parts = urlsplit(url)
    return base + urlunsplit(("", "", parts.path, parts.query, ""))


def network_env(*, offline_flag: bool = False, mirror_url: str | None = None,
                weights_manifest: str | None = None) -> dict:
    """The variables a command's --offline / --mirror / --weights-manifest set for its workers."""
    env = {}
    if offline_flag:
        env[OFFLINE_VARIABLE] = "1"
    if mirror_url:
        env[MIRROR_VARIABLE] = _check_mirror(mirror_url)
    if weights_manifest:
        path = os.path.abspath(os.path.expanduser(weights_manifest))
        if not os.path.isfile(path):
            raise ConfigError(f"weights manifest {weights_manifest} does not exist")
        env[WEIGHTS_MANIFEST_VARIABLE] = path
    return env


def settings(environ=None) -> dict:
    """What a record says about the network settings it ran under."""
    environ = os.environ if environ is None else environ
    return {"offline": offline(environ), "mirror": mirror(environ),
            "weights_manifest": environ.get(WEIGHTS_MANIFEST_VARIABLE) or None}
