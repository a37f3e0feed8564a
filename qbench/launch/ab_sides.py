"""The two code trees of `qbench ab`: parse a side, check out git refs into temporary worktrees, check origins.

A side is one of:
  <git ref>          a commit of the qbench repository, checked out into a temporary `git worktree` whose code comes
                     first on the workers' PYTHONPATH (this interpreter; qbench and its recipes are pure Python);
  python:<path>      another Python environment (e.g. another torch build) running this qbench source;
  current            this interpreter and this source.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import qbench
from qbench.errors import ConfigError, InfraError

__all__ = ["SideSpec", "CodeSide", "parse_side", "resolve_ref", "open_sides", "source_root", "PROBE_MODULE", "ORIGIN_KEY",
           "CURRENT"]

PROBE_MODULE = "qbench_ab_probe"
# Where the probe puts a record's origin. The probe (qbench/runner/ab_probe.py) is shipped as a self-contained file
# into every side and so names the key itself; tests/test_ab.py checks the two agree.
ORIGIN_KEY = "ab_origin"
CANDIDATES = 6
CURRENT = "current"


def source_root() -> Path:
    """The folder holding the running qbench package (a source checkout when qbench is installed editable)."""
    return Path(qbench.__file__).resolve().parent.parent


@dataclass(frozen=True)
class SideSpec:
    """A side as given on the command line. kind "git": ref names a commit; kind "python": python runs this source."""

    text: str
    kind: str
    ref: str | None = None
    python: str = sys.executable


def parse_side(text: str) -> SideSpec:
    text = text.strip()
    if not text:
        raise ConfigError("a side must be a git ref, python:/path/to/python or current")
    if text == CURRENT:
        return SideSpec(text, "python", python=sys.executable)
    if text.startswith("python:"):
        python = text.removeprefix("python:")
        if not python:
            raise ConfigError(f"side {text!r}: give the interpreter, e.g. python:/opt/torch-nightly/bin/python")
        resolved = shutil.which(python)
        if resolved is None:
            raise ConfigError(f"side {text!r}: {python} is not an executable file")
        return SideSpec(text, "python", python=resolved)
    if text.startswith("-"):
        raise ConfigError(f"side {text!r}: a git ref cannot start with '-'")
    return SideSpec(text, "git", ref=text)


@dataclass(frozen=True)
class CodeSide:
    """A side ready to measure: which interpreter, the folder whose qbench it must import, and the commit."""

    label: str
    spec: SideSpec
    code_root: Path
    commit: str | None
    probe_dir: Path
    repo: Path | None = None

    @property
    def python(self) -> str:
        return self.spec.python

    def env(self) -> dict:
        """PYTHONSAFEPATH: `python -m` must not put the parent's working folder (perhaps another qbench) first."""
        return {"PYTHONPATH": os.pathsep.join((str(self.code_root), str(self.probe_dir))), "PYTHONSAFEPATH": "1"}

    def describe(self) -> str:
        commit = f" @ {self.commit[:12]}" if self.commit else ""
        return f"side {self.label} ({self.spec.text}{commit})"

    def check_origin(self, origin: dict | None) -> None:
        """The worker must have imported this side's qbench (and, for a git side, its model code and commit)."""
        if not origin or not origin.get("qbench_file"):
            raise InfraError(f"{self.describe()}: the worker did not report where its code came from")
        imported = Path(origin["qbench_file"])
        if not imported.is_relative_to(self.code_root.resolve() / "qbench"):
            raise InfraError(f"{self.describe()}: the worker imported qbench from {imported}, not from "
                             f"{self.code_root}; refusing to measure the wrong code")
        if self.spec.kind != "git":
            return
        if origin.get("commit") != self.commit:
            raise InfraError(f"{self.describe()}: the worker's code is at commit {origin.get('commit')}, "
                             f"not {self.commit}")
        model_file = origin.get("model_module_file")
        if (model_file and self.repo and Path(model_file).is_relative_to(self.repo)
                and not Path(model_file).is_relative_to(self.code_root.resolve())):
            raise InfraError(f"{self.describe()}: the model code came from {model_file} in the working tree, "
                             f"not from the worktree {self.code_root}")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"git {' '.join(args[:2])} failed in {repo}: {exc}") from None


def _toplevel(root: Path, spec: SideSpec) -> Path:
    done = _git(root, "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        raise ConfigError(f"side {spec.text!r} is a git ref, but {root} is not a git repository "
                          f"(use python:/path/to/python or current)")
    return Path(done.stdout.strip()).resolve()


def _candidates(repo: Path) -> str:
    done = _git(repo, "for-each-ref", "--sort=-committerdate", f"--count={CANDIDATES}",
                "--format=%(refname:short)", "refs/heads", "refs/tags")
    names = done.stdout.split() if done.returncode == 0 else []
    return ", ".join(names + ["HEAD~N", "a commit id", "python:/path/to/python", CURRENT])


def resolve_ref(repo: Path, spec: SideSpec) -> str:
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{spec.ref}^{{commit}}")
    if done.returncode != 0:
        raise ConfigError(f"unknown side {spec.text!r}: no such commit, branch or tag in {repo}; "
                          f"candidates: {_candidates(repo)}")
    return done.stdout.strip()


@contextmanager
def _worktree(repo: Path, commit: str, path: Path) -> Iterator[Path]:
    done = _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
    if done.returncode != 0:
        raise InfraError(f"git worktree add {commit[:12]} failed: {(done.stderr.strip().splitlines() or [''])[-1]}")
    try:
        yield path
    finally:
        if _git(repo, "worktree", "remove", "--force", str(path)).returncode != 0:
            shutil.rmtree(path, ignore_errors=True)
            _git(repo, "worktree", "prune")


def _prepare(label: str, spec: SideSpec, root: Path, scratch: Path, stack: ExitStack) -> CodeSide:
    probe_dir = scratch / f"probe-{label}"
    probe_dir.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[1] / "runner" / "ab_probe.py", probe_dir / f"{PROBE_MODULE}.py")
    if spec.kind == "python":
        return CodeSide(label, spec, code_root=root, commit=None, probe_dir=probe_dir)
    repo = _toplevel(root, spec)
    commit = resolve_ref(repo, spec)
    tree = stack.enter_context(_worktree(repo, commit, scratch / f"worktree-{label}"))
    return CodeSide(label, spec, code_root=tree / root.relative_to(repo), commit=commit, probe_dir=probe_dir, repo=repo)


@contextmanager
def open_sides(a: str | SideSpec, b: str | SideSpec, root: Path | None = None) -> Iterator[tuple[CodeSide, CodeSide]]:
    """Both sides ready: git refs resolved in the repository holding `root` (default: this qbench's source) and
    checked out into temporary worktrees, removed on exit. Bad sides raise ConfigError before anything runs."""
    root = Path(root or source_root()).resolve()
    specs = [s if isinstance(s, SideSpec) else parse_side(s) for s in (a, b)]
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="qbench-ab-"))
        stack.callback(shutil.rmtree, scratch, True)
        sides = tuple(_prepare(label, spec, root, scratch, stack) for label, spec in zip("AB", specs))
        yield sides
