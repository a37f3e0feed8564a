"""`qbench publish`: asv's HTML dashboard of `qbench run` history and any `asv run` results, working offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from qbench.cli import EXIT_INFRA, EXIT_OK, Command
from qbench.report.dashboard import COMMIT_BUILDS, VIEWS, publish_dashboard

__all__ = ["PublishCommand", "COMMAND"]


class PublishCommand(Command):
    name = "publish"
    help = "export qbench history to asv's format and publish asv's dashboard so that it works without internet"

    def add_arguments(self, parser):
        parser.add_argument("--results", default="results", help="qbench history folder (default: results)")
        parser.add_argument("--html", default=None,
                            help="output folder, replaced on every publish (default: the asv config's html_dir)")
        parser.add_argument("--config", default="asv.conf.json",
                            help="asv config naming the repository and asv's own results (default: asv.conf.json)")
        parser.add_argument("--include-dirty", action="store_true",
                            help="also export runs of uncommitted changes, as points of the commit they started from")
        parser.add_argument("--view", choices=[*VIEWS, "both"], default="both",
                            help="commits: one point per qbench commit and environment, in --html; nightlies: one "
                                 "point per nightly in time order, labelled with its torch builds, in "
                                 "<html>/nightlies (in --html when it is the only view); default both")
        parser.add_argument("--commit-builds", type=_builds, default=COMMIT_BUILDS, metavar="N",
                            help="the commits view keeps each machine's N most recently run torch/torchvision/"
                                 "torchao build sets, each a series of its own there, so that a year of nightly "
                                 f"builds does not grow it without bound (default {COMMIT_BUILDS}; all: every one)")

    def run(self, args) -> int:
        views = VIEWS if args.view == "both" else (args.view,)
        report = publish_dashboard(args.results, args.config, args.html, include_dirty=args.include_dirty,
                                   views=views, commit_builds=args.commit_builds)
        export = report.export or report.nightlies
        if report.export is not None:
            benchmarks = ", ".join(export.benchmarks) or "no benchmarks"
            print(f"exported  {_count(export.runs, 'run')} at {_count(export.commits, 'commit')} on "
                  f"{_count(len(export.machines), 'machine')} into "
                  f"{_count(len(export.results_files), 'asv results file')} ({benchmarks})")
        if report.nightlies is not None:
            nightlies = report.nightlies.nightlies
            span = f", {nightlies[0].night} to {nightlies[-1].night}" if nightlies else ""
            print(f"timeline  {_count(len(nightlies), 'nightly')}{span} at "
                  f"{_count(report.nightlies.commits, 'qbench commit')}: one point each, in time order")
        for line in export.skipped:
            print(f"skipped   {line}")
        if report.asv_results is not None and report.export is not None:
            print(f"asv runs  {_shown(report.asv_results)}")
        print(f"vendored  {', '.join(report.vendored)}")
        if report.export is not None:
            print(f"dashboard {_shown(report.html)}  (x axis: qbench commits)")
        if report.nightlies_html is not None:
            print(f"nightlies {_shown(report.nightlies_html)}  (x axis: nightlies; a click on a point opens its row "
                  f"of nightly.html)")
        print(f"serve it  python -m http.server 8080 --bind 127.0.0.1 --directory {_shown(report.html)}\n"
              f"          then open http://127.0.0.1:8080/ (it needs HTTP; file:// does not work)")
        for error in export.errors:
            print(f"qbench: error: {error}", file=sys.stderr)
        return EXIT_INFRA if export.errors else EXIT_OK


def _builds(text: str) -> int | None:
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number >= 1, or all")
    return int(text)


def _count(n: int, noun: str) -> str:
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


COMMAND = PublishCommand
