"""asv, the real client, on a copy of this repository: `asv run` in the existing environment records results that
`asv compare` and `asv publish` read, and `asv continuous` with virtualenv environments builds and measures each
commit's own code (two commits with different code give different results)."""

import itertools
import os
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest
from asv.results import iter_results
from asv.util import load_json

from tests.factories import commit, copy_project, git

Project = namedtuple("Project", "path home")
ROOT = Path(__file__).resolve().parent.parent
MACHINE = "qbench-test"
RECIPE_LINE = "    mapping = build_qconfig_mapping(inputs.qconfig, inputs.engine)\n"
CONVS_IN_FLOAT = ("    mapping = build_qconfig_mapping(inputs.qconfig, inputs.engine)"
                  ".set_object_type(torch.nn.Conv2d, None)\n")


def asv(project, home, *args, timeout=900):
    """asv as a user runs it, in the project, with its machine file in `home` rather than the real $HOME."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "asv", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def project(tmp_path):
    path = copy_project(tmp_path / "project")
    home = tmp_path / "home"
    home.mkdir()
    done = asv(path, home, "machine", "--yes", "--machine", MACHINE)
    assert done.returncode == 0, done.stdout + done.stderr
    yield Project(path, home)
    shutil.rmtree(path / ".asv", ignore_errors=True)  # asv's virtualenvs: about 1 GB each


def saved_values(project, benchmark) -> dict[str, dict[tuple, float]]:
    """commit -> {params: value} of one benchmark, read back through asv's own results API."""
    params = load_json(project / "results/asv/benchmarks.json", api_version=2)[benchmark]["params"]
    return {r.commit_hash: dict(zip(itertools.product(*params), r.get_result_value(benchmark, params)))
            for r in iter_results(str(project / "results/asv")) if benchmark in r.get_all_result_keys()}


@pytest.mark.slow
def test_asv_run_records_results_that_compare_and_publish_read(project):
    (project, home), first = project, git(project.path, "rev-parse", "HEAD")
    run = ("run", "--python=same", "--machine", MACHINE, "--bench", "quick.Resnet18", "--show-stderr")
    done = asv(project, home, *run, "--set-commit-hash", first)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    second = commit(project, "B: no change")
    done = asv(project, home, *run, "--set-commit-hash", second)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    units = {name: entry["unit"] for name, entry in
             load_json(project / "results/asv/benchmarks.json", api_version=2).items()}
    assert {units[f"quick.Resnet18.track_{m}"] for m in ("latency", "throughput", "memory", "size")} == {
        "seconds", "images/s", "bytes"}
    sizes = saved_values(project, "quick.Resnet18.track_size")
    assert set(sizes) == {first, second}
    fp32, int8 = sizes[first][("'fp32'", "'x86'")], sizes[first][("'static_fx'", "'x86'")]
    assert 3.5 < fp32 / int8 < 4.5
    assert sizes[first] == sizes[second]
    moved = saved_values(project, "quick.Resnet18.track_bytes_moved")[first]
    assert moved[("'fp32'", "'x86'")] / moved[("'static_fx'", "'x86'")] > 2
    sqnr = saved_values(project, "quick.Resnet18.track_sqnr")[first]
    assert 15 < sqnr[("'static_fx'", "'x86'")] < 100

    compare = asv(project, home, "compare", "--machine", MACHINE, first, second)
    assert compare.returncode == 0, compare.stderr
    row = next(line for line in compare.stdout.splitlines()
               if "quick.Resnet18.track_size('static_fx', 'x86')" in line)
    change, before, after, ratio = (cell.strip() for cell in row.split("|")[1:5])
    assert (change, before, after, float(ratio)) == ("", "11.8M", "11.8M", 1.0)

    publish = asv(project, home, "publish")
    assert publish.returncode == 0, publish.stderr
    index = load_json(project / "build/asv-html/index.json")
    assert "quick.Resnet18.track_latency" in index["benchmarks"]
    assert set(index["revision_to_hash"].values()) == {first, second}


@pytest.mark.slow
def test_asv_continuous_measures_each_commits_own_code(project):
    """Commit B leaves convolutions in float in the static_fx recipe. asv builds each commit into its virtualenv:
    B's static_fx model is 2.6x bigger (a deterministic difference), fp32 is byte-identical, and continuous
    exits 1. Had asv measured one commit's code twice (the pitfalls in this-machine.md §1c), the sizes would match."""
    (project, home), base = project, git(project.path, "rev-parse", "HEAD")
    modes = project / "qbench/runner/registry/modes.py"
    assert modes.read_text().count(RECIPE_LINE) == 1
    modes.write_text(modes.read_text().replace(RECIPE_LINE, CONVS_IN_FLOAT))
    head = commit(project, "B: static_fx leaves convolutions in float")

    done = asv(project, home, "continuous", "--bench", "quick.Resnet18.track_size", "-f", "1.1", base, head,
               timeout=1500)

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PERFORMANCE DECREASED" in done.stdout
    assert "quick.Resnet18.track_size('static_fx', 'x86')" in done.stdout
    sizes = saved_values(project, "quick.Resnet18.track_size")
    static, fp32 = ("'static_fx'", "'x86'"), ("'fp32'", "'x86'")
    assert sizes[head][static] > 2 * sizes[base][static]
    assert sizes[head][fp32] == sizes[base][fp32]
    (env_name,) = {r.env_name for r in iter_results(str(project / "results/asv"))}
    assert env_name.startswith("virtualenv-py3.11")
