"""qbench ab: the paired statistics on synthetic data, side and threshold parsing, origin checks, and real A/B runs
of two git worktrees of a scratch repository (B's model does 30 times the convolutions of A's, so B is detected as
slower with no timing threshold), including a side that would silently run the wrong code."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qbench.launch.ab import (ABReport, ABSettings, CaseComparison, Pair, is_regression, pair_values,
                              parse_latency_threshold, with_sample_seconds)
from qbench.launch.ab_sides import CodeSide, SideSpec, parse_side, resolve_ref, source_root
from qbench.launch.ab_experiment import commit_files, model_source, snapshot_repo
from qbench.report.ab import render_markdown, render_table
from qbench.stats.paired import compare_pairs, median_interval, min_pairs, verdict_of
from qbench.errors import ConfigError, InfraError
from qbench.suite.load import parse_suite
from tests.factories import ab_suite_text, make_case, simulate

SUITE = ab_suite_text("ab-tiny", "abexp_model:blocks")


# -- statistics -------------------------------------------------------------------------------------------------

def test_the_interval_is_the_sign_test_interval_of_the_median():
    # Bin(20, 1/2): P(X <= 3) = 0.0013 <= 0.005 < P(X <= 4) = 0.0059, so the 99% interval is the 4th and 17th values
    values = [float(v) for v in range(20)]
    assert median_interval(values, 0.01) == (9.5, 3.0, 16.0)
    assert median_interval(values[:8], 0.01)[1:] == (0.0, 7.0)  # 8 pairs: 2/256 < 1%, the extremes
    assert min_pairs(0.01) == 8 and min_pairs(0.05) == 6


def test_a_known_ratio_is_recovered_and_its_interval_covers_it_despite_large_common_load():
    a, b = simulate(1.10, pairs=30, seed=1)
    result = compare_pairs(a, b)
    assert result.verdict == "slower"
    assert result.low < 1.10 < result.high
    assert abs(result.ratio - 1.10) < 0.02
    assert result.pairs == 30 and result.alpha == 0.01


@pytest.mark.parametrize("shared", [0.0, 0.3])
def test_interval_coverage_is_at_least_nominal_over_many_seeds(shared):
    results = [compare_pairs(*simulate(1.05, 20, seed, shared=shared)) for seed in range(300)]
    assert sum(r.low <= 1.05 <= r.high for r in results) >= 291  # nominal 99%: 297 expected


@pytest.mark.parametrize("shared", [0.0, 0.3])
def test_a_over_a_is_the_same_and_false_alarms_stay_near_alpha(shared):
    verdicts = [compare_pairs(*simulate(1.0, 20, seed, shared=shared)).verdict for seed in range(400)]
    assert verdicts[0] == "same"
    assert sum(v != "same" for v in verdicts) <= 10  # at most 1% (4) expected


def test_faster_and_outlier_pairs():
    assert compare_pairs(*simulate(0.9, 20, seed=3)).verdict == "faster"
    a, b = simulate(1.0, 20, seed=4)
    b[0], b[1] = b[0] * 5, b[1] * 5  # two pairs hit by a burst of load on B only
    result = compare_pairs(a, b)
    assert result.verdict == "same" and abs(result.ratio - 1) < 0.03


def test_too_few_pairs_give_an_unbounded_interval_and_no_verdict():
    estimate, low, high = median_interval([0.1] * 7, 0.01)
    assert estimate == pytest.approx(0.1) and low == -math.inf and high == math.inf
    assert verdict_of(math.exp(low), math.exp(high)) == "same"
    with pytest.raises(ValueError):
        compare_pairs([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        compare_pairs([0.0], [1.0])


# -- parsing ------------------------------------------------------------------------------------------------------

def test_thresholds():
    assert parse_latency_threshold("latency:3%") == pytest.approx(0.03)
    assert parse_latency_threshold("2.5%") == pytest.approx(0.025)
    for bad in ("3", "latency:3", "latency:x%", "size:1%", "latency:-3%"):
        with pytest.raises(ConfigError):
            parse_latency_threshold(bad)


def test_regression_needs_significance_and_an_effect_above_the_threshold():
    case = make_case()
    slower = CaseComparison(case, "compared", stats=compare_pairs(*simulate(1.10, 20, seed=5)))
    assert is_regression(slower, 0.05) and not is_regression(slower, 0.20)
    same = CaseComparison(case, "compared", stats=compare_pairs(*simulate(1.0, 20, seed=6)))
    assert not is_regression(same, 0.0)
    assert not is_regression(CaseComparison(case, "failed", "side B: failed: boom"), 0.0)


def test_sides():
    assert parse_side("current") == SideSpec("current", "python", python=sys.executable)
    assert parse_side(f"python:{sys.executable}").kind == "python"
    assert parse_side("HEAD~1") == SideSpec("HEAD~1", "git", ref="HEAD~1")
    for bad in ("", "python:", "python:/no/such/python", "--upload-pack=x"):
        with pytest.raises(ConfigError):
            parse_side(bad)
    for bad in ({"pairs": 7}, {"pairs": 10, "seconds": 5.0}, {"seconds": 0.0}, {"alpha": 0.7}, {"statistic": "mean"}):
        with pytest.raises(ConfigError):
            ABSettings(**bad)
    assert ABSettings().budget_s == 60.0 and ABSettings(pairs=8).budget_s is None


def test_the_compared_statistic_and_the_sampling_time():
    pairs = [Pair(2.0, 3.0, "AB", 0.0, 1.0, 1.5), Pair(4.0, 5.0, "BA", 1.0, 3.0, 3.5)]
    assert pair_values(pairs, "median") == ([2.0, 4.0], [3.0, 5.0])
    assert pair_values(pairs, "min") == ([1.0, 3.0], [1.5, 3.5])
    with pytest.raises(InfraError, match="no CPU time"):
        pair_values(pairs, "cpu")  # a qbench that did not record CPU time per inference
    timed = [Pair(2.0, 3.0, "AB", 0.0, 1.0, 1.5, a_cpu_time=1.8, b_cpu_time=2.7),
             Pair(4.0, 5.0, "BA", 1.0, 3.0, 3.5, a_cpu_time=3.6, b_cpu_time=4.5)]
    assert pair_values(timed, "cpu") == ([1.8, 3.6], [2.7, 4.5])
    assert Pair(**timed[0].to_dict()) == timed[0]
    spec = parse_suite({"suite": {"name": "s"}, "matrix": [{"models": ["m:f"], "modes": ["fp32"]}]})
    assert with_sample_seconds(spec, None) is spec
    assert with_sample_seconds(spec, 0.1).measure.min_time_s == 0.1
    from dataclasses import replace

    adaptive = replace(spec, measure=replace(spec.measure, target_rel_ci=0.01, max_time_s=1.0))
    assert "target_rel_ci" not in with_sample_seconds(adaptive, None).measure.to_dict()  # older workers accept it
    assert with_sample_seconds(spec, 0.1).measure.min_rounds == spec.measure.min_rounds
    with pytest.raises(ConfigError):
        with_sample_seconds(spec, 0.0)


def test_unknown_ref_lists_candidates(tmp_path):
    repo = tmp_path / "repo"
    snapshot_repo(repo, {"abexp_model.py": model_source(1)}, tag="v1")
    with pytest.raises(ConfigError, match=r"unknown side 'nope'.*candidates: main, v1, HEAD~N"):
        resolve_ref(repo, parse_side("nope"))
    assert len(resolve_ref(repo, parse_side("v1"))) == 40


def test_an_origin_outside_the_side_is_refused(tmp_path):
    worktree, repo = tmp_path / "wt", tmp_path / "repo"
    side = CodeSide("B", parse_side("main"), code_root=worktree, commit="c" * 40, probe_dir=tmp_path, repo=repo)
    good = {"qbench_file": str(worktree / "qbench" / "__init__.py"), "commit": "c" * 40,
            "model_module_file": str(worktree / "abexp_model.py")}
    side.check_origin(good)
    for bad, message in (({"qbench_file": str(repo / "qbench" / "__init__.py")}, "imported qbench from"),
                         ({"commit": "d" * 40}, "is at commit"),
                         ({"model_module_file": str(repo / "abexp_model.py")}, "working tree"),
                         ({"qbench_file": None}, "did not report")):
        with pytest.raises(InfraError, match=message):
            side.check_origin({**good, **bad})


def test_renderers_show_sides_ratio_interval_and_regressions():
    case = make_case(model="m:f", mode="fp32", engine=None)
    stats = compare_pairs(*simulate(1.5, 8, seed=7))
    result = ABReport(sides={label: {"side": name, "kind": "git", "commit": label.lower() * 40, "torch": "2.13.0",
                                     "python_version": "3.11.7", "qbench_file": f"/wt-{label}/qbench/__init__.py"}
                             for label, name in (("A", "main"), ("B", "HEAD"))},
                      settings=ABSettings(pairs=8), suite={"name": "s"}, machine_id="m", started_at="t",
                      cases=[CaseComparison(case, "compared", stats=stats,
                                            pairs=[Pair(1.0, 1.5, "AB", 0.0, 0.9, 1.4)] * 8),
                             CaseComparison(make_case(), "skipped", "side B: no x86 engine")])
    table = render_table(result, 0.03)
    assert "A: main — commit aaaaaaaaaaaa, torch 2.13.0" in table
    assert f"{stats.ratio:.3f}" in table and "slower REGRESSION" in table
    assert "skipped: side B: no x86 engine" in table
    assert table.splitlines()[-1] == "1 regression(s): m:f/fp32/-/b1/t1/random"
    markdown = render_markdown(result, 0.03)
    assert "| case | pairs | A median (IQR) | B median (IQR) | B/A | 99% CI | verdict |" in markdown
    assert "99% sign-test interval" in markdown
    assert "**1 regression(s): m:f/fp32/-/b1/t1/random**" in markdown


# -- end to end: real workers in git worktrees ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A scratch repository holding this qbench source: tag `base` with a model of 2 convolution blocks, tag `slow`
    with 60 blocks (about 20 times the work), tag `noqbench` whose tree lacks the qbench package."""
    root = tmp_path_factory.mktemp("ab")
    repo = root / "repo"
    shas = {"base": snapshot_repo(repo, {"abexp_model.py": model_source(2)}, tag="base"),
            "slow": commit_files(repo, {"abexp_model.py": model_source(60)}, "slow model", "slow")}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", "-C", str(repo)]
    subprocess.run(git + ["rm", "-rq", "--cached", "qbench"], check=True)
    subprocess.run(git + ["commit", "-qm", "the tree without the qbench package"], check=True)
    subprocess.run(git + ["tag", "noqbench"], check=True)
    shas["noqbench"] = subprocess.run(git + ["rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    subprocess.run(git + ["reset", "-q", "--hard", "slow"], check=True)
    (root / "suite.toml").write_text(SUITE)
    return repo, root / "suite.toml", shas


def qbench_in(repo: Path, *args: str):
    env = {**os.environ, "PYTHONPATH": str(repo)}
    return subprocess.run([sys.executable, "-m", "qbench", "ab", *args], capture_output=True, text=True, env=env,
                          cwd=repo, timeout=600)


def test_ab_of_two_worktrees_detects_the_slower_commit_and_each_side_ran_its_own_code(scratch):
    repo, suite, shas = scratch
    done = qbench_in(repo, "--suite", str(suite), "--a", "base", "--b", "slow", "--pairs", "8", "--format", "json",
                     "--threshold", "latency:50%")
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    (case,) = report["cases"]
    assert case["verdict"] == "slower" and case["pairs"] == 8 and case["ratio"] > 2 and case["ci_low"] > 1
    assert report["regressions"] == [case["case_id"]]
    assert [p["order"] for p in case["per_pair"]] == ["BA", "AB"] * 4
    assert all(0 < p["a_cpu_time"] < p["b_cpu_time"] for p in case["per_pair"])  # CPU time per inference, too
    sides = report["sides"]
    assert sides["A"]["commit"] == shas["base"] and sides["B"]["commit"] == shas["slow"]
    for label in "AB":
        origin = case["origins"][label]
        assert origin["commit"] == sides[label]["commit"]
        assert Path(origin["qbench_file"]).is_relative_to(Path(origin["model_module_file"]).parent)
        assert f"worktree-{label}" in origin["qbench_file"] and not origin["qbench_file"].startswith(str(repo))
    assert sides["A"]["torch"] and sides["A"]["python_version"]
    worktrees = subprocess.run(["git", "-C", str(repo), "worktree", "list"], capture_output=True, text=True).stdout
    assert len(worktrees.strip().splitlines()) == 1  # both temporary worktrees were removed


def test_a_side_that_would_import_other_code_fails_instead_of_measuring(scratch):
    repo, suite, shas = scratch
    done = qbench_in(repo, "--suite", str(suite), "--a", "base", "--b", "noqbench", "--pairs", "8")
    assert done.returncode == 3, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"qbench: error: side B (noqbench @ {shas['noqbench'][:12]}): the worker imported qbench "
                           f"from ")
    assert "refusing to measure the wrong code" in line


def test_unknown_ref_is_a_one_line_error(scratch):
    repo, suite, _ = scratch
    done = qbench_in(repo, "--suite", str(suite), "--a", "base", "--b", "no-such-branch")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("qbench: error: unknown side 'no-such-branch'") and "candidates: " in line
    assert "noqbench" in line and "slow" in line


def test_python_sides_run_this_source_under_the_given_interpreter(tmp_path):
    (tmp_path / "suite.toml").write_text(SUITE.replace("abexp_model:blocks", "tests.tiny_models:convnet"))
    env = {**os.environ, "PYTHONPATH": str(source_root())}
    done = subprocess.run([sys.executable, "-m", "qbench", "ab", "--suite", str(tmp_path / "suite.toml"), "--a",
                           "current", "--b", f"python:{sys.executable}", "--pairs", "8", "--format", "markdown",
                           "--no-progress"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert done.returncode in (0, 1), done.stderr
    assert done.stdout.count(f"({source_root() / 'qbench' / '__init__.py'})") == 2
    assert "| tests.tiny_models:convnet/fp32/-/b1/t1/random | 8 |" in done.stdout


def test_ab_threshold_uses_qbench_threshold_grammar():
    from qbench.launch.ab import parse_latency_threshold
    from qbench.errors import ConfigError

    assert parse_latency_threshold("latency:3%") == parse_latency_threshold("3%") == 0.03
    for bad in ("size:3%", "latency:0.5", "latency:x"):
        with pytest.raises(ConfigError):
            parse_latency_threshold(bad)


def test_the_probe_shipped_to_each_side_and_the_parent_name_the_origin_alike():
    from qbench.launch.ab_sides import ORIGIN_KEY
    from qbench.runner.ab_probe import ORIGIN_KEY as PROBE_ORIGIN_KEY

    assert ORIGIN_KEY == PROBE_ORIGIN_KEY == "ab_origin"


def test_the_experiment_summary_rates_false_alarms_with_their_clopper_pearson_interval(tmp_path):
    """10 A/A comparisons of 20 pairs, one of them with B 20% slower in every pair: 1/10 false alarms for every
    per-process statistic, with the exact interval (0.3%-44.5%), not (0%-100%)."""
    import json
    import random

    from qbench.report.ab import summarize

    rng = random.Random(3)
    timed = {"iqr": [1.0, 1.0], "median_ratio": 1.0, "median_s": 0.01, "min_ratio": 1.0}
    (tmp_path / "conditions.json").write_text(json.dumps({
        "settings": {"seconds_per_case": 60.0, "repeats": 10, "threads": 1, "blocks": 100, "sample_s": 0.5,
                     "alpha": 0.01, "cpus": 2},
        "conditions": {"A/A": {"tag": "base", "blocks": 100, "macs_ratio": 1.0,
                               "timed": {"cpu": timed, "wall": timed}}}}))
    lines = []
    for repeat in range(10):
        factor = 1.2 if repeat == 4 else 1.0
        per_pair = []
        for index in range(20):
            a = 0.010 * (1 + rng.gauss(0, 0.01))
            b = a * factor * (1 + 0.005 * (-1) ** index)  # half the pairs B faster, half slower: no change
            per_pair.append(Pair(a, b, "AB" if index % 2 else "BA", float(index), a * 0.9, b * 0.9,
                                 a_cpu_time=a * 0.8, b_cpu_time=b * 0.8).to_dict())
        case = {"status": "compared", "per_pair": per_pair, "ratio": factor, "pairs": 20}
        lines.append(json.dumps({"condition": "A/A", "repeat": repeat, "macs_ratio": 1.0, "wall_s": 70.0,
                                 "load_before": [2.0, 2.0, 2.0], "load_after": [2.0, 2.0, 2.0], "busy_share": 0.5,
                                 "result": {"cases": [case]}}))
    (tmp_path / "comparisons.jsonl").write_text("\n".join(lines) + "\n")
    text = summarize(tmp_path, sims=50)
    for statistic in ("median", "min", "cpu"):
        assert f"| A/A | {statistic} | 10 | 1 | 0 | 1/10 = 10.0% (0.3%-44.5%) |" in text
