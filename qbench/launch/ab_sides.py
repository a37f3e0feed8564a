"""The code and environments of `qbench ab` and `qbench bisect` sides: parse a side, check out git refs into temporary
worktrees, build environments, check origins.

A side is one of:
  <git ref>          a commit, checked out into a temporary `git worktree`. By default of the qbench repository: its
                     code comes first on the workers' PYTHONPATH (this interpreter; qbench and its recipes are pure
                     Python). With `repo` (`--repo PATH`), of any repository holding the suite's `package.module:factory`
                     models: the worktree (the folder matching PATH inside it) comes first on PYTHONPATH, then this
                     qbench source, and the worker must import the model from the worktree at that commit;
  env:<requirements> an isolated virtualenv built on demand and cached (qbench.launch.ab_envs), e.g.
                     `env:torchao==0.17.0` or `env:@requirements.txt`, running this qbench source; its `==` pins are
                     checked against the versions the worker reports;
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
from qbench.launch.ab_envs import ENV_PREFIX, ensure_env, parse_requirements, pinned_versions, plan_env

__all__ = ["SideSpec", "CodeSide", "parse_side", "resolve_ref", "open_sides", "open_side", "source_root",
           "repo_root", "PROBE_MODULE", "ORIGIN_KEY", "OUTPUT_KEY", "CURRENT"]

PROBE_MODULE = "qbench_ab_probe"
# Where the probe puts a record's origin. The probe (qbench/runner/ab_probe.py) is shipped as a self-contained file
# into every side and so names the key itself; tests/test_ab.py checks the two agree.
ORIGIN_KEY = "ab_origin"
OUTPUT_KEY = "ab_output"
CANDIDATES = 6
CURRENT = "current"


def source_root() -> Path:
    """The folder holding the running qbench package (a source checkout when qbench is installed editable)."""
    return Path(qbench.__file__).resolve().parent.parent


@dataclass(frozen=True)
class SideSpec:
    """A side as given on the command line. kind "git": ref names a commit; kind "python": python runs this source;
    kind "env": an environment built from `requirements` runs this source."""

    text: str
    kind: str
    ref: str | None = None
    python: str = sys.executable
    requirements: tuple[str, ...] = ()


def parse_side(text: str) -> SideSpec:
    text = text.strip()
    if not text:
        raise ConfigError("a side must be a git ref, env:REQUIREMENTS, python:/path/to/python or current")
    if text.startswith(ENV_PREFIX):
        try:
            return SideSpec(text, "env", requirements=parse_requirements(text.removeprefix(ENV_PREFIX)))
        except ConfigError as exc:
            raise ConfigError(f"side {text!r}: {exc}") from None
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
    """A side ready to measure: which interpreter, the folder whose qbench it must import, the commit, and for a
    commit of another repository the worktree folder its models must come from (model_root)."""

    label: str
    spec: SideSpec
    code_root: Path
    commit: str | None
    probe_dir: Path
    repo: Path | None = None
    model_root: Path | None = None
    interpreter: str | None = None

    @property
    def python(self) -> str:
        return self.interpreter or self.spec.python

    def env(self) -> dict:
        """PYTHONSAFEPATH: `python -m` must not put the parent's working folder (perhaps another qbench) first."""
        roots = [self.model_root] if self.model_root else []
        env = {"PYTHONPATH": os.pathsep.join(str(p) for p in (*roots, self.code_root, self.probe_dir)),
               "PYTHONSAFEPATH": "1"}
        if self.spec.kind == "env":
            env["QBENCH_AB_PACKAGES"] = ",".join(pinned_versions(self.spec.requirements))
        return env

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
        if self.spec.kind == "env":
            found = origin.get("packages") or {}
            wrong = {n: found.get(n) for n, v in pinned_versions(self.spec.requirements).items()
                     if (found.get(n) or "").split("+")[0] != v}
            if wrong:
                raise InfraError(f"{self.describe()}: the worker runs {', '.join(f'{n} {v}' for n, v in wrong.items())}, "
                                 f"not the pinned versions")
        if self.spec.kind != "git":
            return
        model_file = origin.get("model_module_file")
        commit = origin.get("model_commit" if self.model_root else "commit")
        if self.model_root and model_file and commit != self.commit:
            raise InfraError(f"{self.describe()}: the worker's model code is at commit {commit}, not {self.commit}")
        if not self.model_root and commit != self.commit:
            raise InfraError(f"{self.describe()}: the worker's code is at commit {commit}, not {self.commit}")
        tree = (self.model_root or self.code_root).resolve()
        if (model_file and self.repo and Path(model_file).is_relative_to(self.repo)
                and not Path(model_file).is_relative_to(tree)):
            raise InfraError(f"{self.describe()}: the model code came from {model_file} in the working tree, "
                             f"not from the worktree {tree}")


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"git {' '.join(args[:2])} failed in {repo}: {exc}") from None


