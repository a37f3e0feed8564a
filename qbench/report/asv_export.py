"""Export `qbench run` history into asv's results format, so that `asv publish` shows it without measuring again.

Written with asv's own classes, so asv reads it back like its own results:
  <results_dir>/<machine_id>/machine.json          one asv machine per qbench machine fingerprint (asv.machine.Machine)
  <results_dir>/<machine_id>/<sha8>-<env>.json     one file per commit and environment (asv.results.Results, version 2)
  <results_dir>/benchmarks.json                    entries `<suite>.history.track_<metric>` (asv.benchmarks.Benchmarks)

asv's x axis is the commit. Two views of one history:
  commits    (the default) every record measured at one qbench commit, on one machine, with one environment (python,
             torch, torchvision, torchao and the kernel-steering variables) pools its samples into one point of
             qbench's repository; the versions are graph parameters, so each environment is its own series.
  nightlies  (timeline=) one commit of a generated repository per (qbench commit, environment, night), in time
             order (qbench.report.asv_timeline); the versions label the point instead of splitting the series, so
             a torch regression between two nightlies at one qbench commit is a step in one line.
The benchmark's parameters are the case's axes (model, mode/engine, batch, threads, weights). Runs at a commit the
repository does not know or the dashboard does not show, and runs of uncommitted code (unless asked), are left out
and said so, in both views. History is read once, one run at a time, into pools of values (qbench.report.asv_pool),
so memory grows with the number of values asv will plot, not with the records read; a compacted run is pooled from
its summary columns without parsing its records (qbench.report.asv_columns).

asv is imported only where files are written: benchmarks/ import this module inside asv's virtualenvs, which hold
asv_runner but not asv.
"""

from __future__ import annotations

import datetime
import itertools
import math
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from qbench.errors import ConfigError, StoreError
from qbench.metrics import METRICS, Metric
from qbench.records import ENGINES, MODES, mode_rank
from qbench.history.store import RunFile, read_run_file, run_files
from qbench.report.asv_columns import MachineAt, pool_summary, summary_for
from qbench.report.asv_pool import REQUIREMENTS, CasePool, Pool, metric_samples, steering_variables
from qbench.report.asv_timeline import Nightly, build_timeline

__all__ = ["CASE_PARAMS", "EXPORT_VERSION", "ExportReport", "ShownHistory", "asv_unit", "metric_samples",
           "metric_value", "benchmark_name", "read_history", "export_history", "export_shown"]

# Bump when the meaning of exported values changes: asv ignores results whose version differs from benchmarks.json.
EXPORT_VERSION = "qbench-history-1"
CASE_PARAMS = ("model", "mode/engine", "batch", "threads", "weights")
ASV_UNITS = {"s": "seconds"}


def asv_unit(metric: Metric) -> str:
    """asv scales the axes of "seconds" and "bytes"; any other unit is shown as it is."""
    return ASV_UNITS.get(metric.unit, metric.unit)


def metric_value(samples: list[float]) -> float | None:
    """The point asv plots for pooled samples: asv's own median estimate (what asv stores for them, too): the first
    value of asv_runner.statistics.compute_stats, which is quantile(samples, 0.5); called directly, because
    compute_stats also computes a confidence interval (binomial sums), which asv's add_result computes anyway."""
    from asv_runner.statistics import quantile

    if not samples:
        return None
    return samples[0] if len(samples) == 1 else quantile(samples, 0.5)


def benchmark_name(suite: str, metric: str) -> str:
    return f"{re.sub(r'[^0-9A-Za-z_]', '_', suite) or 'suite'}.history.track_{metric}"


@dataclass
class ExportReport:
    results_files: list[Path] = field(default_factory=list)
    machines: list[str] = field(default_factory=list)
    benchmarks: list[str] = field(default_factory=list)
    runs: int = 0
    commits: int = 0
    nightlies: list[Nightly] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[StoreError] = field(default_factory=list)


@dataclass
class ShownHistory:
    """What the dashboard can show, read once for both views: the pools (qbench.report.asv_pool) of the runs shown,
    the latest fingerprint of each machine, and what was left out and why."""
    git: object
    pools: dict[tuple, Pool] = field(default_factory=dict)
    machines: dict[str, tuple[str, dict]] = field(default_factory=dict)
    runs: int = 0
    skipped: list[str] = field(default_factory=list)
    errors: list[StoreError] = field(default_factory=list)


