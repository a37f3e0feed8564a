"""`qbench peaks`: this machine's bandwidth and GEMM peaks (the roofline's ceilings) at a thread count and runner
profile, measured in a fresh worker process and kept in results/<machine_id>/peaks.json."""

from __future__ import annotations

import argparse
import importlib.metadata
import json
from pathlib import Path

from qbench.cli import EXIT_OK, Command
from qbench.errors import ConfigError, InfraError
from qbench.launch.machine import collect_machine
from qbench.history.peaks import load_peaks, save_peaks
from qbench.launch.session import Session
from qbench.suite.profiles import RUNNERS, profile, unavailable_reason
from qbench.history.store import ensure_machine
from qbench.suite.load import parse_suite

__all__ = ["PeaksCommand", "COMMAND", "describe"]

PEAKS_ENTRY = "qbench.runner.probes.peaks:peaks_task"
PEAKS_TIMEOUT_S = 900.0
DEFAULT_REPEATS, DEFAULT_GEMM_N = 5, 2048
# Session wants a suite; the peaks task names no model, so any valid one does.
_SPEC = {"suite": {"name": "peaks"}, "matrix": [{"models": ["resnet18"], "modes": ["fp32"]}]}


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


def _measure(args, machine_id: str) -> dict:
    task = {"entry": PEAKS_ENTRY, "runner": args.runner, "machine_id": machine_id, "repeats": args.repeats,
            "gemm_n": args.gemm_n, "array_bytes": args.array_mb * 2**20 if args.array_mb else None}
    with Session(parse_suite(_SPEC), isolation="spawn") as session:
        outcome = session.run_task(task, args.threads, PEAKS_TIMEOUT_S, runner=args.runner)
    result = outcome.result or {}
    if result.get("status") != "ok":
        detail = result.get("reason") or outcome.pool_error or f"worker exit code {outcome.exit_code}"
        raise InfraError(f"the peaks probe failed: {detail}")
    return result["peaks"]


def describe(peaks: dict, machine_id: str, origin: str) -> str:
    """What `qbench peaks` prints: the four peaks, how each was measured, and the ridge points."""
    method = peaks["method"]
    stream, int8 = method["stream"], method["int8"]
    def probes(part: dict) -> str:
        return ", ".join(f"{name} {value:.1f}" for name, value in part["probes_gmacs"].items())

    threads = f"{peaks['threads']} thread{'s' if peaks['threads'] != 1 else ''}"
    return "\n".join([
        f"peaks of {machine_id}, runner {peaks['runner']}, {threads}, torch {peaks['torch']} "
        f"({origin} {peaks['measured_at']})",
        f"copy   {peaks['copy_gbps']:8.2f} GB/s    {stream['copy']}, {stream['array_bytes'] / 2**20:.0f} MiB each, "
        f"best of {stream['repeats']}",
        f"triad  {peaks['triad_gbps']:8.2f} GB/s    {stream['triad']}",
        f"fp32   {peaks['fp32_gmacs']:8.2f} GMAC/s  fastest of {probes(method['fp32'])} (mm n={method['fp32']['n']})",
        f"int8   {peaks['int8_gmacs']:8.2f} GMAC/s  fastest of {probes(int8)} on {int8['engine']}",
        f"ridge  fp32 {peaks['fp32_gmacs'] / peaks['triad_gbps']:.1f} MAC/B, "
        f"int8 {peaks['int8_gmacs'] / peaks['triad_gbps']:.1f} MAC/B (above: compute-bound)",
    ])


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
            peaks, origin = _measure(args, machine_id), "measured"
            save_peaks(args.results, machine_id, peaks)
        print(json.dumps(peaks, indent=2, sort_keys=True) if args.json else describe(peaks, machine_id, origin))
        if not args.json:
            print(f"stored in {Path(args.results) / machine_id / 'peaks.json'}")
        return EXIT_OK


COMMAND = PeaksCommand
