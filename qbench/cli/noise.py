"""`qbench noise`: run a suite's cases N times in separate processes (A/A repeats, interleaved rounds, the same
worker path as `qbench run`), keep the run in history, and write per-case thresholds to
results/<machine_id>/noise.json for compare and history."""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from pathlib import Path

from qbench.cli import EXIT_OK, Command
from qbench.cli.common import add_suite_arguments, plan
from qbench.errors import ConfigError
from qbench.launch.machine import collect_machine
from qbench.history.noise import estimate_thresholds, noise_document, write_noise
from qbench.launch.provenance import qbench_provenance
from qbench.history.store import RunWriter, utc_now

__all__ = ["NoiseCommand", "COMMAND"]

DEFAULT_REPEATS = 5


class NoiseCommand(Command):
    name = "noise"
    help = "measure A/A noise by repeating a suite's cases and write per-case thresholds (noise.json)"

    def add_arguments(self, parser):
        add_suite_arguments(parser)
        parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, metavar="N",
                            help=f"processes per case, at least 2 (default: {DEFAULT_REPEATS})")
        parser.add_argument("--results", default="results", help="history folder (default: results)")
        parser.add_argument("--machine", default=None,
                            help="the history folder's machine name, as given to qbench run --machine")
        parser.add_argument("--no-progress", action="store_true", help="no progress output while running")

    def run(self, args) -> int:
        if args.repeats < 2:
            raise ConfigError(f"--repeats must be at least 2 to measure noise, got {args.repeats}")
        machine = collect_machine(args.machine)
        spec, session, catalog, planned = plan(args)
        run_id = uuid.uuid4().hex
        context = {"run_id": run_id, "suite": spec.identity(), "machine": machine, "qbench": qbench_provenance()}
        header = {**context, "started_at": utc_now(), "argv": sys.argv[1:], "planned_cases": len(planned),
                  "repeat": args.repeats, "filter": args.filter, "isolation": session.isolation}
        total = sum(1 if p.skip_reason else args.repeats for p in planned)
        done = []

        def progress(record):
            done.append(record)
            if not args.no_progress:
                print(f"[{len(done)}/{total}] {record.case_id} {record.status}", file=sys.stderr, flush=True)

        with session:
            writer = RunWriter(Path(args.results), machine, header)
            try:
                records = session.run(planned, catalog=catalog, writer=writer, context=context, on_record=progress,
                                      repeat=args.repeats)
            except KeyboardInterrupt:
                writer.finish(_footer(run_id, done, interrupted=True))
                raise
            history = writer.finish(_footer(run_id, records, interrupted=False))
        thresholds = estimate_thresholds(records)
        path = write_noise(args.results, noise_document(machine["machine_id"], spec.identity(), args.repeats,
                                                        thresholds))
        print(_table(records, thresholds))
        print(f"noise     {path} ({len(thresholds)} cases, {args.repeats} repeats)")
        print(f"history   {history} ({len(records)} records)")
        return EXIT_OK


def _footer(run_id: str, records, interrupted: bool) -> dict:
    return {"run_id": run_id, "finished_at": utc_now(), "interrupted": interrupted,
            "counts": dict(Counter(r.status for r in records))}


def _table(records, thresholds: dict[str, dict[str, float]]) -> str:
    from tabulate import tabulate

    ok = Counter(r.case_id for r in records if r.status == "ok")
    rows = [[case_id, ok[case_id], *(f"{by_metric[m] * 100:.1f}%" if m in by_metric else "-"
                                      for m in ("latency", "throughput", "memory"))]
            for case_id, by_metric in thresholds.items()]
    skipped = sorted({r.case_id for r in records} - set(thresholds))
    text = tabulate(rows, headers=["case", "ok repeats", "latency", "throughput", "memory"], tablefmt="simple")
    if skipped:
        text += "\nno threshold (fewer than 2 ok repeats): " + ", ".join(skipped)
    return text


COMMAND = NoiseCommand
