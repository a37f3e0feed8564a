"""Resolve one side of a comparison to the runs it means, against a results folder.

A side is one of:
  `latest`, `latest~N`   the newest complete run under the results folder, or the Nth before it (by started_at;
                         runs still being written or killed, `.jsonl.partial`, are not counted)
  a path                 a run file, or a folder: every run file under it (any part of a results tree)
  a run id               or a unique prefix of at least 6 hex digits
  a commit               a prefix (6+ hex digits) of the commit that runs were made with: all of its runs; or any
                         git ref (`HEAD~1`, `main`, a tag) resolved with `git rev-parse` in the current repository
An unknown or ambiguous side is a one-line ConfigError naming candidates (recent runs, or the matches).
Unreadable run files are collected in `ResultsFolder.errors`, never raised, so one bad file cannot hide the others.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from qbench.errors import ConfigError, StoreError
from qbench.records import RunRecord
from qbench.history.store import RunFile, read_run_file, run_files
from qbench.history.series import series_metrics

__all__ = ["Side", "ResultsFolder", "resolve_side", "describe_run", "MIN_PREFIX"]

MIN_PREFIX = 6
CANDIDATES_SHOWN = 5
_LATEST = re.compile(r"latest(?:~(\d+))?")
_HEX = re.compile(r"[0-9a-f]+")
_RUN_SUFFIXES = (".jsonl", ".jsonl.partial", ".parquet")


@dataclass(frozen=True)
class Side:
    spec: str
    kind: str
    label: str
    runs: tuple[RunFile, ...]

    @property
    def records(self) -> list[RunRecord]:
        return [record for run in self.runs for record in run.records]

    @property
    def compare_records(self) -> list[RunRecord]:
        """The records as compare reads them: a compacted run's without their details (qbench.history.columnar)."""
        return [record for run in self.runs
                for record in (run.records_for_compare() if hasattr(run, "records_for_compare") else run.records)]


class ResultsFolder:
    """The run files under a results folder, each read once; files that cannot be read are kept in `errors`."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.errors: list[StoreError] = []
        self._read: dict[Path, RunFile | StoreError] = {}
        self.runs = self.read(run_files(self.root))

    @classmethod
    def of_machine(cls, results, machine: str | None) -> ResultsFolder:
        """The run files under `results`, only those of `machine` when given (a one-line ConfigError naming the
        machines there when it has none, or when there are no run files at all)."""
        if not run_files(results):
            raise ConfigError(f"no run files under {results}")
        folder = cls(results)
        if machine is not None:
            known = sorted({str((run.header.get("machine") or {}).get("machine_id")) for run in folder.runs})
            folder.runs = [run for run in folder.runs
                           if (run.header.get("machine") or {}).get("machine_id") == machine]
            if not folder.runs:
                raise ConfigError(f"no runs of machine {machine!r} under {results}; machines there: "
                                  f"{', '.join(known)}")
        return folder

    def series(self, metrics=None) -> list:
        """Every machine × case × metric series of these runs (the rules of qbench.history.series.build_series),
        from their summary columns: a compacted run's records are not parsed."""
        from qbench.history.points import series_columns, series_from_summaries

        columns = ["status", *series_columns(metrics or series_metrics())]
        return series_from_summaries([(run, table) for run, table in self.summaries(columns, ok_only=True)],
                                     metrics)

    def series_by_metric(self, metrics=None):
        """(metric, its series) for each metric in turn (default: every one series can track), like series() but
        from one read of the runs' summary columns: a report over every metric of a year of nightlies reads each
        file once, and holds one metric's points at a time."""
        from qbench.history.points import series_by_metric, series_columns

        metrics = list(metrics or series_metrics())
        columns = ["status", *series_columns(metrics)]
        yield from series_by_metric(list(self.summaries(columns, ok_only=True)), metrics)

    def summaries(self, columns: list[str], ok_only: bool = False) -> list[tuple[RunFile, object]]:
        """(run, its summary rows: these columns of qbench.history.summary.SCHEMA) for every readable run; a run whose
        columns cannot be read is added to `errors` and left out."""
        from qbench.history.summary import run_summary  # pyarrow: only for readers of summaries

        found = []
        for run in self.runs:
            try:
                found.append((run, run_summary(run, columns, ok_only)))
            except StoreError as exc:
                self.errors.append(exc)
        return found

    def records_where(self, columns: list[str], keep) -> list[RunRecord]:
        """The records whose summary row passes `keep(table of these columns) -> boolean array`; only those are
        parsed (a compacted run with none is never opened past its columns)."""
        import numpy as np

        out = []
        for run, table in self.summaries(columns):
            rows = np.flatnonzero(np.asarray(keep(table).fill_null(False)))
            if len(rows) == 0:
                continue
            try:
                picked = run.records_at(rows.tolist()) if hasattr(run, "records_at") else \
                    [run.records[i] for i in rows]
            except StoreError as exc:
                self.errors.append(exc)
                continue
            self.errors.extend(e for e in run.rejected if e not in self.errors)
            out.extend(picked)
        return out

    def accuracy_records(self) -> list[RunRecord]:
        """The records the accuracy gate (qbench.compare.accuracy_gate) can judge, found from summary columns: ok,
        with a top-1, weights not random (a superset of the gate's own rule, which it applies again)."""
        import pyarrow.compute as pc

        def keep(table):
            return pc.and_(pc.and_(pc.equal(table["status"], "ok"), pc.is_valid(table["top1"])),
                           pc.not_equal(table["weights"], "random"))

        return self.records_where(["status", "top1", "weights"], keep)

    def read(self, paths) -> list[RunFile]:
        """The readable ones of these run files, oldest first."""
        runs = []
        for path in paths:
            try:
                runs.append(self.read_one(path))
            except StoreError:
                continue
        return sorted(runs, key=_started)

    def read_one(self, path: Path | str) -> RunFile:
        key = Path(path).resolve()
        if key not in self._read:
            try:
                self._read[key] = read_run_file(path)
            except StoreError as exc:
                named = exc if str(exc).startswith(str(path)) else type(exc)(f"{path}: {exc}")
                self._read[key] = named
                self.errors.append(named)
            else:
                self.errors.extend(self._read[key].rejected)
        found = self._read[key]
        if isinstance(found, StoreError):
            raise found
        return found

    def recent(self, count: int = CANDIDATES_SHOWN) -> str:
        runs = sorted(self.runs, key=_started, reverse=True)[:count]
        return "; ".join(describe_run(run) for run in runs) or f"no runs under {self.root}"


