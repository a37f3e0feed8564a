"""How long the dashboard of N nightlies of the full grid takes to publish and to load (a measurement script, not a
test; figures go in notes): a synthetic history (qbench.history.synthetic: suites/nightly.toml's cases, repeat 3,
records cloned from tests/fixtures/records, a new torch build every night) at ONE commit of a scratch repository,
then `qbench publish` (both views) timed with its peak RSS (of the largest process: qbench or its `asv publish`), the
size of the published folder, and the time headless Chromium takes from opening a page to flot having drawn the
graph, for the nightlies view, the commits view and asv's benchmark grid (the landing page).

    .venv/bin/qbench list --suite nightly --json > build/dashboard-scale/nightly-cases.jsonl
    .venv/bin/python benchmarks/dashboard/measure_publish.py --nights 30
    .venv/bin/python benchmarks/dashboard/measure_publish.py --nights 90 --generate 30
    .venv/bin/python benchmarks/dashboard/measure_publish.py --nights 365 --view nightlies \
        --store /work/scale/build/scale/store-365      # a store v2 folder of qbench.history.synthetic, copied

With --view nightlies it also checks, in Chromium, that every series of the latency graph is drawn in the order of
nightlies.json (time order), and takes a screenshot of the graph (<out>/nights-N/nightlies-latency.png).

Page load times come from Chromium's own log timestamps (wall clock) of two console lines the probe page writes:
before it opens the dashboard in an iframe and when flot has drawn the graph; the page is served by
`python -m http.server` on 127.0.0.1, so network time is local. Chromium runs with --virtual-time-budget, which
skips only idle waits (the probe's polling interval), not work.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from qbench.history import synthetic  # noqa: E402
from tests.browser import browse, ensure_chromium, probed, served  # noqa: E402
from tests.factories import commit, git  # noqa: E402

TEMPLATES = ROOT / "tests" / "fixtures" / "records"
PROBE = """<!doctype html><html><body><pre id="result">pending</pre><script>
console.log("qbench-probe start");
var frame = document.createElement("iframe");
frame.style.width = "1400px"; frame.style.height = "900px"; frame.src = %s;
document.body.appendChild(frame);
function probe() {
  var w = frame.contentWindow, $ = w.jQuery;
  var drawn = $ && (%s);
  if (!drawn) { setTimeout(probe, 20); return; }
  console.log("qbench-probe drawn " + drawn);
  document.getElementById("result").textContent = "drawn " + drawn;
}
probe();
</script></body></html>"""
GRAPH_DRAWN = '$("#main-graph").data("plot") && $("#main-graph").data("plot").getData().length'
GRID_DRAWN = '$(".benchmark-plot canvas.flot-base").length'
LOG_TIME = re.compile(r"^\[\d+:\d+:\d{4}/(\d{2})(\d{2})(\d{2})\.(\d{6}):INFO:CONSOLE[^\]]*\] \"qbench-probe (\w+)")


def build_history(out: Path, nights: int, plan: Path, generated: int) -> tuple[Path, float]:
    """The scratch repository and its history, generated once and kept (out/project/.done): `generated` nights by
    qbench.history.synthetic, the rest copies of those with their own dates, torch builds and run ids."""
    project = out / "project"
    if (project / ".done").exists():
        return project, 0.0
    shutil.rmtree(project, ignore_errors=True)
    earlier = out.parent / f"nights-{generated}" / "project"
    start = time.perf_counter()
    if generated < nights and (earlier / ".done").exists():  # reuse the generated nights of an earlier measurement
        out.mkdir(parents=True, exist_ok=True)
        git(out, "clone", "-q", str(earlier), str(project))
        shutil.copytree(earlier / "results", project / "results")
        paths = sorted((project / "results").glob("*/runs/*/*.jsonl"))
    else:
        project.mkdir(parents=True)
        shutil.copy2(ROOT / "asv.conf.json", project / "asv.conf.json")
        (project / ".gitignore").write_text("results/\nbuild/\n.done\n")
        git(project, "init", "-q", "-b", "main")
        synthetic.COMMIT = commit(project, "the one qbench commit of the synthetic nightlies")
        paths = synthetic.generate(project / "results", synthetic.load_plan(plan),
                                   synthetic.load_templates(TEMPLATES), min(nights, generated), repeat=3)
    for night in range(len(paths), nights):
        clone_night(paths[night % len(paths)], night)
    (project / ".done").touch()
    return project, time.perf_counter() - start


def adopt_store(out: Path, store: Path) -> tuple[Path, float]:
    """A scratch repository whose one commit the runs of a store v2 results folder (qbench.history.synthetic's
    output, read-only) name: the folder is copied into it with its fake commit (synthetic.COMMIT) replaced by the
    repository's, in the summary column, the record JSON and the run header; the rest is untouched. Kept
    (out/project/.done)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    project = out / "project"
    if (project / ".done").exists():
        return project, 0.0
    shutil.rmtree(project, ignore_errors=True)
    start = time.perf_counter()
    project.mkdir(parents=True)
    shutil.copy2(ROOT / "asv.conf.json", project / "asv.conf.json")
    (project / ".gitignore").write_text("results/\nbuild/\n.done\n")
    git(project, "init", "-q", "-b", "main")
    sha = commit(project, "the one qbench commit of the synthetic nightlies")
    for source in sorted(store.rglob("*")):
        target = project / "results" / source.relative_to(store)
        if source.is_dir():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix != ".parquet":
            shutil.copy2(source, target)
            continue
        table = pq.read_table(source)
        for name in ("qbench_commit", "json_qbench"):
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, pc.replace_substring(table[name], synthetic.COMMIT, sha))
        metadata = {k: v.replace(synthetic.COMMIT.encode(), sha.encode()) for k, v in table.schema.metadata.items()}
        pq.write_table(table.replace_schema_metadata(metadata), target, compression="zstd")
    (project / ".done").touch()
    return project, time.perf_counter() - start


