"""`qbench report`: write a run (or a side's runs) as report.md and report.html with plots, history's regression
list for its machines, the comparison of two sides with --compare BASE CAND, and any markdown files given with
--section. Exit 0, or 3 when a results or noise file could not be read (each named on stderr; the report of
the others is still written and lists them)."""

from __future__ import annotations

import sys
from pathlib import Path

from qbench.cli import EXIT_INFRA, EXIT_OK, Command
from qbench.cli.common import add_results_argument
from qbench.compare.policy import compare_sides, load_policy
from qbench.compare.steps import find_regressions
from qbench.errors import ConfigError
from qbench.history.series import series_metrics
from qbench.history.sides import ResultsFolder, resolve_side
from qbench.report.compare import render_markdown
from qbench.history.store import run_files
from qbench.report.document import write_report

__all__ = ["ReportCommand", "COMMAND"]


class ReportCommand(Command):
    name = "report"
    help = "write a markdown and HTML report of a run, with plots and history's regressions"

    def add_arguments(self, parser):
        add_results_argument(parser)
        parser.add_argument("--run", default="latest", metavar="SIDE",
                            help="latest (default), latest~N, a run id, a commit or a run file or folder (all its "
                                 "runs together)")
        parser.add_argument("--out", required=True, help="folder for report.md, report.html and the plots")
        parser.add_argument("--compare", nargs=2, metavar=("BASE", "CAND"), default=None,
                            help="add the comparison of two sides (as `qbench compare BASE CAND`) as a section")
        parser.add_argument("--section", action="append", default=[], metavar="FILE.md",
                            help="append this markdown file as a section titled by its first heading, else its "
                                 "name (repeatable)")

    def run(self, args) -> int:
        if not run_files(args.results):
            raise ConfigError(f"no run files under {args.results}")
        sections = [_section(Path(p)) for p in args.section]
        history = ResultsFolder(args.results)
        side = resolve_side(args.run, history)
        if args.compare:
            base, cand = (resolve_side(spec, history) for spec in args.compare)
            comparison = compare_sides(base, cand, history, results=args.results)
            sections.insert(0, (f"Comparison: {base.label} → {cand.label}", render_markdown(comparison)))
        machines = {(run.header.get("machine") or {}).get("machine_id") for run in side.runs}
        # one read of the runs, one metric's series at a time: a year of nightlies holds millions of points a metric
        series = (s for _metric, found in history.series_by_metric(series_metrics()) for s in found
                  if s.machine_id in machines)
        regressions = find_regressions(series, load_policy(args.results, machines, history.errors))
        md_path, html_path = write_report(args.out, side.runs, label=side.label, regressions=regressions,
                                          sections=sections, errors=history.errors)
        print(f"report    {md_path}\nreport    {html_path}")
        for error in history.errors:
            print(f"qbench: error: {error}", file=sys.stderr)
        return EXIT_INFRA if history.errors else EXIT_OK


def _section(path: Path) -> tuple[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--section {path}: cannot read: {exc}") from None
    lines = text.strip().splitlines()
    if lines and lines[0].startswith("#"):
        return lines[0].lstrip("#").strip(), "\n".join(lines[1:])
    return path.stem, text


COMMAND = ReportCommand
