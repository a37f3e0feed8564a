"""`qbench export`: write runs in another tool's format, today the PyTorch OSS benchmark database's schema v3
(qbench.report.oss_benchmark), one `<run file name>.json` per run in --out: the folder the `upload-benchmark-results`
action of pytorch/test-infra uploads (its `benchmark-results-dir`). Exit 0; 2 on bad input (an unknown run, --out a
file, no runs); 3 when a run file or record could not be read (named one a line; the rest is exported)."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from pathlib import Path

from qbench.cli import EXIT_INFRA, EXIT_OK, Command
from qbench.errors import ConfigError
from qbench.history.sides import ResultsFolder, resolve_side
from qbench.report.oss_benchmark import BENCHMARK_NAME, run_to_records

__all__ = ["ExportCommand", "COMMAND"]

FORMATS = ("oss-v3",)


def _stem(path: Path) -> str:
    return path.name.split(".jsonl")[0].removesuffix(".parquet")


class ExportCommand(Command):
    name = "export"
    help = "export runs as PyTorch OSS benchmark database records (schema v3) for HUD's dashboards"

    def add_arguments(self, parser):
        parser.add_argument("runs", nargs="*", metavar="RUN",
                            help="latest, latest~N, a run id, a commit, or a run file or folder (default: every run)")
        parser.add_argument("--results", default="results", help="history folder (default: results)")
        parser.add_argument("--machine", default=None, metavar="ID", help="only runs of this machine id")
        parser.add_argument("--format", choices=FORMATS, default="oss-v3", help="output format (default oss-v3)")
        parser.add_argument("--out", required=True, metavar="DIR", help="folder for one <run>.json per run")
        parser.add_argument("--benchmark-name", default=BENCHMARK_NAME,
                            help=f"benchmark.name of every record (default {BENCHMARK_NAME})")

    def run(self, args) -> int:
        history = ResultsFolder.of_machine(args.results, args.machine)
        runs = history.runs
        if args.runs:
            chosen = {}
            for spec in args.runs:
                for run in resolve_side(spec, history).runs:
                    chosen[run.path.resolve()] = run
            runs = list(chosen.values())
        if not runs:
            raise ConfigError(f"no readable runs under {args.results}")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out} is a file; it must be a folder")
        out.mkdir(parents=True, exist_ok=True)
        written, statuses = 0, Counter()
        for run in runs:
            records, counts = run_to_records(run, args.benchmark_name)
            statuses.update(counts)
            target = out / f"{_stem(run.path)}.json"
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            with open(tmp, "w", encoding="utf-8") as handle:  # a JSON list, written one record at a time
                handle.write("[")
                for number, record in enumerate(records):
                    handle.write(("," if number else "") + json.dumps(record, allow_nan=False))
                    written += 1
                handle.write("]\n")
            os.replace(tmp, target)
        left = ", ".join(f"{statuses[s]} {s}" for s in ("skipped", "failed", "timeout") if statuses[s])
        print(f"exported {len(runs)} run{'' if len(runs) == 1 else 's'} into {out}: {written} metric records from "
              f"{statuses['ok']} ok records" + (f"; no measurement, left out: {left}" if left else ""))
        for error in history.errors:
            print(f"qbench: error: {error}", file=sys.stderr)
        return EXIT_INFRA if history.errors else EXIT_OK


COMMAND = ExportCommand