def read_history(history: Path | str, repo: Path | str, *, branches: list[str] | None = None,
                 include_dirty: bool = False) -> ShownHistory:
    """Stream the runs under `history` into pools, one run at a time, leaving out those that cannot be placed:
    `repo` is the git repository whose commits the runs name, `branches` the ones the dashboard shows (asv publish
    draws no point for a commit on none of them; None: any commit of the repository)."""
    git = _repository(Path(repo))
    shown = ShownHistory(git=git)
    on_branches = None if branches is None else _branch_commits(git, branches, Path(repo))
    known: dict[str, bool] = {}
    for path in run_files(Path(history)):
        try:
            run = read_run_file(path)
            columns = summary_for(run)  # a compacted run's summary columns; None: read its records
            has_records = bool(columns["run_id"]) if columns is not None else bool(run.records)
        except StoreError as exc:
            shown.errors.append(exc)
            continue
        shown.errors.extend(run.rejected)
        commit = (run.header.get("qbench") or {}).get("commit")
        if commit and commit not in known:
            known[commit] = bool(git.get_revisions({commit}))
        reason = _skip_reason(run, has_records, known, on_branches, branches, include_dirty)
        if reason:
            shown.skipped.append(f"{run.path}: {reason}")
            continue
        shown.runs += 1
        started, night = run.header["started_at"], run.header["started_at"][:10]
        if columns is not None:
            pool_summary(columns, run, started, night, shown.pools, shown.machines)
            continue
        for record in run.records:
            key = Pool.key(record, night)
            shown.pools.setdefault(key, Pool.empty(key, started)).add(record, started)
            machine_id = key[0]
            if machine_id not in shown.machines or record.started_at > shown.machines[machine_id][0]:
                shown.machines[machine_id] = (record.started_at, record.machine)
    for machine_id, (started_at, machine) in shown.machines.items():
        if isinstance(machine, MachineAt):
            try:
                shown.machines[machine_id] = (started_at, machine.machine())
            except StoreError as exc:
                shown.errors.append(exc)
                shown.machines[machine_id] = (started_at, {"machine_id": machine_id})
    return shown


def export_history(history: Path | str, results_dir: Path | str, repo: Path | str, *,
                   branches: list[str] | None = None, include_dirty: bool = False,
                   timeline: Path | str | None = None) -> ExportReport:
    """read_history, then export_shown."""
    return export_shown(read_history(history, repo, branches=branches, include_dirty=include_dirty), results_dir,
                        timeline=timeline)


def export_shown(shown: ShownHistory, results_dir: Path | str, *, timeline: Path | str | None = None,
                 recent_builds: int | None = None) -> ExportReport:
    """Write the shown runs into asv's results tree `results_dir`. Files already there (asv's own results) are
    kept; exported files are rewritten from history, so exporting twice gives the same tree.

    recent_builds (commits view only): keep each machine's most recent `recent_builds` sets of torch builds (by
    their latest night), since every set is a series of its own there and a year of nightly builds would make the
    view grow without bound; the rest are left out, said in one `skipped` line a machine. None: every build.

    timeline: where to generate the nightly timeline repository (qbench.report.asv_timeline); the results are then
    placed on its commits, one per nightly, instead of on qbench's, and the torch, torchvision and torchao versions
    leave the graphs' parameters (they label the nightly instead), so that the nightlies form one line."""
    from asv.benchmarks import Benchmarks
    from asv.config import Config
    from asv.results import get_filename

    report = ExportReport(runs=shown.runs, skipped=list(shown.skipped), errors=list(shown.errors))
    points: dict[tuple, list[Pool]] = defaultdict(list)
    if timeline is None:
        kept = _recent_builds(shown.pools, recent_builds, report.skipped)
        for key, pool in shown.pools.items():
            if kept is None or (key[0], key[2]) in kept:
                points[key[:4]].append(pool)  # a commit's nights are one point
        if kept is not None:
            report.runs = len({run for pools in points.values() for pool in pools for run in pool.runs})
        dates = {commit: shown.git.get_date(commit) for commit in {key[1] for key in points}}
        placed = {key: (key[1], dates[key[1]]) for key in points}
    else:
        for key, pool in shown.pools.items():
            points[key].append(pool)
        report.nightlies = _nightlies(shown.pools)
        if report.nightlies:
            build_timeline(Path(timeline), report.nightlies)
        by_nightly = {n.key: (n.hash, n.timestamp * 1000) for n in report.nightlies}
        placed = {key: by_nightly[key[1], key[2], key[4]] for key in points}
    conf = Config()
    conf.results_dir = str(Path(results_dir))
    entries = _existing_benchmarks(conf)
    machines = {machine_id: _asv_machine(machine) for machine_id, (_, machine) in shown.machines.items()}
    for key in sorted(points, key=lambda key: (key[0], placed[key][1], placed[key][0])):
        commit, date_ms = placed[key]
        pools = points[key]
        pool = pools[0] if len(pools) == 1 else Pool.merged(pools)
        results = _results_for(pool, commit, date_ms, machines[key[0]], entries, versions_in_params=timeline is None)
        results.save(conf.results_dir)
        report.results_files.append(Path(conf.results_dir) / get_filename(key[0], commit, results.env_name))
    for machine_id, machine in machines.items():
        _save_machine(Path(results_dir), machine_id, machine)
    Benchmarks(conf, list(entries.values())).save()
    report.machines = sorted(machines)
    report.benchmarks = sorted(name for name, entry in entries.items() if entry.get("version") == EXPORT_VERSION)
    report.commits = len({key[1] for key in points})
    return report


