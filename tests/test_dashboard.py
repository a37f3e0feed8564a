"""`qbench publish` and the offline dashboard: real `qbench run` history at two commits, published, served on
127.0.0.1 and rendered by headless Chromium, with every request that would leave the machine caught by a proxy."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import asv
import pytest

from qbench.report.dashboard import VENDOR_DIR, vendor_dashboard
from qbench.errors import InfraError
from tests import browser
from tests.browser import browse, png_size
from tests.factories import case_record, commit, copy_project, git, tiny_suite_text, write_run

ASV_INDEX = Path(asv.__file__).parent / "www" / "index.html"
SUITE = tiny_suite_text("dash", engines=["x86"], modes=["fp32", "dynamic", "static_fx"], min_rounds=5,
                        timeout_s=None)
GRAPH = "dash.history.track_latency"


def qbench(project, *args):
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([sys.executable, "-m", "qbench", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Two real `qbench run`s of a tiny suite at two commits of a copy of this repository, then `qbench publish`."""
    root = tmp_path_factory.mktemp("dashboard")
    project = copy_project(root / "project")
    suite = root / "dash.toml"
    suite.write_text(SUITE)
    commits = []
    for message in ("B: a second commit", None):
        done = qbench(project, "run", "--suite", str(suite), "--results", "results", "--no-progress")
        assert done.returncode == 0, done.stderr
        commits.append(git(project, "rev-parse", "HEAD"))
        if message:
            commit(project, message)
    done = qbench(project, "publish", "--html", str(root / "html"))
    assert done.returncode == 0, done.stderr
    return project, root / "html", commits, done.stdout


@pytest.fixture
def served(published):
    with browser.served(published[1]) as origin:
        yield origin


@pytest.mark.slow
def test_graph_of_a_qbench_metric_renders_offline_with_a_point_per_run(chromium, published, served, tmp_path):
    project, html, commits, stdout = published
    assert "exported  2 runs at 2 commits on 1 machine" in stdout
    drawn, probed = browser.probed(chromium, tmp_path, served, html, GRAPH)
    shot = tmp_path / "graph.png"
    _, shown = browse(chromium, tmp_path, f"--screenshot={shot}", f"{served}/index.html#{GRAPH}")

    assert drawn["canvases"] == 1
    assert len(drawn["series"]) == 3
    assert all(sorted(s["commits"]) == sorted(commits) for s in drawn["series"]), drawn
    assert png_size(shot) == (1400, 900) and shot.stat().st_size > 20_000
    for requests in (probed, shown):
        by_pages = [url for url, initiator in requests if initiator == served]
        assert {f"{served}/vendor/jquery/jquery.min.js", f"{served}/vendor/flot/jquery.flot.js"} <= set(by_pages)
        assert [url for url in by_pages if not url.startswith(f"{served}/")] == []
        elsewhere = [(url, who) for url, who in requests if not url.startswith(f"{served}/")]
        assert [(url, who) for url, who in elsewhere if who != "not an origin"] == []


@pytest.mark.slow
def test_a_page_loading_from_a_cdn_is_caught(chromium, published, served, tmp_path):
    """The control for the checks above: asv's unvendored page asks for its CDN scripts, as the page's origin."""
    (published[1] / "cdn-control.html").write_text(ASV_INDEX.read_text())
    _, requests = browse(chromium, tmp_path, "--dump-dom", f"{served}/cdn-control.html")
    assert ("https://code.jquery.com/jquery-3.3.1.min.js", served) in requests


def test_vendoring_points_every_cdn_script_and_style_at_checked_copies(tmp_path):
    (tmp_path / "index.html").write_text(ASV_INDEX.read_text())
    packages = vendor_dashboard(tmp_path)
    page = (tmp_path / "index.html").read_text()
    loads = re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"', page)
    assert [u for u in loads if u.startswith("vendor/")] and not [u for u in loads if "://" in u]
    assert "integrity=" not in page and "crossorigin=" not in page
    manifest = json.loads((VENDOR_DIR / "MANIFEST.json").read_text())
    for package in manifest["packages"]:
        assert package["license"] == "MIT" and (tmp_path / "vendor" / package["license_file"]).is_file()
        for item in package["files"]:
            assert f'vendor/{item["path"]}' in loads
            assert hashlib.sha256((tmp_path / "vendor" / item["path"]).read_bytes()).hexdigest() == item["sha256"]
    assert packages == ["jquery@3.3.1", "flot@0.8.3", "flot-orderbars@1.0.0", "stupid-table-plugin@1.1.3",
                        "blueimp-md5@2.19.0", "bootstrap@3.1.1"]


