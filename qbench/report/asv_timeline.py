"""The nightly timeline: a generated git repository with one commit per nightly, so that asv, whose x axis is the
commit, draws each nightly as its own point in time order.

asv pools everything measured at one commit of the repository it is given. Nightlies test new torch, torchvision and
torchao builds at one qbench commit, so against qbench's repository a month of them is one point. Here the
repository is generated instead: a chain of empty commits on branch `nightlies`, written by `git fast-import`, one
per nightly in the order they started, each dated when its first run started and whose message names the qbench
commit and the versions measured. The same nightlies give the same commits (fixed author and dates), so a
nightly's hash, and the dashboard's links to it, stay put when later nightlies are added. The first nightly of each
qbench commit is tagged `qbench-<sha8>`: asv draws tags as labelled vertical lines, so the timeline shows where
qbench itself changed.

asv shows a commit by its hash (hover: "value @ hash") and opens `show_commit_url` + hash on a click; `nightly.html`,
written next to the dashboard, is that page: one row per nightly, its hash as anchor, naming date, qbench commit,
torch, torchvision, torchao, machines and runs (python and the kernel-steering variables are series, chosen in
asv's side panel).
"""

from __future__ import annotations

import datetime
import html
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from qbench.errors import InfraError

__all__ = ["BRANCH", "NIGHTLY_PAGE", "Nightly", "build_timeline", "write_nightly_page"]

BRANCH = "nightlies"
NIGHTLY_PAGE = "nightly.html"
AUTHOR = "qbench <qbench@localhost>"
VERSIONS = ("torch", "torchvision", "torchao")


@dataclass
class Nightly:
    """One point of the timeline: what one qbench commit measured with one set of torch builds in one night (UTC
    day), on any machine, with any python and kernel-steering variables (those are series of the point)."""
    commit: str
    builds: dict
    night: str
    started_at: str
    key: tuple = ()
    machines: set[str] = field(default_factory=set)
    runs: set[str] = field(default_factory=set)
    hash: str | None = None

    @property
    def timestamp(self) -> int:
        return int(datetime.datetime.fromisoformat(self.started_at.replace("Z", "+00:00")).timestamp())

    @property
    def versions(self) -> str:
        return ", ".join(f"{name} {self.builds.get(name)}" for name in VERSIONS if self.builds.get(name))

    @property
    def label(self) -> str:
        return f"{self.night} {self.versions or 'no torch version recorded'} at qbench {self.commit[:8]}"

    def message(self) -> str:
        return (f"nightly {self.label}\n\nqbench {self.commit}\n{self.versions}\nstarted {self.started_at}\n"
                f"machines {', '.join(sorted(self.machines))}\nruns {', '.join(sorted(self.runs))}\n")


def build_timeline(path: Path, nightlies: list[Nightly]) -> None:
    """Create the repository at `path` and set each nightly's `hash`; `nightlies` in time order."""
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", BRANCH)
    stream, tags = [], []
    for number, nightly in enumerate(nightlies, start=1):
        message = nightly.message().encode()
        stamp = f"{nightly.timestamp} +0000"
        stream += [f"commit refs/heads/{BRANCH}", f"mark :{number}", f"author {AUTHOR} {stamp}",
                   f"committer {AUTHOR} {stamp}", f"data {len(message)}", message.decode()]
        if number > 1:
            stream.append(f"from :{number - 1}")
        stream.append("")
        tag = f"qbench-{nightly.commit[:8]}"
        if tag not in {name for name, _ in tags}:
            tags.append((tag, number))
    for tag, number in tags:
        stream += [f"reset refs/tags/{tag}", f"from :{number}", ""]
    marks = path / ".git" / "qbench-marks"
    _git(path, "fast-import", "--quiet", f"--export-marks={marks}", stdin="\n".join(stream) + "\n")
    hashes = dict(line.split() for line in marks.read_text().splitlines())
    for number, nightly in enumerate(nightlies, start=1):
        nightly.hash = hashes[f":{number}"]
    _git(path, "checkout", "-q", BRANCH)


def _git(path: Path, *args: str, stdin: str | None = None) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=path, input=stdin, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InfraError(f"git {args[0]} for the nightly timeline failed: {exc}") from None
    if done.returncode != 0:
        raise InfraError(f"git {args[0]} for the nightly timeline failed: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout


def write_nightly_page(html_dir: Path, nightlies: list[Nightly], hash_length: int) -> Path:
    """nightly.html (the page a click on a point opens) and nightlies.json (the same, for programs)."""
    rows = []
    for nightly in reversed(nightlies):
        cells = [nightly.hash[:hash_length], nightly.night, nightly.commit[:8],
                 *(nightly.builds.get(name) for name in VERSIONS), ", ".join(sorted(nightly.machines)),
                 len(nightly.runs)]
        rows.append(f'<tr id="{nightly.hash}">' + "".join(f"<td>{html.escape(str(c or ''))}</td>" for c in cells)
                    + "</tr>")
    head = "".join(f"<th>{name}</th>" for name in ("point", "night", "qbench", *VERSIONS, "machines", "runs"))
    page = (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>qbench nightlies</title><style>"
            f"body{{font-family:sans-serif}}td,th{{padding:2px 8px;text-align:left}}tr:target{{background:#ffd}}"
            f"</style></head><body><h1>qbench nightlies</h1><p>Each point of the <a href=\"index.html\">nightly "
            f"dashboard</a> is one row, newest first; a click on a point opens its row.</p><table><tr>{head}</tr>"
            f"{''.join(rows)}</table></body></html>\n")
    (html_dir / NIGHTLY_PAGE).write_text(page)
    listing = [{"hash": n.hash, "label": n.label, "night": n.night, "started_at": n.started_at,
                "qbench_commit": n.commit, **{name: n.builds.get(name) for name in VERSIONS},
                "machines": sorted(n.machines), "runs": sorted(n.runs)} for n in nightlies]
    (html_dir / "nightlies.json").write_text(json.dumps(listing, indent=1) + "\n")
    return html_dir / NIGHTLY_PAGE
