"""The nightly timeline on the dashboard: 30 nightlies at ONE qbench commit, each with another torch build, are 30
points in time order on `qbench publish`'s nightlies view, labelled with their versions, while the commits view
keeps one point per qbench commit; checked in asv's published files and in headless Chromium."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import browser
from tests.browser import browse, png_size
from qbench.report.dashboard import COMMIT_BUILDS
from tests.factories import ENVIRONMENT, MACHINE, case_record, commit, git, write_run

NIGHTS = 30
REGRESSED_FROM = 20  # nightly index whose torch build is 30% slower on the int8 case
GRAPH = "t.history.track_latency"
INT8 = "t.history.track_latency('resnet18', 'static_fx/x86', 1, 1, 'random')"


def torch_build(night: int) -> dict:
    day = f"202601{night + 1:02d}"
    return {**ENVIRONMENT, "torch": f"2.13.0.dev{day}+cpu", "torchvision": f"0.28.0.dev{day}",
            "torchao": f"0.16.0.dev{day}"}


def qbench(project, *args):
    return subprocess.run([sys.executable, "-m", "qbench", *args], cwd=project, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A repository with one commit and 30 nightly runs at it (nights written out of order), published."""
    project = tmp_path_factory.mktemp("nightlies") / "project"
    project.mkdir()
    (project / "asv.conf.json").write_text((Path(__file__).resolve().parent.parent / "asv.conf.json").read_text())
    git(project, "init", "-q", "-b", "main")
    sha = commit(project, "the one qbench commit")
    for night in sorted(range(NIGHTS), key=lambda n: (n * 7) % NIGHTS):
        slower = 1.3 if night >= REGRESSED_FROM else 1.0
        records = [case_record(samples=tuple(s * slower for s in (0.010, 0.011, 0.012)), environment=torch_build(night)),
                   case_record(mode="fp32", engine=None, samples=(0.040, 0.041, 0.042), environment=torch_build(night))]
        write_run(project / "results", records, commit=sha, started_at=f"2026-01-{night + 1:02d}T02:00:00.000000Z",
                  stamp=True)
    done = qbench(project, "publish")
    assert done.returncode == 0, done.stderr
    return project / "build" / "asv-html", sha, done.stdout


def load(path: Path):
    return json.loads(path.read_text())


def test_thirty_nightlies_at_one_commit_are_thirty_points_in_time_order_with_their_versions(published):
    html, sha, stdout = published
    assert f"timeline  {NIGHTS} nightlies, 2026-01-01 to 2026-01-30 at 1 qbench commit" in stdout
    index = load(html / "nightlies" / "index.json")
    listing = load(html / "nightlies" / "nightlies.json")
    revisions = sorted(index["revision_to_hash"], key=int)
    dates = [index["revision_to_date"][r] for r in revisions]
    assert len(revisions) == NIGHTS and dates == sorted(dates) and len(set(dates)) == NIGHTS
    label_of = {n["hash"]: n for n in listing}
    in_order = [label_of[index["revision_to_hash"][r]] for r in revisions]
    assert [n["torch"] for n in in_order] == [torch_build(night)["torch"] for night in range(NIGHTS)]
    assert all(n["qbench_commit"] == sha and n["torchao"] in n["label"] and n["torchvision"] in n["label"]
               for n in in_order)
    assert index["tags"] == {f"qbench-{sha[:8]}": int(revisions[0])}
    assert "torch" not in index["params"] and index["params"]["branch"] == ["nightlies"]
    (graph,) = [p for p in (html / "nightlies" / "graphs").rglob(f"{GRAPH}.json") if "summary" not in p.parts]
    points = load(graph)
    assert [str(p[0]) for p in points] == revisions
    int8 = [p[1][1] for p in points]  # params product order: fp32 first, then static_fx/x86
    assert max(int8[:REGRESSED_FROM]) < 0.012 < 0.0140 < min(int8[REGRESSED_FROM:])
    page = (html / "nightlies" / "nightly.html").read_text()
    assert all(f'<tr id="{n["hash"]}">' in page and n["torch"] in page for n in listing)
    assert index["show_commit_url"] == "nightly.html#"


def test_the_regressions_page_names_the_nightly_whose_torch_build_regressed(published):
    html, _, _ = published
    index = load(html / "nightlies" / "index.json")
    listing = {n["hash"]: n for n in load(html / "nightlies" / "nightlies.json")}
    (found,) = [r for r in load(html / "nightlies" / "regressions.json")["regressions"] if r[0] == INT8]
    (jump,) = found[-1]
    before, after = (listing[index["revision_to_hash"][str(r)]] for r in (jump[1] - 1, jump[1]))
    assert after["torch"] == torch_build(REGRESSED_FROM)["torch"]
    assert before["torch"] == torch_build(REGRESSED_FROM - 1)["torch"]


