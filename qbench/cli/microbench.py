"""`qbench microbench`: the int8 kernel micro-benchmarks (pytest-benchmark) per engine × runner profile, appended to
history as suite "kernels", with pytest-benchmark's --benchmark-compare-fail as a gate CI can use."""

from __future__ import annotations

import sys

from qbench.cli import EXIT_INFRA, EXIT_REGRESSION, Command
from qbench.cli.common import add_fail_on_error, exit_for_cases
from qbench.launch.microbench import MicrobenchOptions, load_benchmark_json, run_microbench
from qbench.records import ENGINES
from qbench.suite.profiles import RUNNERS
from qbench.report.tables import microbench_table

__all__ = ["MicrobenchCommand", "COMMAND"]


class MicrobenchCommand(Command):
    name = "microbench"
    help = "benchmark int8 kernels (quantize, dequantize, quantized conv2d and linear) with pytest-benchmark"

    def add_arguments(self, parser):
        parser.add_argument("--engine", action="append", default=[], choices=ENGINES,
                            help="engine(s) to benchmark; repeatable (default: all; those that fail qbench's "
                                 "probe are recorded as skipped)")
        parser.add_argument("--runner", action="append", default=[], metavar="PROFILE",
                            help=f"runner profile(s) ({', '.join(RUNNERS)}); repeatable (default: native)")
        parser.add_argument("--results", default="results", help="history folder (default: results)")
        parser.add_argument("--shapes-from", default=None, metavar="SUITE",
                            help="benchmark every conv2d/linear shape of this suite's models (default: a small "
                                 "resnet18 + mobilenet_v2 set)")
        parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1)")
        parser.add_argument("--filter", "-k", dest="keyword", default=None, metavar="EXPR",
                            help="pytest -k expression over benchmark names, e.g. 'conv2d and x86'")
        parser.add_argument("--benchmark-storage", default=".benchmarks", metavar="DIR",
                            help="pytest-benchmark's saved runs, one folder per machine/runner/engine "
                                 "(default: .benchmarks)")
        parser.add_argument("--save", default=None, metavar="NAME", help="save this run in --benchmark-storage")
        parser.add_argument("--compare", nargs="?", const=True, default=None, metavar="NUM",
                            help="compare with the latest saved run, or with saved run NUM")
        parser.add_argument("--compare-fail", action="append", default=[], metavar="EXPR",
                            help="exit 1 when a benchmark regressed against --compare by more than EXPR "
                                 "(pytest-benchmark's grammar: min:5%%, median:10%%, mean:0.001); repeatable")
        parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke check, not a gate)")
        parser.add_argument("--slowdown", type=int, default=1, metavar="N",
                            help="run each kernel N times per timed call (a deliberate regression, to test a gate)")
        parser.add_argument("--load", action="append", default=[], metavar="JSON",
                            help="instead of running, append pytest-benchmark JSON files of benchmarks/kernels "
                                 "(--benchmark-json output, saved runs) to history; repeatable")
        add_fail_on_error(parser)

    def run(self, args) -> int:
        options = MicrobenchOptions(
            engines=tuple(dict.fromkeys(args.engine)) or ENGINES, runners=tuple(dict.fromkeys(args.runner)) or
            ("native",), threads=args.threads, compare_fail=tuple(args.compare_fail),
            storage=args.benchmark_storage, save=args.save, compare=args.compare, quick=args.quick,
            slowdown=args.slowdown, keyword=args.keyword)
        if args.load:
            result = load_benchmark_json(args.load, results=args.results)
        else:
            result = run_microbench(options, results=args.results, shapes_from=args.shapes_from,
                                    on_group=_progress)
        print(microbench_table(result.records))
        counts = {s: sum(r.status == s for r in result.records) for s in ("ok", "skipped", "failed")}
        print(f"\nbenchmarks {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed "
              f"(shapes: {result.shapes}); history {result.path}")
        for record in result.records:
            if record.status == "failed":
                print(f"failed    {record.case_id}: {record.reason}", file=sys.stderr)
        errors = [g for g in result.groups if g.error]
        for group in errors:
            print(f"qbench: error: kernel benchmarks of {group.engine} under {group.runner} did not run "
                  f"(pytest exit {group.exit_code}): {group.error}", file=sys.stderr)
        if result.gate_failed:
            print("\nregressed (--compare-fail " + " ".join(options.compare_fail) + "):")
            print("\n".join(f"  {line}" for line in result.regressions))
            return EXIT_REGRESSION
        if errors:
            return EXIT_INFRA
        return exit_for_cases(result.records, args.fail_on_error)


def _progress(group) -> None:
    state = "regressed" if group.gate_failed else ("error" if group.error else "done")
    print(f"[{group.runner}/{group.engine}] {state} in {group.wall_s:.0f} s", file=sys.stderr, flush=True)


COMMAND = MicrobenchCommand
