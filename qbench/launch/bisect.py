"""`qbench bisect`: find the first bad side between a good and a bad one, judging every candidate against the good
side with `qbench ab`'s paired statistics (qbench.launch.ab.run_ab, alternating fresh processes, sign-test interval).

A candidate is judged against the good side, case by case, and is
  crash      when any case fails on the candidate (the good side succeeding on it),
  accuracy   when the model's output on the case's example differs from the good side's (another shape or top-1
             class, or SQNR below min_sqnr_db; qbench.launch.ab.output_changed),
  slowdown   when it is significantly slower by more than the threshold (qbench.launch.ab.is_regression),
  good       otherwise, or skip when it cannot be judged (every case skipped, its environment or worktree could not be
             made, or it crashed while crashes are not what is hunted).
The first of crash > accuracy > slowdown that is hunted (`kinds`) names a bad candidate. Exit codes follow
`git bisect run`: 0 good, 1 slowdown, 4 accuracy drop, 5 crash (all "bad", 1-124), 125 skip; a failure of the good
side or of qbench itself is 128 and up, which aborts `git bisect run` (STEP_EXIT).

The candidates between good and bad: for git refs, `git rev-list --reverse --ancestry-path --first-parent good..bad`
in the side's repository; for two `env:` sides that differ in one `==` pin, the versions `pip index versions NAME`
lists between the two; otherwise an explicit ordered list (`between`). The search is a binary search over that list
(a skipped candidate is replaced by its nearest untried neighbour), with the bad side judged first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from qbench.errors import ConfigError, InfraError
from qbench.launch.ab import (DEFAULT_MIN_SQNR_DB, ABSettings, ABReport, CaseComparison, is_regression,
                              output_changed, run_ab)
from qbench.launch.ab_envs import ENV_PREFIX, pinned_versions, requirement_name
from qbench.launch.ab_sides import CodeSide, SideSpec, open_side, parse_side, repo_root, resolve_ref, source_root
from qbench.suite.load import SuiteSpec

__all__ = ["KINDS", "STEP_EXIT", "Step", "BisectResult", "judge", "candidates_between", "judge_side", "bisect",
           "bisect_step", "DEFAULT_THRESHOLD"]

KINDS = ("crash", "accuracy", "slowdown")
STEP_EXIT = {"good": 0, "slowdown": 1, "accuracy": 4, "crash": 5, "skip": 125, "abort": 128}
DEFAULT_THRESHOLD = 0.10


@dataclass
class Step:
    """One judged candidate: its side, its commit (git) and what it is, with the reason and per-case figures."""

    side: str
    kind: str
    reason: str
    commit: str | None = None
    subject: str | None = None
    cases: list[dict] = field(default_factory=list)

    @property
    def bad(self) -> bool:
        return self.kind in KINDS

    def to_dict(self) -> dict:
        return {"side": self.side, "commit": self.commit, "subject": self.subject, "kind": self.kind,
                "exit_code": STEP_EXIT[self.kind], "reason": self.reason, "cases": self.cases}


@dataclass
class BisectResult:
    good: str
    bad: str
    candidates: list[str]
    kinds: tuple[str, ...]
    steps: list[Step] = field(default_factory=list)
    first_bad: Step | None = None
    unresolved: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"good": self.good, "bad": self.bad, "candidates": self.candidates, "kinds": list(self.kinds),
                "steps": [s.to_dict() for s in self.steps],
                "first_bad": self.first_bad.to_dict() if self.first_bad else None, "unresolved": self.unresolved}


def _case_figures(c: CaseComparison) -> dict:
    figures = {"case_id": c.case_id, "status": c.status, "reason": c.reason, "outputs": c.outputs}
    if c.stats:
        figures.update(ratio=c.stats.ratio, ci_low=c.stats.low, ci_high=c.stats.high, pairs=c.stats.pairs,
                       verdict=c.stats.verdict)
    return figures


def judge(report: ABReport, threshold: float, kinds: tuple[str, ...] = KINDS,
          min_sqnr_db: float = DEFAULT_MIN_SQNR_DB) -> tuple[str, str]:
    """(kind, reason) of side B of an ab report whose side A is the good side."""
    found: dict[str, str] = {}
    for c in report.cases:
        if c.status == "failed" and c.failed_side != "B":
            raise InfraError(f"the good side failed on {c.case_id}: {c.reason}")
        if c.status == "failed":
            found.setdefault("crash", f"{c.case_id}: {c.reason}")
        if output_changed(c, min_sqnr_db):
            check = c.outputs
            found.setdefault("accuracy", f"{c.case_id}: output SQNR {check['sqnr_db']:.1f} dB against the good "
                                         f"side, top-1 agreement {check['top1_agreement']:.0%}")
        if is_regression(c, threshold):
            s = c.stats
            found.setdefault("slowdown", f"{c.case_id}: B/A {s.ratio:.3f} ({s.low:.3f}-{s.high:.3f}), "
                                         f"threshold {threshold:.0%}")
    for kind in KINDS:
        if kind in found and kind in kinds:
            return kind, found[kind]
    if "crash" in found:
        return "skip", f"crashed, and crashes are not hunted: {found['crash']}"
    if not any(c.status == "compared" for c in report.cases):
        return "skip", "no case could be compared: " + "; ".join(f"{c.case_id}: {c.reason}" for c in report.cases)
    compared = [c for c in report.cases if c.stats]
    return "good", "; ".join(f"{c.case_id}: B/A {c.stats.ratio:.3f} ({c.stats.low:.3f}-{c.stats.high:.3f}) "
                             f"{c.stats.verdict}" for c in compared)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ConfigError(f"git {' '.join(args[:2])} in {repo}: {(done.stderr.strip().splitlines() or [''])[-1]}")
    return done.stdout.strip()


def _pip_versions(name: str) -> list[str]:
    """The versions of `name` that the package index offers, oldest first (pip's own order, reversed)."""
    done = subprocess.run([sys.executable, "-m", "pip", "index", "versions", name], capture_output=True, text=True,
                          timeout=300)
    found = re.search(r"Available versions:\s*(.+)", done.stdout)
    if done.returncode != 0 or not found:
        raise InfraError(f"pip index versions {name} failed: {(done.stderr.strip().splitlines() or [''])[-1]}")
    return [v.strip() for v in found.group(1).split(",")][::-1]


def _env_candidates(good: SideSpec, bad: SideSpec) -> list[SideSpec]:
    pins_good, pins_bad = pinned_versions(good.requirements), pinned_versions(bad.requirements)
    differ = [n for n in pins_good.keys() | pins_bad.keys() if pins_good.get(n) != pins_bad.get(n)]
    rest_good = sorted(r for r in good.requirements if requirement_name(r) not in differ)
    rest_bad = sorted(r for r in bad.requirements if requirement_name(r) not in differ)
    if len(differ) != 1 or not (differ[0] in pins_good and differ[0] in pins_bad) or rest_good != rest_bad:
        raise ConfigError("env: sides can be bisected when they differ in one == pin only (e.g. "
                          "env:torchao==0.14.0 and env:torchao==0.18.0); else give --between")
    name = differ[0]
    versions = _pip_versions(name)
    try:
        low, high = versions.index(pins_good[name]), versions.index(pins_bad[name])
    except ValueError:
        raise ConfigError(f"{name} {pins_good[name]} or {pins_bad[name]} is not offered by the package index "
                          f"(offered: {', '.join(versions)})") from None
    if low >= high:
        raise ConfigError(f"the good {name} {pins_good[name]} must be older than the bad {pins_bad[name]}")
    return [parse_side(ENV_PREFIX + " ".join(rest_good + [f"{name}=={v}"])) for v in versions[low + 1:high + 1]]


def candidates_between(good: SideSpec, bad: SideSpec, repo: Path | None = None,
                       between: list[str] | None = None) -> list[SideSpec]:
    """Every side after good up to and including bad, in order."""
    if between:
        return [parse_side(s) for s in between] + [bad]
    if good.kind == bad.kind == "git":
        top = repo_root(repo or source_root())
        first, last = resolve_ref(top, good), resolve_ref(top, bad)
        if subprocess.run(["git", "-C", str(top), "merge-base", "--is-ancestor", first, last]).returncode != 0:
            raise ConfigError(f"the good side {good.text} is not an ancestor of the bad side {bad.text}")
        commits = _git(top, "rev-list", "--reverse", "--ancestry-path", "--first-parent", f"{first}..{last}").split()
        if not commits:
            raise ConfigError(f"no commits between {good.text} and {bad.text}")
        return [replace(parse_side(c), text=c) for c in commits]
    if good.kind == bad.kind == "env":
        return _env_candidates(good, bad)
    raise ConfigError("bisect needs two git refs or two env: sides, or --between SIDE ... for other sides")


def _subject(side: CodeSide) -> str | None:
    if side.commit and side.repo:
        return _git(side.repo, "log", "-1", "--format=%s", side.commit)
    return None


def judge_side(spec: SuiteSpec, good: CodeSide, candidate: SideSpec, settings: ABSettings, *, threshold: float,
               kinds: tuple[str, ...], min_sqnr_db: float, repo: Path | None, filters: list[str] | None,
               isolation: str | None, say: Callable[[str], None] | None = None) -> Step:
    """Open the candidate, compare it with the good side (A = good, B = candidate) and judge it."""
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="qbench-bisect-"))
        stack.callback(shutil.rmtree, scratch, True)
        try:
            side = open_side("B", candidate, stack, scratch, repo=repo, say=say)
        except InfraError as exc:
            return Step(candidate.text, "skip", f"could not be prepared: {exc}")
        try:
            report = run_ab(spec, (good, side), settings, filters=filters, isolation=isolation)
        except InfraError as exc:
            if str(exc).startswith("side B"):
                return Step(candidate.text, "crash" if "crash" in kinds else "skip", str(exc), side.commit,
                            _subject(side))
            raise
        kind, reason = judge(report, threshold, kinds, min_sqnr_db)
        return Step(candidate.text, kind, reason, side.commit, _subject(side),
                    [_case_figures(c) for c in report.cases])


