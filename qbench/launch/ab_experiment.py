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
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from qbench.launch.ab import STATISTICS, ABSettings, Pair, pair_values, run_ab
from qbench.launch.ab_sides import open_sides, source_root
from qbench.stats.paired import compare_pairs, median_interval
from qbench.suite.load import parse_suite

__all__ = ["MODEL_MODULE", "model_source", "snapshot_repo", "commit_files", "macs", "calibration_task",
           "build_repo", "run_experiment", "summarize", "main"]

MODEL_MODULE = "abexp_model"
STEM_MACS = 3 * 16 * 9 * 16 * 16
BLOCK_MACS = 16 * 16 * 9 * 16 * 16
HEAD_MACS = 16 * 10
QUIET_BUSY = 0.6
POWER_GRID = (0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.10, 0.15, 0.20)
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


def calibration_task(task: dict) -> dict:
    """Worker entry: time Blocks(n) for every n against Blocks(base) in one process, interleaved round by round,
    by this thread's CPU time (the work, which other processes' load barely touches; torch runs one thread) and by
    wall time. Per n: median and IQR of the per-round ratios, and the ratio of the fastest rounds."""
    import importlib

    import torch

    module = importlib.import_module(MODEL_MODULE)
    x = torch.randn(1, 3, module.INPUT_SIZE, module.INPUT_SIZE)
    models = {n: module.Blocks(n).eval() for n in task["blocks"]}
    times = {clock: {n: [] for n in models} for clock in ("cpu", "wall")}
    with torch.inference_mode():
        for model in models.values():
            for _ in range(5):
                model(x)
        for _ in range(task["rounds"]):
            for n, model in models.items():
                cpu, wall = time.thread_time(), time.perf_counter()
                for _ in range(task["loops"]):
                    model(x)
                times["cpu"][n].append((time.thread_time() - cpu) / task["loops"])
                times["wall"][n].append((time.perf_counter() - wall) / task["loops"])
    return {"status": "ok", "calibration": {str(n): {clock: _ratios(series[n], series[task["base"]])
                                                      for clock, series in times.items()} for n in models}}


def _ratios(series: list[float], base: list[float]) -> dict:
    ratios = [t / b for t, b in zip(series, base)]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return {"median_ratio": median, "iqr": [q1, q3], "min_ratio": min(series) / min(base),
            "median_s": statistics.median(series)}


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
        outcome = session.run_task({"entry": "qbench.launch.ab_experiment:calibration_task", "base": base, "loops": 20,
                                    "rounds": rounds, "blocks": sorted({c["blocks"] for c in conditions.values()})},
                                   threads, 3600)
    result = outcome.result or {}
    if result.get("status") != "ok":
        raise RuntimeError(f"calibration failed: {result.get('reason') or outcome.exit_code}")
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


