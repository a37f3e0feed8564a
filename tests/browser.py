"""Headless Chromium for the dashboard tests: Debian's chromium (installed with apt-get when missing), run with every
host but 127.0.0.1 unresolvable (an air-gapped machine) and a NetLog of every request it started; a published
dashboard folder served by `python -m http.server --bind 127.0.0.1`; a probe page that waits, in an iframe of the
same origin, until asv's flot graph is drawn and writes what it drew."""

from __future__ import annotations

import contextlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# Polls the dashboard in an iframe (same origin) until flot has drawn the main graph, then writes what it drew: per
# series its label and its points as (commit hash, value), in the order flot holds them.
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
    tags: $("#main-graph div").filter(function () { return this.style.top === "-2ex"; })
                              .map(function () { return $(this).text(); }).get(),
    series: plot.getData().map(function (s) {
      var shown = s.data.filter(function (p) { return p[1] !== null; });
      return {label: s.label, commits: shown.map(function (p) { return hashes[p[0]]; }),
              points: shown.map(function (p) { return [hashes[p[0]], p[1]]; })};
    })
  });
}
window.onload = probe;
</script></body></html>"""


# Waits like PROBE, then moves the mouse onto point %d of series %d and writes the text of asv's tooltip and of
# every element whose id is listed, once shown. The page stays as it is, for a screenshot of the hover.
HOVER = """<!doctype html><html><body style="margin:0">
<iframe id="dash" src="index.html#%s" style="width:1400px;height:860px;border:0"></iframe><pre id="result">pending</pre>
<script>
function hover() {
  var w = document.getElementById("dash").contentWindow, out = document.getElementById("result");
  var $ = w.jQuery, plot = $ && $("#main-graph").data("plot");
  if (!plot || !plot.getData().length) { setTimeout(hover, 250); return; }
  var series = plot.getData()[%d], point = series.data[%d];
  var at = plot.pointOffset({x: point[0], y: point[1]}), origin = $("#main-graph").offset();
  $("#main-graph canvas.flot-overlay").trigger($.Event("mousemove", {pageX: origin.left + at.left,
                                                                      pageY: origin.top + at.top}));
  setTimeout(function () {
    var shown = {tooltip: $(".tooltip-inner").text()};
    $.each(%s, function (i, id) { shown[id] = $("#" + id).is(":visible") ? $("#" + id).text() : null; });
    out.textContent = JSON.stringify(shown);
  }, 300);
}
window.onload = hover;
</script></body></html>"""


def ensure_chromium() -> Path:
    if not CHROMIUM.exists():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return CHROMIUM


@contextlib.contextmanager
def served(folder: Path):
    """`folder` behind `python -m http.server --bind 127.0.0.1` on a free port; yields its origin."""
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory",
                               str(folder)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = re.search(r"port (\d+)", server.stdout.readline()).group(1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def browse(chromium, workdir: Path, *args, budget_ms: int = 20000) -> tuple[str, list[tuple[str, str]]]:
    """Run headless Chromium and return its stdout and the (url, initiator) of every request it started, from its
    NetLog: requests a page makes carry the page's origin as initiator; Chromium's own background services (update
    checks, accounts) carry none."""
    netlog = workdir / f"netlog-{len(list(workdir.glob('netlog-*')))}.json"
    command = [str(chromium), "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run",
               f"--user-data-dir={workdir / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
               f"--log-net-log={netlog}",
               "--window-size=1400,900", f"--virtual-time-budget={budget_ms}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, started_requests(netlog)


def probed(chromium, workdir: Path, origin: str, html: Path, graph: str) -> tuple[dict, list[tuple[str, str]]]:
    """What flot drew for `graph` on the dashboard in `html`, served at `origin` (PROBE), and the requests made."""
    (html / "qbench-probe.html").write_text(PROBE % graph)
    dom, requests = browse(chromium, workdir, "--dump-dom", f"{origin}/qbench-probe.html")
    result = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S).group(1)
    assert not result.startswith("pending"), result
    return json.loads(result.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")), requests


def hovered(chromium, workdir: Path, origin: str, html: Path, graph: str, series: int, point: int, ids: list[str],
            screenshot: Path | None = None) -> dict:
    """What the dashboard shows with the mouse on a point of `graph` (HOVER); a screenshot of that when asked."""
    (html / "qbench-hover.html").write_text(HOVER % (graph, series, point, json.dumps(ids)))
    dom, _ = browse(chromium, workdir, "--dump-dom", f"{origin}/qbench-hover.html")
    if screenshot is not None:
        browse(chromium, workdir, f"--screenshot={screenshot}", f"{origin}/qbench-hover.html")
    result = re.search(r'<pre id="result">(.*?)</pre>', dom, re.S).group(1)
    assert not result.startswith("pending"), result
    return json.loads(result.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))


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
