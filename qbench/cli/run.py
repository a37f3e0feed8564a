"""`qbench run`: measure every case of a suite, each in its own worker, append the run to history, print a summary."""

from __future__ import annotations

import sys
from pathlib import Path

from qbench.cli import Command
from qbench.cli.common import add_fail_on_error, add_results_argument, add_suite_arguments, exit_for_cases
from qbench.errors import ConfigError
from qbench.data.sets import fetch_suite_sets
from qbench.launch.lifecycle import open_run
from qbench.launch.machine import collect_machine
from qbench.history.resume import check_resumable, find_resumable
from qbench.launch.provenance import qbench_provenance
from qbench.plan.plan import plan
from qbench.report.summary import render_summary
from qbench.stats.summary import summarize


class RunCommand(Command):
    name = "run"
    help = "measure a suite and append the run to the history in --results"

    def add_arguments(self, parser):
        add_suite_arguments(parser)
        add_results_argument(parser)
        parser.add_argument("--machine", default=None,
                            help="name this machine's history folder (default: derived from its fingerprint)")
        add_fail_on_error(parser)
        parser.add_argument("--repeat", type=int, default=None, metavar="N",
                            help="run each case in N separate processes, in interleaved rounds (default: the "
                                 "suite's [run] repeat, else 1); comparisons test significance across processes")
        parser.add_argument("--no-progress", action="store_true", help="no progress output while running")
        parser.add_argument("--no-cache", action="store_true",
                            help="build every quantized model from scratch (default: reuse cached quantized "
                                 "artifacts, see `qbench cache`)")
        parser.add_argument("--cache-dir", default=None,
                            help="artifact cache folder (default: $QBENCH_CACHE_DIR or ~/.cache/qbench/artifacts)")
        parser.add_argument("--offline", action="store_true",
                            help="never download pretrained weights or data sets (also QBENCH_OFFLINE=1): a missing "
                                 "file is a one-line error")
        parser.add_argument("--mirror", default=None, metavar="URL",
                            help="base URL replacing the host of every download (also QBENCH_MIRROR)")
        parser.add_argument("--weights-manifest", default=None, metavar="FILE",
                            help="declare stand-in checkpoints for torchvision's file names, verified by their full "
                                 "sha256 and recorded as such (also QBENCH_WEIGHTS_MANIFEST; "
                                 "qbench.runner.registry.hub)")
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
        try:
            for line in fetch_suite_sets(spec, session.extra_env):
                print(line, file=sys.stderr)
        except BaseException:
            session.close()
            raise
        repeat = args.repeat or spec.run.repeat
        total = sum(1 if p.skip_reason else repeat for p in planned)
        progress = _Progress(total, enabled=not args.no_progress)
        header = {"planned_cases": len(planned), "repeat": repeat, "filter": args.filter,
                  "isolation": session.isolation, "shard": args.shard, "runners": args.runner}
        resume = _resumable(args, header, spec, machine, catalog, planned, session) if args.resume else None
        run = None
        try:
            with session, open_run(spec.identity(), machine, args.results, resume=resume, **header) as run:
                progress.records.extend(run.records)
                session.run(planned, catalog=catalog, writer=run, context=run.context, on_record=progress.update,
                            repeat=repeat, done=resume.done if resume else frozenset())
        except KeyboardInterrupt:
            if run is not None:
                print(f"qbench: interrupted; {len(run.records)} records kept in {run.path}", file=sys.stderr)
            raise
        finally:
            progress.close()
        print(render_summary(run.records))
        print(f"history   {run.path} ({len(run.records)} records)")
        return exit_for_cases(run.records, args.fail_on_error)


def _resumable(args, header: dict, spec, machine: dict, catalog, planned, session):
    """The killed or interrupted run to continue, checked against this invocation (a one-line refusal otherwise)."""
    try:
        found = find_resumable(Path(args.results), machine["machine_id"], spec.identity(), args.resume)
        check_resumable(found, {**header, "suite": spec.identity(), "machine": machine,
                                "qbench": qbench_provenance()}, catalog.environment,
                        {p.case.case_version for p in planned})
    except BaseException:
        session.close()
        raise
    print(f"resuming  {found.run.path} ({len(found.run.records)} records kept)", file=sys.stderr)
    return found


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
