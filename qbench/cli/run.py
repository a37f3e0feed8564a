"""`qbench run`: measure every case of a suite, each in its own worker, append the run to history, print a summary."""

from __future__ import annotations

import signal
import sys
import uuid
from collections import Counter
from pathlib import Path

from qbench.cli import EXIT_INFRA, EXIT_OK, Command
from qbench.cli.common import add_suite_arguments, plan
from qbench.errors import ConfigError
from qbench.launch.machine import collect_machine
from qbench.launch.provenance import qbench_provenance
from qbench.stats.summary import summarize
from qbench.history.resume import ResumedWriter, check_resumable, find_resumable
from qbench.history.store import RunWriter, utc_now
from qbench.report.summary import render_summary


class RunCommand(Command):
    name = "run"
    help = "measure a suite and append the run to the history in --results"

    def add_arguments(self, parser):
        add_suite_arguments(parser)
        parser.add_argument("--results", default="results", help="history folder (default: results)")
        parser.add_argument("--machine", default=None,
                            help="name this machine's history folder (default: derived from its fingerprint)")
        parser.add_argument("--fail-on-error", action="store_true",
                            help="exit 3 when any case failed or timed out")
        parser.add_argument("--repeat", type=int, default=None, metavar="N",
                            help="run each case in N separate processes, in interleaved rounds (default: the "
                                 "suite's [run] repeat, else 1); comparisons test significance across processes")
        parser.add_argument("--no-progress", action="store_true", help="no progress output while running")
        parser.add_argument("--no-cache", action="store_true",
                            help="build every quantized model from scratch (default: reuse cached quantized "
                                 "artifacts, see `qbench cache`)")
        parser.add_argument("--cache-dir", default=None,
                            help="artifact cache folder (default: $QBENCH_CACHE_DIR or ~/.cache/qbench/artifacts)")
        parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="RUN",
                            help="continue a killed or interrupted run with only its missing cases, in its own file: "
                                 "the newest one of this suite (default), a run id or a run file; refused (exit 2) "
                                 "unless suite, options, machine, qbench commit and versions are the same")
        parser.add_argument("--no-peaks", action="store_true",
                            help="do not measure this machine's bandwidth and compute peaks (records then carry "
                                 "no %% of peak)")

    def run(self, args) -> int:
        if args.repeat is not None and args.repeat < 1:
            raise ConfigError(f"--repeat must be at least 1, got {args.repeat}")
        machine = collect_machine(args.machine)
        spec, session, catalog, planned = plan(args, machine)
        repeat = args.repeat or spec.run.repeat
        total = sum(1 if p.skip_reason else repeat for p in planned)
        run_id = uuid.uuid4().hex
        context = {"run_id": run_id, "suite": spec.identity(), "machine": machine, "qbench": qbench_provenance()}
        header = {**context, "started_at": utc_now(), "argv": sys.argv[1:], "planned_cases": len(planned),
                  "repeat": repeat, "filter": args.filter, "isolation": session.isolation, "shard": args.shard,
                  "runners": args.runner}
        resumed = None
        if args.resume:
            resumed, context, header = _resume(args, header, catalog, planned, session)
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        progress = _Progress(total, enabled=not args.no_progress)
        with session:
            writer = RunWriter(Path(args.results), machine, header) if resumed is None else ResumedWriter(resumed,
                                                                                                         utc_now())
            kept = [] if resumed is None else writer.kept
            progress.records.extend(kept)
            try:
                records = kept + session.run(planned, catalog=catalog, writer=writer, context=context,
                                             on_record=progress.update, repeat=repeat,
                                             done=frozenset() if resumed is None else resumed.done)
            except KeyboardInterrupt:
                path = writer.finish(_footer(context["run_id"], progress.records, interrupted=True))
                print(f"qbench: interrupted; {len(progress.records)} records kept in {path}", file=sys.stderr)
                raise
            finally:
                progress.close()
                signal.signal(signal.SIGTERM, previous)
            path = writer.finish(_footer(context["run_id"], records, interrupted=False))
        print(render_summary(records))
        print(f"history   {path} ({len(records)} records)")
        broken = [r for r in records if r.status in ("failed", "timeout")]
        return EXIT_INFRA if args.fail_on_error and broken else EXIT_OK


def _resume(args, header: dict, catalog, planned, session):
    """The run to continue, checked against this invocation, with its own run id and header."""
    try:
        found = find_resumable(Path(args.results), header["machine"]["machine_id"], header["suite"], args.resume)
        check_resumable(found, header, catalog.environment, {p.case.case_version for p in planned})
    except BaseException:
        session.close()
        raise
    context = {**{key: header[key] for key in ("suite", "machine", "qbench")}, "run_id": found.run.header["run_id"]}
    print(f"resuming  {found.run.path} ({len(found.run.records)} records kept)", file=sys.stderr)
    return found, context, found.run.header


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def _footer(run_id: str, records, interrupted: bool) -> dict:
    return {"run_id": run_id, "finished_at": utc_now(), "interrupted": interrupted,
            "counts": dict(Counter(r.status for r in records))}


class _Progress:
    """A tqdm bar on a terminal; one line per case otherwise (CI logs)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.records = total, []
        self.enabled = enabled
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True)

    def update(self, record) -> None:
        self.records.append(record)
        if not self.enabled:
            return
        latency = summarize((record.metrics.get("latency") or {}).get("samples") or [])
        figure = f"{latency.median * 1e3:.2f} ms" if latency else record.reason or ""
        if self.bar is not None:
            self.bar.set_postfix_str(f"{record.case_id} {record.status}", refresh=False)
            self.bar.update(1)
        else:
            print(f"[{len(self.records)}/{self.total}] {record.case_id} {record.status} {figure}"[:160],
                  file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


COMMAND = RunCommand