def test_a_cdn_url_without_a_vendored_copy_is_an_error(tmp_path):
    (tmp_path / "index.html").write_text(ASV_INDEX.read_text().replace("jquery-3.3.1.min.js", "jquery-9.9.9.min.js"))
    with pytest.raises(InfraError, match="loads https://code.jquery.com/jquery-9.9.9.min.js, which qbench/report/vendor"):
        vendor_dashboard(tmp_path)


def test_an_altered_vendored_file_is_refused(tmp_path, monkeypatch):
    vendor = tmp_path / "vendor-copy"
    vendor.mkdir()
    for path in VENDOR_DIR.rglob("*"):
        if path.is_file():
            (vendor / path.relative_to(VENDOR_DIR)).parent.mkdir(parents=True, exist_ok=True)
            (vendor / path.relative_to(VENDOR_DIR)).write_bytes(path.read_bytes())
    (vendor / "flot" / "jquery.flot.js").write_text("window.location = 'https://example.invalid/';")
    monkeypatch.setattr("qbench.report.dashboard.VENDOR_DIR", vendor)
    (tmp_path / "html").mkdir()
    (tmp_path / "html" / "index.html").write_text(ASV_INDEX.read_text())
    with pytest.raises(InfraError, match=r"jquery.flot.js: sha256 differs from MANIFEST.json"):
        vendor_dashboard(tmp_path / "html")


@pytest.fixture
def small_project(tmp_path):
    """A repository with this asv.conf.json and hand-made history at its two commits: publish without measuring."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "asv.conf.json").write_text((Path(__file__).resolve().parent.parent / "asv.conf.json").read_text())
    git(project, "init", "-q", "-b", "main")
    commits = [commit(project, "A"), commit(project, "B")]
    for sha, started in zip(commits, ("2026-11-22T10:00:00.000000Z", "2026-11-23T10:00:00.000000Z")):
        write_run(project / "results", [case_record()], commit=sha, started_at=started, stamp=True)
    return project


def test_publish_names_a_corrupt_file_exits_3_and_publishes_the_rest(small_project):
    (broken,) = [p for p in (small_project / "results").rglob("*.jsonl") if p.name.startswith("20261123")]
    broken.write_text(broken.read_text()[:-40])
    done = qbench(small_project, "publish")
    assert done.returncode == 3
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"qbench: error: {broken}:")
    assert "exported  1 run at 1 commit on 1 machine" in done.stdout
    assert (small_project / "build/asv-html/index.html").is_file()
    assert "vendor/jquery/jquery.min.js" in (small_project / "build/asv-html/index.html").read_text()


@pytest.mark.parametrize("args, message", [
    (("--html", "results"), "would delete"),
    (("--html", "."), "would delete"),
    (("--config", "missing.json"), "asv config missing.json not found"),
    (("--results", "nowhere", "--config", "empty.json"), "nothing to publish: no qbench runs in"),
])
def test_publish_bad_input_exits_2_and_deletes_nothing(small_project, args, message):
    empty = json.loads(re.sub(r"^\s*//.*$", "", (small_project / "asv.conf.json").read_text(), flags=re.M))
    (small_project / "empty.json").write_text(json.dumps({**empty, "results_dir": "no-asv-results"}))
    before = sorted(p for p in small_project.rglob("*") if ".git" not in p.parts)
    done = qbench(small_project, "publish", *args)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("qbench: error: ") and message in line
    assert sorted(p for p in small_project.rglob("*") if ".git" not in p.parts) == before


def test_publish_says_why_no_run_could_be_shown(small_project):
    config = json.loads(re.sub(r"^\s*//.*$", "", (small_project / "asv.conf.json").read_text(), flags=re.M))
    (small_project / "no-asv.json").write_text(json.dumps({**config, "results_dir": "no-asv-results"}))
    write_run(small_project / "dirty", [case_record()], commit=git(small_project, "rev-parse", "HEAD"), dirty=True,
              stamp=True)
    done = qbench(small_project, "publish", "--results", "dirty", "--config", "no-asv.json")
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("qbench: error: nothing to publish: none of the 1 qbench runs in ")
    assert "measured uncommitted changes on top of" in line and "no asv results in " in line