def _binomial_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a proportion, by bisection on the binomial tail (no scipy)."""
    tail = (1 - confidence) / 2

    def upper_tail(p: float) -> float:  # P(X >= k)
        return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))

    def solve(f, target: float) -> float:
        low, high = 0.0, 1.0
        for _ in range(60):
            middle = (low + high) / 2
            low, high = (middle, high) if f(middle) < target else (low, middle)
        return (low + high) / 2

    lower = 0.0 if k == 0 else solve(upper_tail, tail)
    upper = 1.0 if k == n else solve(lambda p: 1 - upper_tail(p) + math.comb(n, k) * p ** k * (1 - p) ** (n - k),
                                     1 - tail)
    return lower, upper


def _resampled_power(d: list[float], pairs: int, shift: float, alpha: float, sims: int, seed: int = 0) -> float:
    """Detection rate of a slowdown when a comparison draws `pairs` log-ratios from a measured A/A pool."""
    rng = random.Random(seed)
    hits = 0
    for _ in range(sims):
        _, low, _ = median_interval([rng.choice(d) + shift for _ in range(pairs)], alpha)
        hits += low > 0
    return hits / sims


def _verdicts(runs: list[dict], statistic: str, alpha: float) -> list[dict]:
    """Each compared case of these comparisons, judged again from its pairs by the current qbench.stats.paired."""
    judged = []
    for line in runs:
        for case in line["result"]["cases"]:
            if case["status"] != "compared":
                continue
            pairs = [Pair(p["a"], p["b"], p["order"], p["started_s"], p["a_min"], p["b_min"])
                     for p in case["per_pair"]]
            judged.append(compare_pairs(*pair_values(pairs, statistic), alpha).to_dict())
    return judged


def _rate(name: str, runs: list[dict], statistic: str, alpha: float) -> tuple[float, str] | None:
    """(detection rate, table row) of one condition; for A/A the rate is of any verdict other than same."""
    judged = _verdicts(runs, statistic, alpha)
    if not judged:
        return None
    slower = sum(case["verdict"] == "slower" for case in judged)
    faster = sum(case["verdict"] == "faster" for case in judged)
    hits = slower + faster if name == "A/A" else slower
    low, high = _binomial_interval(hits, len(judged))
    loads = sorted(v for line in runs for v in (line["load_before"][0], line["load_after"][0]))
    busy = [line["busy_share"] for line in runs if line.get("busy_share") is not None]
    row = (f"| {name} | {statistic} | {len(judged)} | {slower} | {faster} | {hits}/{len(judged)} = "
           f"{hits / len(judged):.0%} ({low:.0%}-{high:.0%}) | "
           f"{statistics.median(case['ratio'] for case in judged):.4f} | "
           f"{statistics.median(case['pairs'] for case in judged):g} | "
           f"{loads[0]:.2f} / {statistics.median(loads):.2f} / {loads[-1]:.2f} | "
           f"{f'{statistics.median(busy):.0%}' if busy else 'n/a'} |")
    return hits / len(judged), row


def _rate_tables(lines: list[dict], conditions: dict, alpha: float) -> list[str]:
    quiet = [line for line in lines if (line.get("busy_share") or 1.0) <= QUIET_BUSY]
    header = ["| condition | per-process statistic | comparisons | 'slower' | 'faster' | detection (A/A: false-alarm) "
              "rate, 95% CI | median B/A | median pairs | load avg 1 min min / median / max | CPUs busy (median) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    report = []
    for title, subset in (("All comparisons", lines), (f"Quiet comparisons (CPUs busy <= {QUIET_BUSY:.0%})", quiet)):
        rows, smallest = [], {}
        for statistic in STATISTICS:
            for name in conditions:
                rated = _rate(name, [line for line in subset if line["condition"] == name], statistic, alpha)
                if rated:
                    rows.append(rated[1])
                    if name != "A/A" and rated[0] >= 0.95:
                        smallest.setdefault(statistic, name)
        if rows:
            report += ["", f"{title}:", ""] + header + rows + [""] + [
                f"Smallest slowdown tried that was detected in >= 95% of comparisons, per-process {statistic}: "
                f"{smallest.get(statistic, 'none')}" for statistic in STATISTICS]
    return report


def _power_tables(lines: list[dict], alpha: float, sims: int) -> list[str]:
    pairs = [case["pairs"] for line in lines for case in line["result"]["cases"] if case["status"] == "compared"]
    aa = [line for line in lines if line["condition"] == "A/A"]
    report = []
    for statistic in STATISTICS:
        pool = [math.log(b / a) for line in aa for case in line["result"]["cases"] if case["status"] == "compared"
                for a, b in zip(*pair_values([Pair(**p) for p in case["per_pair"]], statistic))]
        if len(pool) < 50:
            continue
        centre = statistics.median(pool)
        pool = [d - centre for d in pool]
        q1, _, q3 = statistics.quantiles(pool, n=4, method="inclusive")
        n = int(statistics.median(pairs))
        powers = [_resampled_power(pool, n, math.log1p(s), alpha, sims) for s in POWER_GRID]
        report += ["", f"Resampled power, per-process {statistic}: {len(pool)} A/A pairs (centred; their median was "
                       f"{centre:+.4f}, IQR {q1:+.4f} to {q3:+.4f} after centring), {n} drawn per simulated "
                       f"comparison, {sims} simulations; optimistic, as it assumes independent pairs:", "",
                   "| slowdown | " + " | ".join(f"{s:.1%}" for s in POWER_GRID) + " |",
                   "|---|" + "---|" * len(POWER_GRID),
                   "| power | " + " | ".join(f"{p:.0%}" for p in powers) + " |"]
    return report


def summarize(out: Path, sims: int = 2000) -> str:
    meta = json.loads((out / "conditions.json").read_text())
    lines = [json.loads(line) for line in (out / "comparisons.jsonl").read_text().splitlines() if line.strip()]
    settings, conditions = meta["settings"], meta["conditions"]
    alpha = settings["alpha"]
    report = [f"# qbench ab sensitivity ({out})", "",
              f"Settings: {settings['seconds_per_case']:g} s per case pair, per-process sampling "
              f"{settings['sample_s']:g} s, {settings['threads']} thread(s), {settings['cpus']} CPUs, verdict at "
              f"{100 * (1 - alpha):g}% (false alarm <= {100 * alpha:g}% per comparison), model {MODEL_MODULE} with "
              f"{settings['blocks']} blocks; {len(lines)} comparisons. Verdicts are recomputed from the stored "
              f"pairs by the current qbench.stats.paired, for both per-process statistics.", "",
              "| condition | tag | blocks | MACs ratio | CPU-time ratio in one process (median, IQR) "
              "| wall-time ratio |", "|---|---|---|---|---|---|"]
    for name, c in conditions.items():
        cpu, wall = c["timed"]["cpu"], c["timed"]["wall"]
        report.append(f"| {name} | {c['tag']} | {c['blocks']} | {c['macs_ratio']:.4f} | {cpu['median_ratio']:.4f} "
                      f"({cpu['iqr'][0]:.4f}-{cpu['iqr'][1]:.4f}) | {wall['median_ratio']:.4f} |")
    report += _rate_tables(lines, conditions, alpha) + _power_tables(lines, alpha, sims)
    return "\n".join(report) + "\n"


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
    if not args.summarize:
        run_experiment(args.out, seconds=args.seconds, repeats=args.repeats,
                       slowdowns=[float(s) for s in args.slowdowns.split(",") if s.strip()], threads=args.threads,
                       blocks=args.blocks, sample_s=args.sample_seconds, alpha=args.alpha,
                       calibration_rounds=args.calibration_rounds, resume=args.resume)
    text = summarize(args.out)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