def _recent_builds(pools: dict[tuple, Pool], limit: int | None, skipped: list[str]) -> set[tuple] | None:
    """The (machine, builds) pairs the commits view keeps: each machine's `limit` most recently run build sets."""
    if limit is None:
        return None
    latest: dict[str, dict[tuple, str]] = defaultdict(dict)
    for (machine_id, _, builds, _, _), pool in pools.items():
        seen = latest[machine_id]
        seen[builds] = max(seen.get(builds, ""), pool.started_at)
    kept = set()
    for machine_id, builds in sorted(latest.items()):
        newest = sorted(builds, key=lambda b: (builds[b], b), reverse=True)
        kept.update((machine_id, b) for b in newest[:limit])
        if len(newest) > limit:
            left = len(newest) - limit
            skipped.append(f"commits view of {machine_id}: {left} older torch build set{'s' * (left != 1)} left "
                           f"out (it keeps the {limit} most recent; the nightlies view shows every night)")
    return kept


def _nightlies(pools: dict[tuple, Pool]) -> list[Nightly]:
    """One Nightly per (qbench commit, torch builds, night), in the order they started. Python and the
    kernel-steering variables are series of a nightly (asv parameters), not nightlies of their own."""
    found: dict[tuple, Nightly] = {}
    for pool in pools.values():
        key = (pool.commit, pool.builds, pool.night)
        nightly = found.setdefault(key, Nightly(commit=pool.commit, builds=dict(pool.builds), night=pool.night,
                                                started_at=pool.started_at, key=key))
        nightly.machines.add(pool.machine_id)
        nightly.runs.update(pool.runs)
        nightly.started_at = min(nightly.started_at, pool.started_at)
    return sorted(found.values(), key=lambda n: (n.started_at, n.commit, n.label))


def _repository(path: Path):
    from asv.plugins.git import Git
    from asv.util import ProcessError

    if not Git.is_local_repo(str(path)):
        raise ConfigError(f"{path} is not a git repository; asv needs the repository whose commits the runs name")
    git = Git(str(path), str(path))
    try:
        git.get_revisions(set())
    except ProcessError as exc:
        raise StoreError(f"{path}: git cannot list its commits: {exc}") from None
    return git


def _branch_commits(git, branches: list[str | None], repo: Path) -> set[str]:
    """Commits asv publish draws points for: the first-parent history of each branch (None: the default branch)."""
    from asv.util import ProcessError

    commits = set()
    for branch in branches:
        try:
            commits.update(git.get_branch_commits(branch))
        except ProcessError:
            raise ConfigError(f"branch {branch!r} of the asv config's `branches` is not in {repo}") from None
    return commits


def _skip_reason(run: RunFile, has_records: bool, known: dict[str, bool], shown: set | None,
                 branches: list[str] | None, include_dirty: bool) -> str | None:
    provenance = run.header.get("qbench") or {}
    commit = provenance.get("commit")
    if not commit:
        return "qbench ran outside a git checkout, so the run names no commit"
    if not known.get(commit):
        return f"commit {commit[:8]} is not in the repository"
    if shown is not None and commit not in shown:
        return f"commit {commit[:8]} is on no branch the dashboard shows ({', '.join(map(str, branches))})"
    if provenance.get("dirty") and not include_dirty:
        return f"measured uncommitted changes on top of {commit[:8]} (--include-dirty exports it anyway)"
    if not has_records:
        return "no records"
    return None


def _asv_machine(machine: dict) -> dict:
    """The six fields asv knows a machine by (asv.machine.Machine.fields)."""
    return {"machine": machine.get("machine_id"), "os": machine.get("os") or "", "arch": machine.get("arch") or "",
            "cpu": machine.get("cpu_model") or "", "num_cpu": str(machine.get("logical_cpus") or ""),
            "ram": f"{machine.get('memory_gib')}GiB" if machine.get("memory_gib") else ""}


