"""`qbench peaks`: this machine's bandwidth and GEMM peaks (the roofline's ceilings) at a thread count and runner
profile, measured in a fresh worker process and kept in results/<machine_id>/peaks.json."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path

from qbench.cli import EXIT_OK, Command
from qbench.errors import ConfigError
from qbench.history.peaks import load_peaks, save_peaks
from qbench.history.store import ensure_machine
from qbench.launch.machine import collect_machine
from qbench.launch.peaks import DEFAULT_GEMM_N, DEFAULT_REPEATS, measure_machine_peaks
from qbench.report.tables import peaks_description
from qbench.suite.profiles import RUNNERS, profile, unavailable_reason

__all__ = ["PeaksCommand", "COMMAND"]



def _torch_version() -> str | None:
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


class PeaksCommand(Command):
    name = "peaks"
    help = "measure this machine's copy/triad bandwidth and fp32/int8 GEMM peaks (the roofline's ceilings)"

    def add_arguments(self, parser):
        parser.add_argument("--results", default="results", help="results folder (peaks go to <machine>/peaks.json)")
        parser.add_argument("--threads", type=_positive, default=1, help="torch threads to measure at (default 1)")
        parser.add_argument("--runner", default="native", help=f"ISA profile: {', '.join(RUNNERS)}")
        parser.add_argument("--machine", default=None, help="name to file results under instead of the derived id")
        parser.add_argument("--force", action="store_true", help="measure again even when peaks are stored")
        parser.add_argument("--json", action="store_true", help="print the peaks as JSON")
        parser.add_argument("--repeats", type=_positive, default=DEFAULT_REPEATS,
                            help="runs per kernel; the best counts (default 5)")
        parser.add_argument("--gemm-n", type=_positive, default=DEFAULT_GEMM_N,
                            help="GEMM size n (n x n x n; default 2048)")
        parser.add_argument("--array-mb", type=_positive, default=None,
                            help="STREAM array size in MiB (default 4x the last-level cache; smaller measures cache). "
                                 "Any size option measures anew and stores the result with its sizes")

    def run(self, args) -> int:
        args.runner = profile(args.runner).name
        machine = collect_machine(args.machine)
        reason = unavailable_reason(args.runner, machine)
        if reason:
            raise ConfigError(reason)
        machine_id, version = machine["machine_id"], _torch_version()
        # Read first: a corrupt peaks.json stops the command before minutes of measuring, and is never replaced.
        peaks = load_peaks(args.results, machine_id, args.runner, args.threads, version) if version else None
        custom = args.array_mb is not None or args.gemm_n != DEFAULT_GEMM_N or args.repeats != DEFAULT_REPEATS
        origin = "stored, measured"
        if peaks is None or args.force or custom:
            ensure_machine(Path(args.results), machine)
            peaks, origin = measure_machine_peaks(machine_id, args.runner, args.threads, repeats=args.repeats,
                                                  gemm_n=args.gemm_n, array_mb=args.array_mb), "measured"
            save_peaks(args.results, machine_id, peaks)
        print(json.dumps(peaks, indent=2, sort_keys=True) if args.json else peaks_description(peaks, machine_id, origin))
        if not args.json:
            print(f"stored in {Path(args.results) / machine_id / 'peaks.json'}")
        return EXIT_OK


COMMAND = PeaksCommand
