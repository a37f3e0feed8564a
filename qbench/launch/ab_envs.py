"""Python environments built on demand from requirement specs, for `qbench ab` and `qbench bisect` sides such as
`env:torchao==0.17.0`: isolated virtualenvs cached under ~/.cache/qbench/envs (or $QBENCH_ENV_DIR).

An environment holds the worker's dependencies as qbench's pyproject.toml states them (torch, torchvision, torchao,
psutil) plus the spec's requirements, installed with `pip install -c` semantics: the checkout's constraints.txt pins
everything the spec does not name (so a spec `torchao==0.17.0` keeps torch at the local CPU build `torch==2.13.0`
instead of pulling a multi-GB CUDA build from PyPI); a package the spec names is constrained by the spec only.
qbench itself is not installed: the side runs the checkout's qbench from PYTHONPATH (checked by the side's origin),
so one cached environment serves every commit. The cache key is the sha256 of the normalized requirement list,
the constraints that apply and the Python (version and base interpreter). Environments are created with
`python -m venv --without-pip` (no system site-packages) and filled by this interpreter's pip (`pip --python`), which
reuses pip's wheel cache (and /opt/wheels' local torch); files of 4 KiB or more are then hard-linked to a
content-addressed store in the cache (`.store/<sha256>`), so that environments differing only in torchao share one copy
of torch on disk. A finished environment carries `qbench-env.json`, written last, so a half-built one is rebuilt,
and a lock file serialises concurrent builds of one key.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

from qbench.errors import ConfigError, InfraError

__all__ = ["ENV_PREFIX", "WORKER_PACKAGES", "parse_requirements", "requirement_name", "pinned_versions",
           "EnvPlan", "plan_env", "ensure_env", "env_cache_dir"]

ENV_PREFIX = "env:"
WORKER_PACKAGES = ("torch", "torchvision", "torchao", "psutil")
MARKER = "qbench-env.json"
SHARED_MIN_BYTES = 4096
INSTALL_TIMEOUT_S = 3600.0
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def env_cache_dir() -> Path:
    return Path(os.environ.get("QBENCH_ENV_DIR") or Path.home() / ".cache" / "qbench" / "envs")


def requirement_name(requirement: str) -> str:
    """The PEP 503 normalized project name of a requirement line (`TorchAO==0.17.0` -> `torchao`)."""
    found = _NAME.match(requirement)
    if not found:
        raise ConfigError(f"not a requirement: {requirement!r} (e.g. torchao==0.17.0)")
    return re.sub(r"[-_.]+", "-", found.group(1)).lower()


def _normalize(requirement: str) -> str:
    name = requirement_name(requirement)
    rest = _NAME.sub("", requirement, count=1)
    return name + re.sub(r"\s+", "", rest.split("#")[0])


def parse_requirements(text: str, base: Path | None = None) -> tuple[str, ...]:
    """The requirements of an `env:` side: whitespace-separated requirement specs, or @FILE for a requirements file
    (one per line, # comments). Sorted and normalized, so that equal specs share one cached environment."""
    found: list[str] = []
    for token in text.split():
        if token.startswith("@"):
            path = (base or Path.cwd()) / token[1:]
            try:
                lines = path.read_text().splitlines()
            except OSError as exc:
                raise ConfigError(f"requirements file {path}: {exc.strerror or exc}") from None
            found += [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]
        else:
            found.append(token)
    if not found:
        raise ConfigError("an env: side needs at least one requirement, e.g. env:torchao==0.17.0")
    for line in found:
        if line.startswith("-"):
            raise ConfigError(f"env: requirement {line!r}: pip options are not allowed in a side's spec")
    return tuple(sorted({_normalize(r) for r in found}))


def pinned_versions(requirements: tuple[str, ...]) -> dict[str, str]:
    """name -> version for every exact `==` pin (what the side's worker must report)."""
    pins = {}
    for requirement in requirements:
        found = re.fullmatch(r"([a-z0-9-]+)==([A-Za-z0-9.+!-]+)", requirement)
        if found:
            pins[found.group(1)] = found.group(2)
    return pins


def _worker_requirements(root: Path) -> list[str]:
    """The worker's dependencies as the checkout's pyproject.toml states them."""
    try:
        declared = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        declared = list(WORKER_PACKAGES)
    return [_normalize(r) for r in declared if requirement_name(r) in WORKER_PACKAGES]


def _constraints(root: Path, named: set[str]) -> list[str]:
    try:
        lines = (root / "constraints.txt").read_text().splitlines()
    except OSError:
        return []
    kept = [line.split("#")[0].strip() for line in lines]
    return sorted(_normalize(line) for line in kept if line and requirement_name(line) not in named)


class EnvPlan:
    """What one environment holds, and where it is cached."""

    def __init__(self, requirements: tuple[str, ...], root: Path, python: str, cache: Path):
        self.requirements = requirements
        named = {requirement_name(r) for r in requirements}
        self.install = sorted(set(requirements) | {r for r in _worker_requirements(root)
                                                   if requirement_name(r) not in named})
        self.constraints = _constraints(root, named)
        self.python = python
        base = os.path.realpath(getattr(sys, "_base_executable", python) if python == sys.executable else python)
        version = subprocess.run([python, "-c", "import sys; print(sys.version)"], capture_output=True,
                                 text=True).stdout.strip()
        identity = {"install": self.install, "constraints": self.constraints, "python": version, "base": base}
        self.identity = identity
        self.key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        self.path = cache / self.key[:16]

    @property
    def interpreter(self) -> Path:
        return self.path / "bin" / "python"

    def ready(self) -> bool:
        try:
            return json.loads((self.path / MARKER).read_text()).get("key") == self.key and self.interpreter.exists()
        except (OSError, ValueError):
            return False


def plan_env(requirements: tuple[str, ...], root: Path, python: str = sys.executable,
             cache: Path | None = None) -> EnvPlan:
    return EnvPlan(requirements, root, python, cache or env_cache_dir())


def _run(command: list[str], what: str, log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        try:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise InfraError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        tail = [line for line in log.read_text().splitlines() if line.strip()][-1:] or [""]
        raise InfraError(f"{what} failed (exit {done.returncode}; log {log}): {tail[0].strip()[:300]}")


def _share_files(env: Path, store: Path) -> int:
    """Hard-link every large regular file of env to the store's copy of the same content; returns bytes shared."""
    store.mkdir(parents=True, exist_ok=True)
    shared = 0
    for path in env.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.stat().st_size < SHARED_MIN_BYTES:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        kept = store / digest.hexdigest()
        try:
            if kept.exists():
                temporary = path.with_name(f".{path.name}.qbench-link")
                os.link(kept, temporary)
                os.chmod(temporary, path.stat().st_mode)
                os.replace(temporary, path)
                shared += path.stat().st_size
            else:
                os.link(path, kept)
        except OSError:  # another file system, or no hard links: keep the copy
            continue
    return shared


def ensure_env(plan: EnvPlan, say: Callable[[str], None] | None = None) -> Path:
    """The environment's interpreter, building the environment first unless it is cached."""
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    with open(plan.path.parent / f"{plan.path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if plan.ready():
            return plan.interpreter
        if say:
            say(f"building environment {plan.path} ({' '.join(plan.requirements)}); pip's log: "
                f"{plan.path}.log")
        shutil.rmtree(plan.path, ignore_errors=True)
        log = Path(f"{plan.path}.log")
        log.write_text("")
        _run([plan.python, "-m", "venv", "--without-pip", str(plan.path)], "python -m venv", log)
        constraints = plan.path / "constraints.txt"
        constraints.write_text("".join(f"{line}\n" for line in plan.constraints))
        requirements = plan.path / "requirements.txt"
        requirements.write_text("".join(f"{line}\n" for line in plan.install))
        _run([sys.executable, "-m", "pip", "--python", str(plan.interpreter), "install", "--quiet",
              "-c", str(constraints), "-r", str(requirements)], f"pip install {' '.join(plan.requirements)}", log)
        shared = _share_files(plan.path, plan.path.parent / ".store")
        frozen = subprocess.run([sys.executable, "-m", "pip", "--python", str(plan.interpreter), "freeze"],
                                capture_output=True, text=True).stdout.split()
        marker = plan.path / f"{MARKER}.tmp"
        marker.write_text(json.dumps({"key": plan.key, **plan.identity, "requirements": list(plan.requirements),
                                      "installed": frozen, "bytes_shared": shared}, indent=2))
        os.replace(marker, plan.path / MARKER)
        return plan.interpreter