def _save_machine(results_dir: Path, machine_id: str, fields: dict) -> None:
    """machine.json, unless asv's own results already describe this machine."""
    from asv.machine import Machine

    if (results_dir / machine_id / "machine.json").exists():
        return
    machine = Machine()
    machine.__dict__.update(fields)
    machine.save(str(results_dir))


def _results_for(pool: Pool, commit: str, date_ms: int, machine: dict, entries: dict, *, versions_in_params: bool):
    from asv.environment import get_env_name
    from asv.results import Results

    env = pool.environment
    requirements = {name: env[name] for name in REQUIREMENTS if env.get(name)}
    env_vars = steering_variables(env)
    python = env.get("python") or ""
    params = {**machine, "python": python, **(requirements if versions_in_params else {})}
    env_name = get_env_name("qbench", python, requirements, {("run", k): v for k, v in env_vars.items()})
    results = Results(params, requirements, commit, date_ms, python, env_name, env_vars)
    started = datetime.datetime.fromisoformat(pool.first_started_at.replace("Z", "+00:00"))
    for suite, cases in sorted(pool.suites.items()):
        axes = [_sorted_axis(set(values)) for values in zip(*cases)]
        for metric in METRICS.values():
            entry = _benchmark_entry(suite, metric, axes, entries)
            results.add_result(entry, _benchmark_result(cases, metric, axes), started_at=started,
                               duration=pool.durations[suite], record_samples=True)
    return results


def _sorted_axis(values: set[str]) -> list[str]:
    """Numbers numerically; modes and engines in qbench's order (fp32 first); anything else alphabetically."""
    def key(value: str):
        text = value.strip("'")
        mode, _, engine = text.partition("/")
        if text.isdigit():
            return (0, int(text), 0, "")
        if mode in MODES:
            return (1, mode_rank(mode), ENGINES.index(engine) if engine in ENGINES else -1, text)
        return (2, 0, 0, text)
    return sorted(values, key=key)


def _benchmark_entry(suite: str, metric: Metric, axes: list[list[str]], entries: dict) -> dict:
    """This group's view of the benchmark (its own params, as asv stores them per results file); the entry kept for
    benchmarks.json is widened to the union of every group's params."""
    name = benchmark_name(suite, metric.name)
    entry = entries.get(name)
    if entry is None or entry.get("version") != EXPORT_VERSION:
        entry = {"name": name, "type": "track", "unit": asv_unit(metric), "version": EXPORT_VERSION,
                 "param_names": list(CASE_PARAMS), "params": [[] for _ in CASE_PARAMS],
                 "code": f"# qbench run history of suite {suite!r}, exported by qbench.report.asv_export\n"
                         f"# {metric.name}: {metric.description} ({metric.unit}); one point per commit and "
                         f"environment: asv's median of the samples of every record measured there",
                 "timeout": 0, "pretty_name": f"{suite} history: {metric.name}"}
        entries[name] = entry
    entry["params"] = [_sorted_axis(set(old) | set(new)) for old, new in zip(entry["params"], axes)]
    return {**entry, "params": axes}


def _benchmark_result(cases: dict[tuple, CasePool], metric: Metric, axes: list[list[str]]):
    """asv's BenchmarkResult over the product of the axes: a point where an ok record exists, NaN (asv: skipped) where
    the case was skipped or not run, None (asv: failed) where it failed or timed out."""
    from asv.runner import BenchmarkResult

    values, samples, numbers = [], [], []
    for combination in itertools.product(*axes):
        case = cases.get(combination)
        pooled = list(case.values.get(metric.name, ())) if case is not None else []
        with_stats = len(pooled) > 1 and metric.noisy
        failed = case is not None and case.failed
        values.append(metric_value(pooled) if pooled else (None if failed else math.nan))
        samples.append(pooled if with_stats else None)
        numbers.append(1 if with_stats else None)
    return BenchmarkResult(result=values, samples=samples, number=numbers, errcode=0, stderr="", profile=None)


def _existing_benchmarks(conf) -> dict:
    from asv.benchmarks import Benchmarks
    from asv.util import UserError

    if not Path(Benchmarks.get_benchmark_file_path(conf.results_dir)).is_file():
        return {}
    try:
        return {name: dict(entry) for name, entry in Benchmarks.load(conf).items()}
    except UserError as exc:
        raise StoreError(f"{conf.results_dir}/benchmarks.json: {str(exc).splitlines()[0]}") from None