def bisect(spec: SuiteSpec, good: str, bad: str, settings: ABSettings, *, threshold: float = DEFAULT_THRESHOLD,
           kinds: tuple[str, ...] = KINDS, min_sqnr_db: float = DEFAULT_MIN_SQNR_DB, repo: Path | None = None,
           between: list[str] | None = None, filters: list[str] | None = None, isolation: str | None = None,
           on_step: Callable[[Step, int], None] | None = None, say: Callable[[str], None] | None = None
           ) -> BisectResult:
    """The first bad side after `good` up to `bad`. The bad side is judged first: if it is good (or cannot be
    judged), there is nothing to find and first_bad stays None."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ConfigError(f"unknown kind(s) {', '.join(sorted(unknown)) or '(none)'}; allowed: {', '.join(KINDS)}")
    good_spec, bad_spec = parse_side(good), parse_side(bad)
    candidates = candidates_between(good_spec, bad_spec, repo, between)
    result = BisectResult(good, bad, [c.text for c in candidates], tuple(kinds))
    options = dict(threshold=threshold, kinds=tuple(kinds), min_sqnr_db=min_sqnr_db, repo=repo, filters=filters,
                   isolation=isolation, say=say)
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="qbench-bisect-good-"))
        stack.callback(shutil.rmtree, scratch, True)
        good_side = open_side("A", good_spec, stack, scratch, repo=repo, say=say)
        judged: dict[int, Step] = {}

        def step(index: int) -> Step:
            if index not in judged:
                judged[index] = judge_side(spec, good_side, candidates[index], settings, **options)
                result.steps.append(judged[index])
                if on_step:
                    on_step(judged[index], len(result.steps))
            return judged[index]

        last = len(candidates) - 1
        if not step(last).bad:
            return result
        low, high = -1, last  # low: known good (-1 is the good side), high: known bad
        while high - low > 1:
            # inside (low, high) every judged candidate is a skip: take the untried one nearest the middle
            middle = (low + high) // 2
            order = sorted((i for i in range(low + 1, high) if i not in judged), key=lambda i: (abs(i - middle), i))
            if not order:
                break
            outcome = step(order[0])
            if outcome.bad:
                high = order[0]
            elif outcome.kind == "good":
                low = order[0]
        skipped = [i for i in range(low + 1, high) if judged.get(i) and judged[i].kind == "skip"]
        result.first_bad = judged[high] if not skipped else None
        result.unresolved = [candidates[i].text for i in skipped + [high]] if skipped else []
    return result


def bisect_step(spec: SuiteSpec, good: str, candidate: str, settings: ABSettings, *,
                threshold: float = DEFAULT_THRESHOLD, kinds: tuple[str, ...] = KINDS,
                min_sqnr_db: float = DEFAULT_MIN_SQNR_DB, repo: Path | None = None, filters: list[str] | None = None,
                isolation: str | None = None, say: Callable[[str], None] | None = None) -> Step:
    """One judgement for `git bisect run`: the candidate (by default the commit git bisect checked out, HEAD)
    against the good side; its exit code is STEP_EXIT[step.kind]."""
    with ExitStack() as stack:
        scratch = Path(tempfile.mkdtemp(prefix="qbench-bisect-good-"))
        stack.callback(shutil.rmtree, scratch, True)
        good_side = open_side("A", parse_side(good), stack, scratch, repo=repo, say=say)
        return judge_side(spec, good_side, parse_side(candidate), settings, threshold=threshold, kinds=tuple(kinds),
                          min_sqnr_db=min_sqnr_db, repo=repo, filters=filters, isolation=isolation, say=say)
