"""Which qbench measured: its version, git commit and whether the working tree had uncommitted changes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import qbench

__all__ = ["qbench_provenance"]


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def qbench_provenance() -> dict:
    root = Path(qbench.__file__).resolve().parent.parent
    commit = _git(root, "rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
        dirty = None if status is None else bool(status)
    return {"version": qbench.__version__, "commit": commit, "dirty": dirty}
