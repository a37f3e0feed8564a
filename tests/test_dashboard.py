"""`qbench publish` and the offline dashboard: real `qbench run` history at two commits, published, served on
127.0.0.1 and rendered by headless Chromium, with every request that would leave the machine caught by a proxy."""

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import asv
import pytest

from qbench.report.dashboard import VENDOR_DIR, vendor_dashboard
from qbench.errors import InfraError
from tests.factories import case_record, commit, copy_project, git, tiny_suite_text, write_run

CHROMIUM = Path("/usr/bin/chromium")
ASV_INDEX = Path(asv.__file__).parent / "www" / "index.html"
SUITE = tiny_suite_text("dash", engines=["x86"], modes=["fp32", "dynamic", "static_fx"], min_rounds=5,
                        timeout_s=None)
GRAPH = "dash.history.track_latency"
# Polls the dashboard in an iframe (same origin) until flot has drawn the main graph, then writes what it drew.
PROBE = """<!doctype html><html><body>
<iframe id="dash" src="index.html#%s" style="width:1400px;height:900px"></iframe><pre id="result">pending</pre>
<script>
function probe() {
  var w = document.getElementById("dash").contentWindow, out = document.getElementById("result");
  var $ = w.jQuery, plot = $ && $("#main-graph").data("plot");
  if (!plot || !plot.getData().length) {
    out.textContent = "pending: " + (w.document.body ? w.document.body.innerText.slice(0, 300) : "");
    setTimeout(probe, 250);
    return;
  }
  var hashes = w.$.asv.main_json.revision_to_hash;
  out.textContent = JSON.stringify({
    canvases: $("#main-graph canvas.flot-base").length,
    series: plot.getData().map(function (s) {
      return {label: s.label, commits: s.data.filter(function (p) { return p[1] !== null; })
                                            .map(function (p) { return hashes[p[0]]; })};
    })
  });
}
window.onload = probe;
</script></body></html>"""


def qbench(project, *args):
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([sys.executable, "-m", "qbench", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="session")
def chromium():
    """Debian's chromium, installed with apt-get when missing (the test machines run as root)."""
    if not CHROMIUM.exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return CHROMIUM


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
    """The published folder behind `python -m http.server --bind 127.0.0.1` on a free port; yields its origin."""
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory",
                               str(published[1])], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = re.search(r"port (\d+)", server.stdout.readline()).group(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def browse(chromium, workdir: Path, *args) -> tuple[str, list[tuple[str, str]]]:
    """Run headless Chromium with every host but 127.0.0.1 unresolvable (an air-gapped machine) and return its
    stdout and the (url, initiator) of every request it started, from its NetLog: requests a page makes carry the
    page's origin as initiator; Chromium's own background services (update checks, accounts) carry none."""
    netlog = workdir / f"netlog-{len(list(workdir.glob('netlog-*')))}.json"
    command = [str(chromium), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={workdir / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               f"--log-net-log={netlog}",
               "--window-size=1400,900", "--virtual-time-budget=20000", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, started_requests(netlog)


def started_requests(netlog: Path) -> list[tuple[str, str]]:
    text = netlog.read_text()
    try:
        log = json.loads(text)
    except json.JSONDecodeError:
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [(e["params"]["url"], e["params"].get("initiator", "")) for e in log["events"]
            if e["type"] == start and e.get("params", {}).get("url")]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_graph_of_a_qbench_metric_renders_offline_with_a_point_per_run(chromium, published, served, tmp_path):
    project, html, commits, stdout = published
    assert "exported  2 runs at 2 commits on 1 machine" in stdout
    (html / "qbench-probe.html").write_text(PROBE % GRAPH)

    dom, probed = browse(chromium, tmp_path, "--dump-dom", f"{served}/qbench-probe.html")
    shot = tmp_path / "graph.png"
    _, shown = browse(chromium, tmp_path, f"--screenshot={shot}", f"{served}/index.html#{GRAPH}")

    result = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S).group(1)
    assert not result.startswith("pending"), result
    drawn = json.loads(result.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
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
