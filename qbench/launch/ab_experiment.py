"""The sensitivity experiment of `qbench ab`: how small a latency slowdown it detects, and how often it raises a
false alarm, on this machine, with a known slowdown that changes nothing else.

    python -m qbench.launch.ab_experiment --out /tmp/ab-exp            # measure (about 75 s per comparison), then summarize
    python -m qbench.launch.ab_experiment --out /tmp/ab-exp --resume     # go on after an interruption
    python -m qbench.launch.ab_experiment --out /tmp/ab-exp --summarize  # summarize what an earlier run measured

Design. A scratch git repository holds this qbench source and a model module, abexp_model.py: a conv stem, ONE
16-channel 3x3 convolution (identity-initialised, so values neither vanish into denormals nor overflow) applied
BLOCKS times, and a linear head. Commit `base` has BLOCKS = --blocks; commit `slow-K` differs from it only in
that number, raised by K percent, so B does K% more convolutions of the same shape on the same weights. The
slowdown's exact size is stated twice: by counting multiply-adds, and by timing the models against each other in
one worker, interleaved, over many rounds (--calibration-rounds). Every comparison is a real `qbench ab` (git
worktrees, fresh worker pools, alternating pairs) of `base` against `base` (A/A) or `slow-K`; conditions rotate
within each repeat so that the machine's load spreads over all of them. The load average is recorded before and
after each comparison. Results go to OUT/comparisons.jsonl (one line per comparison) and OUT/summary.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from qbench.errors import ConfigError, InfraError, QBenchError
from qbench.launch.ab import ABSettings, run_ab
from qbench.launch.ab_sides import open_sides, source_root
from qbench.suite.load import parse_suite

__all__ = ["MODEL_MODULE", "CALIBRATION_ENTRY", "model_source", "snapshot_repo", "commit_files", "macs",
           "build_repo", "run_experiment", "main"]

MODEL_MODULE = "abexp_model"
CALIBRATION_ENTRY = "qbench.runner.ab_calibration:calibration_task"
STEM_MACS = 3 * 16 * 9 * 16 * 16
BLOCK_MACS = 16 * 16 * 9 * 16 * 16
HEAD_MACS = 16 * 10
GIT_IDENTITY = ("-c", "user.name=qbench-ab", "-c", "user.email=qbench-ab@localhost")


def model_source(blocks: int) -> str:
    """The text of abexp_model.py with BLOCKS = blocks."""
    return f'''"""qbench ab experiment model: a conv stem, one 3x3 convolution applied BLOCKS times, a linear head."""
import torch
from torch import nn

INPUT_SIZE = 32
BLOCKS = {blocks}


class Blocks(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.blocks = blocks
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.body = nn.Conv2d(16, 16, 3, padding=1)
        nn.init.dirac_(self.body.weight)
        nn.init.zeros_(self.body.bias)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for _ in range(self.blocks):
            x = torch.relu(self.body(x))
        return self.head(x.mean((2, 3)))


def blocks():
    return Blocks(BLOCKS)
'''


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *GIT_IDENTITY, "-C", str(repo), *args], capture_output=True, text=True,
                          check=True)
    return done.stdout.strip()


def commit_files(repo: Path, files: dict[str, str], message: str, tag: str | None = None) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "--allow-empty", "-m", message)
    if tag:
        _git(repo, "tag", tag)
    return _git(repo, "rev-parse", "HEAD")


def snapshot_repo(dest: Path, files: dict[str, str], tag: str | None = None) -> str:
    """A new git repository at dest holding this qbench source as it is now (uncommitted edits included) plus
    `files`, in one commit on branch main. Returns the commit id."""
    dest.mkdir(parents=True)
    shutil.copytree(source_root() / "qbench", dest / "qbench",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _git(dest, "init", "-q", "-b", "main")
    return commit_files(dest, files, "snapshot of qbench", tag)


def macs(blocks: int) -> int:
    return STEM_MACS + blocks * BLOCK_MACS + HEAD_MACS


def build_repo(dest: Path, blocks: int, slowdowns: list[float]) -> dict[str, dict]:
    """The experiment repository: tag base, and per slowdown K a tag slow-K with K% more blocks."""
    snapshot_repo(dest, {f"{MODEL_MODULE}.py": model_source(blocks)}, tag="base")
    conditions = {"A/A": {"tag": "base", "blocks": blocks, "macs_ratio": 1.0}}
    for slowdown in slowdowns:
        more = round(blocks * (1 + slowdown / 100))
        tag = f"slow-{slowdown:g}"
        commit_files(dest, {f"{MODEL_MODULE}.py": model_source(more)}, f"{slowdown:g}% more blocks", tag)
        conditions[f"{slowdown:g}%"] = {"tag": tag, "blocks": more, "macs_ratio": macs(more) / macs(blocks)}
    return conditions


def _suite(threads: int, sample_s: float):
    return parse_suite({"suite": {"name": "ab-experiment"},
                        "matrix": [{"models": [f"{MODEL_MODULE}:blocks"], "modes": ["fp32"], "threads": [threads]}],
                        "measure": {"warmup_rounds": 3, "min_time_s": sample_s, "min_rounds": 10,
                                    "max_rounds": 100000, "timeout_s": 300.0}})


def _calibrate(repo: Path, conditions: dict, threads: int, rounds: int) -> dict:
    from qbench.launch.session import Session

    base = conditions["A/A"]["blocks"]
    spec = _suite(threads, 1.0)
    env = {"PYTHONPATH": os.pathsep.join((str(source_root()), str(repo)))}
    with Session(spec, extra_env=env) as session:
        outcome = session.run_task({"entry": CALIBRATION_ENTRY, "module": MODEL_MODULE, "base": base, "loops": 20,
                                    "rounds": rounds, "blocks": sorted({c["blocks"] for c in conditions.values()})},
                                   threads, 3600)
    result = outcome.result or {}
    if result.get("status") != "ok":
        raise InfraError(f"calibration failed: {result.get('reason') or outcome.exit_code}")
    return {name: {**c, "timed": result["calibration"][str(c["blocks"])]} for name, c in conditions.items()}


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine from /proc/stat; None where there is no /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _busy_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """Share of all CPUs busy in between (ours included: one busy core of two is 0.5)."""
    if not before or not after or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def _prepare(out: Path, *, slowdowns: list[float], threads: int, blocks: int, calibration_rounds: int,
             settings: dict, log) -> dict:
    """The scratch repository and the calibrated conditions, written to OUT/conditions.json."""
    repo = out / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    conditions = build_repo(repo, blocks, slowdowns)
    log(f"calibrating the work ratios ({calibration_rounds} interleaved rounds in one worker) ...")
    conditions = _calibrate(repo, conditions, threads, calibration_rounds)
    meta = {"settings": {**settings, "load_average_at_start": os.getloadavg(), "python": sys.executable,
                         "cpus": os.cpu_count()}, "conditions": conditions}
    (out / "conditions.json").write_text(json.dumps(meta, indent=2))
    for name, c in conditions.items():
        log(f"{name:5} {c['tag']:9} blocks {c['blocks']:4}  MACs ratio {c['macs_ratio']:.4f}  " + "  ".join(
            f"{clock} ratio {t['median_ratio']:.4f} (IQR {t['iqr'][0]:.4f}-{t['iqr'][1]:.4f}, fastest rounds "
            f"{t['min_ratio']:.4f})" for clock, t in c["timed"].items()))
    return meta


def _compare(repo: Path, spec, name: str, condition: dict, repeat: int, settings: dict) -> dict:
    """One real qbench ab of base against this condition's tag, with the machine's load around it."""
    began, load, cpu = time.time(), os.getloadavg(), _cpu_times()
    with open_sides("base", condition["tag"], root=repo) as sides:
        result = run_ab(spec, sides, ABSettings(seconds=settings["seconds_per_case"], alpha=settings["alpha"]))
    return {"condition": name, "repeat": repeat, "macs_ratio": condition["macs_ratio"],
            "wall_s": time.time() - began, "load_before": load, "load_after": os.getloadavg(),
            "busy_share": _busy_share(cpu, _cpu_times()), "result": result.to_dict()}


def _describe(line: dict, repeats: int) -> str:
    case = line["result"]["cases"][0]
    figures = (f"B/A {case['ratio']:.4f} ({case['ci_low'] or 0:.4f}-{case['ci_high'] or math.inf:.4f}), "
               f"{case['pairs']} pairs" if case["status"] == "compared" else case["reason"])
    return (f"[{line['repeat'] + 1}/{repeats}] {line['condition']:5} {case['verdict']:7} {figures}, load "
            f"{line['load_before'][0]:.2f}->{line['load_after'][0]:.2f}, CPUs busy "
            f"{line['busy_share'] or math.nan:.0%}")


def run_experiment(out: Path, *, seconds: float, repeats: int, slowdowns: list[float], threads: int, blocks: int,
                   sample_s: float, alpha: float, calibration_rounds: int, resume: bool = False, log=print) -> None:
    """Every condition `repeats` times, rotating the order per repeat. With resume, an earlier run in OUT goes on
    (same repository, calibration and settings) with the comparisons it had not done."""
    out.mkdir(parents=True, exist_ok=True)
    sink_path = out / "comparisons.jsonl"
    if resume and (out / "conditions.json").is_file():
        meta = json.loads((out / "conditions.json").read_text())
    else:
        sink_path.unlink(missing_ok=True)
        settings = {"seconds_per_case": seconds, "repeats": repeats, "threads": threads, "blocks": blocks,
                    "sample_s": sample_s, "alpha": alpha}
        meta = _prepare(out, slowdowns=slowdowns, threads=threads, blocks=blocks,
                        calibration_rounds=calibration_rounds, settings=settings, log=log)
    settings, conditions = meta["settings"], meta["conditions"]
    done = set()
    if sink_path.is_file():
        done = {(line["condition"], line["repeat"]) for line in map(json.loads, sink_path.read_text().splitlines())}
    spec, names = _suite(settings["threads"], settings["sample_s"]), list(conditions)
    with open(sink_path, "a") as sink:
        for repeat in range(settings["repeats"]):
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                if (name, repeat) in done:
                    continue
                line = _compare(out / "repo", spec, name, conditions[name], repeat, settings)
                sink.write(json.dumps(line) + "\n")
                sink.flush()
                log(_describe(line, settings["repeats"]))


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qbench.launch.ab_experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the data and the summary")
    parser.add_argument("--summarize", action="store_true", help="only summarize an earlier run in --out")
    parser.add_argument("--resume", action="store_true",
                        help="go on with an interrupted run in --out (its settings, repository and calibration)")
    parser.add_argument("--seconds", type=float, default=60.0, help="budget per case pair (default 60)")
    parser.add_argument("--repeats", type=int, default=20, help="comparisons per condition (default 20)")
    parser.add_argument("--slowdowns", default="1,2,3,5,10", help="percent, comma-separated (default 1,2,3,5,10)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=100, help="convolutions in the A model (default 100)")
    parser.add_argument("--sample-seconds", type=float, default=0.5,
                        help="latency sampling time per process (the suite's min_time_s; default 0.5)")
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--calibration-rounds", type=int, default=300)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    from qbench.report.ab import summarize  # here: qbench.report.ab imports MODEL_MODULE from this module

    try:
        if not args.summarize:
            run_experiment(args.out, seconds=args.seconds, repeats=args.repeats,
                           slowdowns=[float(s) for s in args.slowdowns.split(",") if s.strip()], threads=args.threads,
                           blocks=args.blocks, sample_s=args.sample_seconds, alpha=args.alpha,
                           calibration_rounds=args.calibration_rounds, resume=args.resume)
        text = summarize(args.out)
        (args.out / "summary.md").write_text(text)
    except ConfigError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    except (QBenchError, OSError, subprocess.CalledProcessError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