def _toplevel(root: Path, spec: SideSpec | None = None) -> Path:
    done = _git(root, "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        what = f"side {spec.text!r} is a git ref, but " if spec else ""
        raise ConfigError(f"{what}{root} is not a git repository (use python:/path/to/python, env:... or current)")
    return Path(done.stdout.strip()).resolve()


def repo_root(path: str | Path) -> Path:
    """The top level of the git repository holding `path` (ConfigError when there is none)."""
    path = Path(path).resolve()
    if not path.is_dir():
        raise ConfigError(f"--repo {path}: no such folder")
    return _toplevel(path)


def _candidates(repo: Path) -> str:
    done = _git(repo, "for-each-ref", "--sort=-committerdate", f"--count={CANDIDATES}",
                "--format=%(refname:short)", "refs/heads", "refs/tags")
    names = done.stdout.split() if done.returncode == 0 else []
    return ", ".join(names + ["HEAD~N", "a commit id", "env:REQUIREMENTS", "python:/path/to/python", CURRENT])


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


def open_side(label: str, spec: str | SideSpec, stack: ExitStack, scratch: Path, root: Path | None = None,
              repo: Path | None = None, say=None) -> CodeSide:
    """One side ready to measure; its worktree (if any) is removed when `stack` closes. root: the qbench source
    (default: this one); repo: a folder of the repository whose commits git sides name (default: qbench's own)."""
    spec = spec if isinstance(spec, SideSpec) else parse_side(spec)
    root = Path(root or source_root()).resolve()
    probe_dir = scratch / f"probe-{label}"
    probe_dir.mkdir()
    shutil.copyfile(Path(__file__).resolve().parents[1] / "runner" / "ab_probe.py", probe_dir / f"{PROBE_MODULE}.py")
    if spec.kind == "env":
        interpreter = str(ensure_env(plan_env(spec.requirements, root), say))
        return CodeSide(label, spec, code_root=root, commit=None, probe_dir=probe_dir, interpreter=interpreter)
    if spec.kind == "python":
        return CodeSide(label, spec, code_root=root, commit=None, probe_dir=probe_dir)
    where = Path(repo).resolve() if repo else root
    top = _toplevel(where, spec)
    commit = resolve_ref(top, spec)
    tree = stack.enter_context(_worktree(top, commit, scratch / f"worktree-{label}"))
    if top == _toplevel(root) and where == root:
        return CodeSide(label, spec, code_root=tree / root.relative_to(top), commit=commit, probe_dir=probe_dir,
                        repo=top)
    return CodeSide(label, spec, code_root=root, commit=commit, probe_dir=probe_dir, repo=top,
                    model_root=tree / where.relative_to(top))


@contextmanager
def open_sides(a: str | SideSpec, b: str | SideSpec, root: Path | None = None, repo: Path | None = None,
               say=None) -> Iterator[tuple[CodeSide, CodeSide]]:
    """Both sides ready: git refs resolved in `repo` (default: the repository holding `root`, this qbench's source)
    and checked out into temporary worktrees, environments built or taken from the cache; worktrees are removed on
    exit. Bad sides raise ConfigError before anything runs."""
    specs = [s if isinstance(s, SideSpec) else parse_side(s) for s in (a, b)]
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="qbench-ab-"))
        stack.callback(shutil.rmtree, scratch, True)
        yield tuple(open_side(label, spec, stack, scratch, root, repo, say) for label, spec in zip("AB", specs))
