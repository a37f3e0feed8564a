"""`qbench publish`: asv's HTML dashboard of `qbench run` history and any `asv run` results, working offline."""

from __future__ import annotations

import sys
from pathlib import Path

from qbench.cli import EXIT_INFRA, EXIT_OK, Command
from qbench.report.dashboard import publish_dashboard

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

    def run(self, args) -> int:
        report = publish_dashboard(args.results, args.config, args.html, include_dirty=args.include_dirty)
        export = report.export
        print(f"exported  {_count(export.runs, 'run')} at {_count(export.commits, 'commit')} on "
              f"{_count(len(export.machines), 'machine')} into {_count(len(export.results_files), 'asv results file')}"
              f" ({', '.join(export.benchmarks) or 'no benchmarks'})")
        for line in export.skipped:
            print(f"skipped   {line}")
        if report.asv_results is not None:
            print(f"asv runs  {_shown(report.asv_results)}")
        print(f"vendored  {', '.join(report.vendored)}")
        print(f"dashboard {_shown(report.html)}")
        print(f"serve it  python -m http.server 8080 --bind 127.0.0.1 --directory {_shown(report.html)}\n"
              f"          then open http://127.0.0.1:8080/ (it needs HTTP; file:// does not work)")
        for error in export.errors:
            print(f"qbench: error: {error}", file=sys.stderr)
        return EXIT_INFRA if export.errors else EXIT_OK


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


COMMAND = PublishCommand
