"""qbench bisect and the sides of `qbench ab` beyond qbench's own repository: the judgement of a candidate (crash,
accuracy drop, slowdown, skip) and the binary search on synthetic reports, candidates between two refs or two pins,
then real runs on a throwaway repository that holds only a `package.module:factory` model: `qbench ab --repo`,
the driver finding the first slow commit, and `git bisect run qbench bisect --step` finding the first commit that
crashes and the first whose output is wrong. Timing is never asserted; slow commits do about 10 times the work."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import qbench.launch.bisect as bisect_module
from qbench.errors import ConfigError, InfraError
from qbench.launch.ab import ABReport, ABSettings, CaseComparison, compare_outputs, output_changed
from qbench.launch.ab_sides import parse_side, source_root
from qbench.launch.bisect import STEP_EXIT, Step, bisect, candidates_between, judge
from qbench.stats.paired import compare_pairs
from tests.factories import ab_suite_text, make_case
from tests.factories import simulate

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-c", "init.defaultBranch=main"]
SUITE = ab_suite_text("bisect-tiny", "mymodels.net:net")


def model_source(blocks: int, forward_tail: str = "return self.head(x.mean((2, 3)))") -> str:
    """A conv stem, an identity-initialised convolution applied `blocks` times (the output does not depend on
    blocks), a linear head."""
    return f'''import torch
from torch import nn

INPUT_SIZE = 32


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.body = nn.Conv2d(16, 16, 3, padding=1)
        nn.init.dirac_(self.body.weight)
        nn.init.zeros_(self.body.bias)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for _ in range({blocks}):
            x = torch.relu(self.body(x))
        {forward_tail}


def net():
    return Net()
'''


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    subprocess.run(GIT + ["-C", str(repo), "add", "-A"], check=True)
    subprocess.run(GIT + ["-C", str(repo), "commit", "-qm", message], check=True)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def throwaway_repo(repo: Path, bad: dict[int, str]) -> list[str]:
    """Five commits of a repository holding mymodels/net.py; from commit i on (for i in `bad`), the model source is
    bad[i]. Commit 0 is tagged good, the last one bad."""
    repo.mkdir(parents=True)
    subprocess.run(GIT + ["init", "-q", str(repo)], check=True)
    source, shas = model_source(4), []
    for index in range(5):
        source = bad.get(index, source)
        shas.append(commit(repo, {"mymodels/__init__.py": "", "mymodels/net.py": source,
                                  "NOTES.md": f"change {index}\n"}, f"change {index}"))
    subprocess.run(["git", "-C", str(repo), "tag", "good", shas[0]], check=True)
    subprocess.run(["git", "-C", str(repo), "tag", "bad", shas[-1]], check=True)
    return shas


def qbench(*args: str, cwd: Path, runner=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(source_root())}
    command = runner or [sys.executable, "-m", "qbench"]
    return subprocess.run(command + list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


# -- judging a candidate and searching, on synthetic reports ------------------------------------------------------

def report(*cases: CaseComparison) -> ABReport:
    return ABReport(sides={}, settings=ABSettings(pairs=8), suite={}, machine_id="m", started_at="t",
                    cases=list(cases))


def compared(ratio: float, outputs: dict | None = None, seed: int = 1) -> CaseComparison:
    return CaseComparison(make_case(), "compared", stats=compare_pairs(*simulate(ratio, 20, seed)), outputs=outputs)


SAME = {"same_shape": True, "sqnr_db": 200.0, "top1_agreement": 1.0, "compared_values": 10}
WRONG = {"same_shape": True, "sqnr_db": 3.0, "top1_agreement": 0.0, "compared_values": 10}


def test_a_candidate_is_judged_crash_before_accuracy_before_slowdown():
    crash = CaseComparison(make_case(), "failed", "side B: failed: RuntimeError: boom", failed_side="B")
    assert judge(report(compared(1.0, SAME)), 0.1)[0] == "good"
    assert judge(report(compared(3.0, SAME)), 0.1)[0] == "slowdown"
    assert judge(report(compared(3.0, SAME)), 5.0)[0] == "good"  # slower, but not by more than the threshold
    assert judge(report(compared(3.0, WRONG)), 0.1)[0] == "accuracy"
    assert judge(report(compared(3.0, WRONG), crash), 0.1)[0] == "crash"
    assert judge(report(compared(3.0, WRONG)), 0.1, kinds=("slowdown",))[0] == "slowdown"
    assert judge(report(crash), 0.1, kinds=("slowdown",))[0] == "skip"  # cannot tell its speed
    assert judge(report(CaseComparison(make_case(), "skipped", "side B: no x86")), 0.1)[0] == "skip"
    with pytest.raises(InfraError, match="the good side failed"):
        judge(report(CaseComparison(make_case(), "failed", "side A: failed: x", failed_side="A")), 0.1)
    assert [STEP_EXIT[k] for k in ("good", "slowdown", "accuracy", "crash", "skip")] == [0, 1, 4, 5, 125]
    assert all(1 <= STEP_EXIT[k] <= 127 and STEP_EXIT[k] != 125 for k in ("slowdown", "accuracy", "crash"))
    assert STEP_EXIT["abort"] > 127  # git bisect run stops


def test_outputs_are_compared_by_sqnr_and_top1():
    a = {"shape": [2, 3], "top1": [0, 2], "values": [3.0, 1.0, 0.0, 0.0, 1.0, 3.0]}
    assert compare_outputs(a, a)["sqnr_db"] == 200.0
    near = compare_outputs(a, {**a, "values": [3.0, 1.0, 0.0, 0.0, 1.0, 3.001]})
    assert near["top1_agreement"] == 1.0 and near["sqnr_db"] > 60
    flipped = compare_outputs(a, {**a, "top1": [0, 0], "values": [3.0, 1.0, 0.0, 3.0, 1.0, 0.0]})
    assert flipped["top1_agreement"] == 0.5
    assert compare_outputs(a, {**a, "shape": [3, 2]})["same_shape"] is False
    assert compare_outputs(a, None) is None
    case = make_case()
    assert not output_changed(CaseComparison(case, "compared", outputs=near))
    assert output_changed(CaseComparison(case, "compared", outputs=near), min_sqnr_db=100)
    assert output_changed(CaseComparison(case, "compared", outputs=flipped))


@pytest.mark.parametrize("first_bad, skips", [(3, set()), (1, set()), (7, set()), (4, {3, 5}), (5, {2, 3, 4})])
def test_the_binary_search_finds_the_first_bad_and_steps_around_skips(monkeypatch, first_bad, skips):
    sides = [parse_side(f"c{i}") for i in range(8)]  # c7 is the bad side
    monkeypatch.setattr(bisect_module, "candidates_between", lambda *a: sides)
    monkeypatch.setattr(bisect_module, "open_side", lambda *a, **k: None)
    judged = []

    def fake_judge(spec, good, candidate, settings, **options):
        index = int(candidate.text[1:])
        judged.append(index)
        kind = "skip" if index in skips else ("slowdown" if index >= first_bad else "good")
        return Step(candidate.text, kind, "synthetic")

    monkeypatch.setattr(bisect_module, "judge_side", fake_judge)
    result = bisect(None, "c-good", "c7", ABSettings(pairs=8))
    assert judged[0] == 7 and len(judged) == len(set(judged)) and len(judged) <= 3 + len(skips) + 1
    if first_bad - 1 in skips:  # the skipped commits before the first bad one hide it
        assert result.first_bad is None and f"c{first_bad}" in result.unresolved
    else:
        assert result.first_bad.side == f"c{first_bad}"


def test_nothing_to_find_when_the_bad_side_is_good(monkeypatch):
    monkeypatch.setattr(bisect_module, "candidates_between", lambda *a: [parse_side("x"), parse_side("y")])
    monkeypatch.setattr(bisect_module, "open_side", lambda *a, **k: None)
    monkeypatch.setattr(bisect_module, "judge_side", lambda s, g, c, st, **o: Step(c.text, "good", "same"))
    result = bisect(None, "w", "y", ABSettings(pairs=8))
    assert result.first_bad is None and [s.side for s in result.steps] == ["y"] and not result.unresolved


def test_candidates_between_git_refs_and_env_pins(tmp_path, monkeypatch):
    shas = throwaway_repo(tmp_path / "repo", {})
    found = candidates_between(parse_side("good"), parse_side("bad"), tmp_path / "repo")
    assert [c.ref for c in found] == shas[1:]
    with pytest.raises(ConfigError, match="not an ancestor"):
        candidates_between(parse_side("bad"), parse_side("good"), tmp_path / "repo")
    monkeypatch.setattr(bisect_module, "_pip_versions", lambda name: ["0.14.0", "0.15.0", "0.16.0", "0.17.0"])
    found = candidates_between(parse_side("env:torchao==0.14.0 numpy<3"), parse_side("env:numpy<3 torchao==0.17.0"))
    assert [c.requirements for c in found] == [("numpy<3", f"torchao==0.1{v}.0") for v in (5, 6, 7)]
    for good, bad in (("env:torchao==0.17.0", "env:torchao==0.14.0"), ("env:torchao==0.14.0 x==1", "env:torchao==0.17.0"),
                      ("env:torchao==0.13.5", "env:torchao==0.17.0")):
        with pytest.raises(ConfigError):
            candidates_between(parse_side(good), parse_side(bad))
    with pytest.raises(ConfigError, match="--between"):
        candidates_between(parse_side("current"), parse_side(f"python:{sys.executable}"))
    assert [c.text for c in candidates_between(parse_side("current"), parse_side("current"), between=["current"])] \
        == ["current", "current"]


# -- real runs on a throwaway repository ----------------------------------------------------------------------------

def write_suite(root: Path) -> Path:
    (root / "suite.toml").write_text(SUITE)
    return root / "suite.toml"


def test_ab_with_repo_measures_commits_of_another_repository(tmp_path):
    repo = tmp_path / "repo"
    shas = throwaway_repo(repo, {3: model_source(40)})
    done = qbench("ab", "--suite", str(write_suite(tmp_path)), "--repo", str(repo), "--a", "good", "--b", "bad",
                  "--pairs", "8", "--statistic", "min", "--format", "json", "--threshold", "latency:50%", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    (case,) = result["cases"]
    assert case["verdict"] == "slower" and case["ratio"] > 2 and case["outputs"]["sqnr_db"] == 200.0
    for label, sha in (("A", shas[0]), ("B", shas[-1])):
        origin = case["origins"][label]
        assert origin["model_commit"] == sha and f"worktree-{label}" in origin["model_module_file"]
        assert not origin["model_module_file"].startswith(str(repo))
        assert Path(origin["qbench_file"]) == source_root() / "qbench" / "__init__.py"
        assert result["sides"][label]["commit"] == sha and result["sides"][label]["repo"] == str(repo.resolve())
    assert len(subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True,
                              text=True).stdout.strip().splitlines()) == 1


def test_bisect_driver_finds_the_first_slow_commit(tmp_path):
    repo = tmp_path / "repo"
    shas = throwaway_repo(repo, {2: model_source(40)})
    done = qbench("bisect", "--suite", str(write_suite(tmp_path)), "--repo", str(repo), "--good", "good", "--bad",
                  "bad", "--pairs", "8", "--statistic", "min", "--threshold", "latency:50%", "--format", "json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["candidates"] == shas[1:]
    assert result["first_bad"]["commit"] == shas[2] and result["first_bad"]["kind"] == "slowdown"
    assert result["first_bad"]["subject"] == "change 2" and result["steps"][0]["commit"] == shas[-1]
    assert {s["commit"]: s["kind"] for s in result["steps"]}.get(shas[1], "good") == "good"
    assert "[step 1]" in done.stderr


@pytest.mark.parametrize("kind, source, code", [
    ("crash", model_source(4, "raise RuntimeError('broken on purpose')"), 5),
    ("accuracy", model_source(4, "return -self.head(x.mean((2, 3)))"), 4)])
def test_git_bisect_run_with_the_step_mode_finds_the_first_bad_commit(tmp_path, kind, source, code):
    repo = tmp_path / "repo"
    shas = throwaway_repo(repo, {3: source})
    suite = write_suite(tmp_path)
    step = [sys.executable, "-m", "qbench", "bisect", "--step", "--good", "good", "--repo", ".", "--suite",
            str(suite), "--pairs", "6", "--alpha", "0.05", "--no-progress"]
    single = qbench("bisect", "--step", "--good", "good", "--candidate", "bad", "--repo", str(repo), "--suite",
                    str(suite), "--pairs", "6", "--alpha", "0.05", "--no-progress", cwd=repo)
    assert single.returncode == code, single.stderr
    assert single.stdout.startswith(f"{shas[-1][:12]} change 4: {kind} (exit {code})")
    subprocess.run(["git", "-C", str(repo), "bisect", "start", "bad", "good"], check=True, capture_output=True)
    done = qbench("bisect", "run", *step, cwd=repo, runner=["git"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{shas[3]} is the first bad commit" in done.stdout
    aborted = qbench("bisect", "--step", "--good", "no-such-ref", "--repo", str(repo), "--suite", str(suite),
                     cwd=repo)
    assert aborted.returncode == 128 and aborted.stderr.startswith("qbench: error: unknown side 'no-such-ref'")


def test_a_candidate_that_cannot_be_prepared_is_a_skip(monkeypatch):
    def broken(*args, **kwargs):
        raise InfraError("pip install torchao==0.0.1 failed (exit 1)")

    monkeypatch.setattr(bisect_module, "open_side", broken)
    step = bisect_module.judge_side(None, None, parse_side("env:torchao==0.0.1"), ABSettings(pairs=8), threshold=0.1,
                                    kinds=bisect_module.KINDS, min_sqnr_db=40.0, repo=None, filters=None,
                                    isolation=None)
    assert step.kind == "skip" and STEP_EXIT[step.kind] == 125 and "pip install" in step.reason


def test_the_driver_needs_a_bad_side(tmp_path):
    done = qbench("bisect", "--suite", str(write_suite(tmp_path)), "--good", "HEAD", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["qbench: error: give --bad SIDE (or --step to judge one candidate "
                                                "for git bisect run)"]
