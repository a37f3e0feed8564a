"""qbench ab across the reorganisation by stage (issue 9): side A is e180110, the last commit before the package was
split into suite/ plan/ launch/ runner/ ..., side B is HEAD. The parent (this HEAD's qbench) starts the old tree's
zygote, catalog probe and worker by their module paths and task-entry strings, so those must still resolve there.

The repository is a local `git clone` of this source's repository (same commit ids; HEAD is the committed HEAD, so
uncommitted edits are not measured). It needs the full history, as CI's checkouts have (fetch-depth: 0)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qbench.launch.ab_sides import source_root
from tests.factories import ab_suite_text

BEFORE_LAYOUT = "e180110"  # Worker builds the fp32 reference only when accuracy is on ... (the last flat-layout commit)

SUITE = ab_suite_text("ab-across-layout", "tests.tiny_models:convnet")


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    source = source_root()
    if subprocess.run(["git", "-C", str(source), "cat-file", "-e", f"{BEFORE_LAYOUT}^{{commit}}"],
                      capture_output=True).returncode != 0:
        pytest.fail(f"commit {BEFORE_LAYOUT} is not in {source}: a shallow clone? (fetch the full history)")
    root = tmp_path_factory.mktemp("ab-layout")
    repo = root / "repo"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(source), str(repo)], check=True)
    (root / "suite.toml").write_text(SUITE)
    return repo, root / "suite.toml"


def test_ab_between_the_flat_layout_and_the_staged_layout_measures_both_sides(clone):
    repo, suite = clone
    env = {**os.environ, "PYTHONPATH": str(repo)}
    done = subprocess.run([sys.executable, "-m", "qbench", "ab", "--suite", str(suite), "--a", BEFORE_LAYOUT,
                           "--b", "HEAD", "--pairs", "8", "--format", "json", "--no-progress"],
                          capture_output=True, text=True, env=env, cwd=repo, timeout=900)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    sides = report["sides"]
    assert sides["A"]["commit"] == git("rev-parse", f"{BEFORE_LAYOUT}^{{commit}}", cwd=repo)
    assert sides["B"]["commit"] == git("rev-parse", "HEAD", cwd=repo)
    (case,) = report["cases"]
    assert case["case_id"] == "tests.tiny_models:convnet/fp32/-/b1/t1/random"
    assert case["status"] == "compared" and case["pairs"] == 8
    assert case["verdict"] in ("same", "slower", "faster")
    for label in "AB":
        origin = case["origins"][label]
        assert origin["commit"] == sides[label]["commit"]
        assert f"worktree-{label}" in origin["qbench_file"] and not origin["qbench_file"].startswith(str(repo))
        assert Path(origin["qbench_file"]).is_relative_to(Path(origin["model_module_file"]).parents[1])
    assert Path(case["origins"]["A"]["qbench_file"]).parent != Path(case["origins"]["B"]["qbench_file"]).parent
    worktrees = git("worktree", "list", cwd=repo)
    assert len(worktrees.splitlines()) == 1  # both temporary worktrees were removed