def clone_night(template: Path, night: int) -> Path:
    """A copy of a generated night's run file as night `night`: its dates (hence its torch build) and run id
    replaced in the text, so the store and the export see a night of its own."""
    source_day = datetime.datetime.strptime(template.name[:8], "%Y%m%d")
    day = synthetic.FIRST_NIGHT + datetime.timedelta(days=night)
    header = json.loads(template.open().readline())
    run_id = uuid.uuid4().hex
    text = template.read_text().replace(header["run_id"], run_id)
    text = text.replace(f"{source_day:%Y-%m-%d}", f"{day:%Y-%m-%d}").replace(f"{source_day:%Y%m%d}", f"{day:%Y%m%d}")
    folder = template.parents[1] / f"{day:%Y-%m}"
    folder.mkdir(exist_ok=True)
    target = folder / (template.name.replace(template.name[:8], f"{day:%Y%m%d}", 1)
                       .replace(header["run_id"][:8], run_id[:8]))
    target.write_text(text)
    return target


def folder_size(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def page_load_s(chromium, workdir: Path, origin: str, html: Path, page: str, drawn: str) -> tuple[float, str]:
    (html / "qbench-load-probe.html").write_text(PROBE % (json.dumps(page), drawn))
    browse(chromium, workdir, "--enable-logging", "--v=0", "--dump-dom",
                  f"{origin}/qbench-load-probe.html", budget_ms=600_000)
    log = workdir / "profile" / "chrome_debug.log"
    times, what = {}, ""
    for line in log.read_text(errors="replace").splitlines():
        found = LOG_TIME.match(line)
        if found:
            h, m, s, us, event = found.groups()
            times[event] = int(h) * 3600 + int(m) * 60 + int(s) + int(us) / 1e6
            what = line.split("qbench-probe ", 1)[1].split('"')[0]
    log.unlink()
    if "drawn" not in times:
        raise SystemExit(f"the probe of {page} never saw the graph drawn")
    return times["drawn"] - times["start"], what


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nights", type=int, required=True)
    parser.add_argument("--out", default=str(ROOT / "build" / "dashboard-scale"))
    parser.add_argument("--plan", default=None, help="qbench list --suite nightly --json output")
    parser.add_argument("--generate", type=int, default=None,
                        help="nights generated by qbench.history.synthetic (default all); later nights are copies "
                             "of them with their own dates, builds and run ids (same values, same sizes)")
    parser.add_argument("--loads", type=int, default=3, help="page loads per page (the minimum is reported)")
    parser.add_argument("--store", default=None,
                        help="a store v2 results folder of synthetic nightlies (python -m qbench.history.synthetic), "
                             "copied with its commit replaced, instead of generating JSON lines")
    parser.add_argument("--view", choices=["commits", "nightlies", "both"], default="both",
                        help="qbench publish --view (default both)")
    args = parser.parse_args()
    out = Path(args.out) / f"nights-{args.nights}"
    plan = Path(args.plan) if args.plan else Path(args.out) / "nightly-cases.jsonl"
    if args.store:
        project, generated_s = adopt_store(out, Path(args.store))
    else:
        project, generated_s = build_history(out, args.nights, plan, args.generate or args.nights)
    history_bytes, history_files = folder_size(project / "results")
    kind = "of store v2 (Parquet)" if args.store else "of JSON lines"
    print(f"history   {args.nights} nightlies, {history_files} files, {history_bytes / 2**20:.0f} MiB {kind} "
          f"(made in {generated_s:.0f} s)")
    shutil.rmtree(project / "build", ignore_errors=True)  # an interrupted publish leaves a folder publish refuses
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "qbench", "publish", "--view", args.view], cwd=project,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    publish_s = time.perf_counter() - start
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mib, cpu_s = children.ru_maxrss / 1024, children.ru_utime + children.ru_stime
    print("\n".join(done.stdout.strip().splitlines()[:2]) if done.returncode == 0 else done.stderr)
    if done.returncode != 0:
        return 1
    html = project / "build" / "asv-html"
    nightlies_html = html if args.view == "nightlies" else html / "nightlies"
    total, files = folder_size(html)
    nightly_bytes, nightly_files = folder_size(nightlies_html) if args.view != "commits" else (0, 0)
    print(f"publish   {publish_s:.1f} s wall, {cpu_s:.1f} s CPU (user+sys, qbench and asv publish), "
          f"peak RSS {peak_mib:.0f} MiB (largest process), load average {os.getloadavg()[0]:.2f} after")
    print(f"html      {total / 2**20:.1f} MiB in {files} files: commits view {(total - nightly_bytes) / 2**20:.1f} MiB "
          f"in {files - nightly_files} files, nightlies view {nightly_bytes / 2**20:.1f} MiB in {nightly_files} files")
    chromium = ensure_chromium()
    workdir = out / "chromium"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir()
    # the records' suite names the benchmark (the synthetic history keeps its templates' suite name)
    index = (nightlies_html if args.view != "commits" else html) / "index.json"
    graph = next(name for name in json.loads(index.read_text())["benchmarks"]
                 if name.endswith(".history.track_latency"))
    pages = []
    if args.view != "commits":
        graph_files = sorted(nightlies_html.glob(f"graphs/**/{graph}.json"))
        print(f"graph     nightlies view, {graph}: {len(graph_files)} file(s), "
              f"{', '.join(str(p.stat().st_size) for p in graph_files)} bytes")
        pages += [("nightlies view, latency graph", nightlies_html, f"index.html#{graph}", GRAPH_DRAWN),
                  ("nightlies view, benchmark grid", nightlies_html, "index.html", GRID_DRAWN)]
    if args.view != "nightlies":
        pages.insert(1, ("commits view, latency graph", html, f"index.html#{graph}", GRAPH_DRAWN))
    with served(html) as origin:
        for name, folder, page, drawn in pages:
            prefix = origin + "/" + str(folder.relative_to(html)).strip(".")
            loads = [page_load_s(chromium, workdir, prefix.rstrip("/"), folder, page, drawn)
                     for _ in range(args.loads)]
            best = min(s for s, _ in loads)
            print(f"load      {name}: {best:.2f} s to drawn (min of {args.loads}: "
                  f"{', '.join(f'{s:.2f}' for s, _ in loads)}; {loads[0][1]}), load average "
                  f"{os.getloadavg()[0]:.2f}")
        if args.view != "commits":
            prefix = (origin + "/" + str(nightlies_html.relative_to(html)).strip(".")).rstrip("/")
            drawn, _ = probed(chromium, workdir, prefix, nightlies_html, graph)
            order = [n["hash"] for n in json.loads((nightlies_html / "nightlies.json").read_text())]
            in_order = all(s["commits"] == [h for h in order if h in s["commits"]] for s in drawn["series"])
            points = [len(s["commits"]) for s in drawn["series"]]
            shot = out / "nightlies-latency.png"
            browse(chromium, workdir, f"--screenshot={shot}", f"{prefix}/qbench-probe.html")
            print(f"drawn     nightlies view, latency graph: {len(points)} series of {min(points)} to {max(points)} "
                  f"points (of {len(order)} nightlies), each in time order: {in_order}; screenshot {shot}")
    print(f"at        {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M}Z, "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