def describe_run(run: RunFile) -> str:
    header = run.header
    commit = (header.get("qbench") or {}).get("commit") or "no commit"
    suite = (header.get("suite") or {}).get("name") or "?"
    when = str(header.get("started_at", ""))[:16].replace("T", " ")
    incomplete = "" if run.complete else ", incomplete"
    return f"{header.get('run_id', '?')[:8]} ({suite}, {commit[:8]}, {when}{incomplete})"


def resolve_side(spec: str, history: ResultsFolder, cwd: Path | str | None = None) -> Side:
    text = spec.strip()
    if not text or text.startswith("-"):
        raise ConfigError(f"a side must be a run id, commit, results folder or latest[~N], got {spec!r}")
    latest = _LATEST.fullmatch(text)
    if latest:
        return _latest(text, int(latest.group(1) or 0), history)
    if "/" in text or text.endswith(_RUN_SUFFIXES) or Path(text).exists():
        return _path(text, history)
    lowered = text.lower()
    if len(lowered) >= MIN_PREFIX and _HEX.fullmatch(lowered):
        side = _hex(text, lowered, history)
        if side is not None:
            return side
    commit = _git_commit(text, cwd)
    if commit is not None:
        runs = [run for run in history.runs if _commit(run) == commit]
        if not runs:
            raise ConfigError(f"{text} is commit {commit[:12]}, which has no runs under {history.root}; "
                              f"recent runs: {history.recent()}")
        return _commit_side(text, commit, runs)
    raise ConfigError(f"unknown run, commit or folder {text!r} under {history.root}; recent runs: {history.recent()}")


def _latest(text: str, back: int, history: ResultsFolder) -> Side:
    runs = sorted((run for run in history.runs if run.complete), key=_started, reverse=True)
    if back >= len(runs):
        raise ConfigError(f"{text}: there are only {len(runs)} complete runs under {history.root}; "
                          f"recent runs: {history.recent()}")
    run = runs[back]
    return Side(text, "latest", f"{text} = run {describe_run(run)}", (run,))


def _path(text: str, history: ResultsFolder) -> Side:
    path = Path(text)
    if path.is_file():
        run = history.read_one(path)
        return Side(text, "file", f"run {describe_run(run)} from {path.name}", (run,))
    if not path.is_dir():
        raise ConfigError(f"{text} is neither a run file nor a results folder")
    runs = history.read(sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(_RUN_SUFFIXES)))
    if not runs:
        raise ConfigError(f"no readable run files under {text}")
    return Side(text, "folder", f"folder {text} ({len(runs)} run{'s' if len(runs) > 1 else ''})", tuple(runs))


def _hex(text: str, prefix: str, history: ResultsFolder) -> Side | None:
    by_run = [run for run in history.runs if str(run.header.get("run_id", "")).lower().startswith(prefix)]
    commits = sorted({c for c in (_commit(run) for run in history.runs) if c and c.lower().startswith(prefix)})
    if by_run and commits:
        raise ConfigError(f"{text} is ambiguous: it starts run {describe_run(by_run[0])} and commit "
                          f"{commits[0][:12]}; give more digits")
    if len(by_run) > 1:
        matches = "; ".join(describe_run(run) for run in by_run[:CANDIDATES_SHOWN])
        raise ConfigError(f"{text} is ambiguous: {len(by_run)} runs match: {matches}")
    if by_run:
        return Side(text, "run", f"run {describe_run(by_run[0])}", (by_run[0],))
    if len(commits) > 1:
        raise ConfigError(f"{text} is ambiguous: commits {', '.join(c[:12] for c in commits[:CANDIDATES_SHOWN])} "
                          f"match")
    if commits:
        return _commit_side(text, commits[0], [run for run in history.runs if _commit(run) == commits[0]])
    return None


def _commit_side(text: str, commit: str, runs: list[RunFile]) -> Side:
    dirty = any((run.header.get("qbench") or {}).get("dirty") for run in runs)
    label = (f"commit {commit[:12]} ({len(runs)} run{'s' if len(runs) > 1 else ''}"
             f"{', uncommitted changes' if dirty else ''})")
    return Side(text, "commit", label, tuple(sorted(runs, key=_started)))


def _git_commit(ref: str, cwd: Path | str | None) -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=cwd,
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    sha = done.stdout.strip()
    return sha if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha) else None


def _commit(run: RunFile) -> str | None:
    return (run.header.get("qbench") or {}).get("commit")


def _started(run: RunFile) -> tuple[str, str]:
    return str(run.header.get("started_at", "")), str(run.path)