def test_the_commits_view_keeps_one_point_per_commit_and_each_recent_build_its_own_series(published):
    html, sha, stdout = published
    kept = COMMIT_BUILDS
    assert f"exported  {kept} runs at 1 commit on 1 machine into {kept} asv results files" in stdout
    assert (f"skipped   commits view of {MACHINE['machine_id']}: {NIGHTS - kept} older torch build sets left out (it keeps the "
            f"{kept} most recent; the nightlies view shows every night)") in stdout
    index = load(html / "index.json")
    assert list(index["revision_to_hash"].values()) == [sha]
    assert sorted(index["params"]["torch"]) == sorted(torch_build(n)["torch"] for n in range(NIGHTS - kept, NIGHTS))
    graphs = [p for p in html.rglob(f"{GRAPH}.json") if "summary" not in p.parts and "nightlies" not in p.parts]
    assert len(graphs) == kept and all(len(load(p)) == 1 for p in graphs)


def test_the_commits_view_keeps_every_build_when_asked(published, tmp_path):
    html, _, _ = published
    done = qbench(html.parent.parent, "publish", "--view", "commits", "--commit-builds", "all",
                  "--html", str(tmp_path / "all"))
    assert done.returncode == 0, done.stderr
    assert f"into {NIGHTS} asv results files" in done.stdout and "older torch build" not in done.stdout
    assert sorted(load(tmp_path / "all" / "index.json")["params"]["torch"]) == sorted(
        torch_build(n)["torch"] for n in range(NIGHTS))
    bad = qbench(html.parent.parent, "publish", "--commit-builds", "0", "--html", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "a whole number >= 1, or all" in bad.stderr and "Traceback" not in bad.stderr


def test_publishing_again_gives_the_same_nightly_hashes(published, tmp_path):
    html, _, _ = published
    project = html.parent.parent
    done = qbench(project, "publish", "--view", "nightlies", "--html", str(tmp_path / "again"))
    assert done.returncode == 0, done.stderr
    assert load(tmp_path / "again" / "nightlies.json") == load(html / "nightlies" / "nightlies.json")
    assert (tmp_path / "again" / "index.html").is_file() and not (tmp_path / "again" / "nightlies").exists()


@pytest.mark.slow
def test_chromium_draws_thirty_separate_points_at_one_commit(chromium, published, tmp_path):
    html, sha, _ = published
    listing = load(html / "nightlies" / "nightlies.json")
    with browser.served(html) as origin:
        drawn, requests = browser.probed(chromium, tmp_path, f"{origin}/nightlies", html / "nightlies", GRAPH)
        shot = Path(os.environ.get("QBENCH_SCREENSHOT") or tmp_path / "nightlies.png")
        browse(chromium, tmp_path, f"--screenshot={shot}", f"{origin}/nightlies/index.html#{GRAPH}")
        nightly_page, _ = browse(chromium, tmp_path, "--dump-dom",
                                 f"{origin}/nightlies/nightly.html#{listing[REGRESSED_FROM]['hash']}")
        commits_view, _ = browser.probed(chromium, tmp_path, origin, html, GRAPH)
        hover_shot = shot.with_name(shot.stem + "-hover.png")
        hover = browser.hovered(chromium, tmp_path, f"{origin}/nightlies", html / "nightlies", GRAPH, 1,
                                REGRESSED_FROM, ["qbench-nightly-label"], screenshot=hover_shot)
    assert drawn["canvases"] == 1 and len(drawn["series"]) == 2
    for series in drawn["series"]:
        assert series["commits"] == [n["hash"] for n in listing]
    int8 = [value for _, value in drawn["series"][1]["points"]]
    assert max(int8[:REGRESSED_FROM]) < min(int8[REGRESSED_FROM:])
    assert drawn["tags"] == [f"qbench-{sha[:8]}"]
    assert png_size(shot) == (1400, 900) and shot.stat().st_size > 20_000
    assert listing[REGRESSED_FROM]["torch"] in nightly_page
    assert [url for url, who in requests if who.startswith("http") and not url.startswith(origin)] == []
    assert len(commits_view["series"]) == 2 * COMMIT_BUILDS and all(s["commits"] == [sha] for s in commits_view["series"])
    regressed = listing[REGRESSED_FROM]
    assert hover["qbench-nightly-label"] == regressed["label"] and regressed["torch"] in regressed["label"]
    assert hover["tooltip"].endswith(f"@ {regressed['hash'][:8]}")
    assert png_size(hover_shot) == (1400, 900)


def test_the_commits_view_alone_publishes_no_timeline(published, tmp_path):
    html, _, _ = published
    done = qbench(html.parent.parent, "publish", "--view", "commits", "--html", str(tmp_path / "commits"))
    assert done.returncode == 0, done.stderr
    assert "timeline" not in done.stdout and f"exported  {COMMIT_BUILDS} runs at 1 commit" in done.stdout
    assert (tmp_path / "commits" / "index.json").is_file() and not (tmp_path / "commits" / "nightlies").exists()


def test_a_nightlies_view_with_nothing_to_show_is_bad_input(published, tmp_path):
    html, _, _ = published
    done = qbench(html.parent.parent, "publish", "--view", "nightlies", "--results", str(tmp_path / "none"),
                  "--html", str(tmp_path / "out"))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("qbench: error: nothing to publish: no qbench runs in ")
