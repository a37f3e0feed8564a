"""Continue a killed or interrupted run in its own file (`qbench run --resume`): find it, check that it is the same
suite, options and environment, and reopen it for appending only its missing cases.

A killed run is a `….jsonl.partial` file; an interrupted one (Ctrl-C, SIGTERM) was sealed as `….jsonl` with a
footer saying `interrupted: true`. Resuming reopens the same file under its `.partial` name (a torn last line is cut
off; a sealed file loses its footer and is renamed back), appends the new records and seals it again, so readers see
one run: one run id, one header, one file. The footer lists each resumption (`resumed`). A file is locked
(`flock`) while a qbench writes it, so a run that is still going cannot be resumed twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from qbench.errors import ConfigError, StoreError
from qbench.history.store import FINAL, PARTIAL, RunFile, RunWriter, read_run_file, run_files

__all__ = ["Resumable", "find_resumable", "check_resumable", "ResumedWriter", "RESUME_CHECKED", "VERSION_KEYS"]

# Header fields that must be equal for a run to be resumed: what was asked for and by which qbench.
RESUME_CHECKED = ("filter", "repeat", "shard", "runners", "planned_cases")
# Worker environment fields that must be equal: the software that measured.
VERSION_KEYS = ("python", "torch", "torch_git", "torchvision", "torchao", "numpy")


@dataclass(frozen=True)
class Resumable:
    run: RunFile

    @property
    def done(self) -> frozenset[tuple[str, int]]:
        """(case_version, repeat index) of every record kept: those cases are not measured again."""
        return frozenset((r.case.case_version, int((r.worker or {}).get("repeat") or 0)) for r in self.run.records)


def _resumable(run: RunFile) -> bool:
    return run.path.name.endswith(PARTIAL) or bool((run.footer or {}).get("interrupted"))


def find_resumable(root: Path, machine_id: str, suite: dict, which: str) -> Resumable:
    """The run to continue: `latest` (the newest killed or interrupted run of this suite on this machine), a run id
    prefix, or a run file's path. A one-line ConfigError when there is none."""
    if which not in ("latest", "") and (which.endswith((FINAL, PARTIAL)) or "/" in which):
        paths = [Path(which)]
    else:
        paths = [p for p in run_files(root) if p.parent.parent.parent.name == machine_id]
    runs = []
    for path in paths:
        try:
            run = read_run_file(path)
        except StoreError as exc:
            if len(paths) == 1:
                raise ConfigError(f"--resume {which}: {exc}") from None
            continue
        if which in ("latest", "") or len(paths) == 1 or str(run.header.get("run_id", "")).startswith(which):
            runs.append(run)
    if which in ("latest", ""):
        runs = [r for r in runs if (r.header.get("suite") or {}).get("name") == suite.get("name")]
    runs = [r for r in runs if _resumable(r)]
    if not runs:
        raise ConfigError(f"--resume {which or 'latest'}: no killed or interrupted run of suite {suite.get('name')} "
                          f"on machine {machine_id} under {root}")
    if len(runs) > 1 and which not in ("latest", ""):
        raise ConfigError(f"--resume {which}: {len(runs)} runs match; give more digits of the run id")
    return Resumable(max(runs, key=lambda r: (str(r.header.get("started_at", "")), str(r.path))))


def check_resumable(found: Resumable, header: dict, environment: dict, planned_versions: set[str]) -> None:
    """Refuse (one-line ConfigError) unless the run was made with this suite, these options, this machine and qbench
    commit, and the same software versions as this environment."""
    old = found.run.header
    name = found.run.path.name

    def refuse(what: str, before, now) -> None:
        raise ConfigError(f"cannot resume {name}: {what} differs (run: {before}; now: {now}); start a new run")

    if (old.get("suite") or {}).get("sha256") != header["suite"].get("sha256"):
        refuse("the suite file", (old.get("suite") or {}).get("sha256", "?")[:12], header["suite"]["sha256"][:12])
    if (old.get("machine") or {}).get("machine_id") != header["machine"]["machine_id"]:
        refuse("the machine", (old.get("machine") or {}).get("machine_id"), header["machine"]["machine_id"])
    for key in ("commit", "dirty"):
        if (old.get("qbench") or {}).get(key) != header["qbench"].get(key):
            refuse(f"qbench's {key}", (old.get("qbench") or {}).get(key), header["qbench"].get(key))
    for key in RESUME_CHECKED:
        if old.get(key) != header.get(key):
            refuse(f"--{key.rstrip('s').replace('_', '-')}" if key != "planned_cases" else "the planned cases",
                   old.get(key), header.get(key))
    for record in found.run.records:
        if record.case.case_version not in planned_versions:
            refuse("the planned cases", f"has {record.case_id}", "not planned")
        for key in VERSION_KEYS:
            if record.environment.get(key) != environment.get(key):
                refuse(key, record.environment.get(key), environment.get(key))


class ResumedWriter(RunWriter):
    """A RunWriter that appends to an existing run's file instead of creating one."""

    def __init__(self, found: Resumable, resumed_at: str):
        run = found.run
        self.header = run.header
        self.kept = list(run.records)
        self.resumed = [*((run.footer or {}).get("resumed") or []), {"at": resumed_at, "kept": len(self.kept)}]
        name = run.path.name
        stem = name[:-len(PARTIAL)] if name.endswith(PARTIAL) else name[:-len(FINAL)]
        self.partial_path = run.path.with_name(stem + PARTIAL)
        self.final_path = run.path.with_name(stem + FINAL)
        lock = open(run.path, "rb+")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ConfigError(f"cannot resume {name}: another qbench is still writing it") from None
        _cut_to_last_record(lock)
        if run.path != self.partial_path:
            os.replace(run.path, self.partial_path)
        self._lock = lock
        self._handle = open(self.partial_path, "a", encoding="utf-8")

    def finish(self, footer: dict) -> Path:
        path = super().finish({**footer, "resumed": self.resumed})
        self._lock.close()
        return path


def _cut_to_last_record(handle) -> None:
    """Drop a torn last line and a footer line (bytes of a binary handle), so that appending continues the records."""
    data = handle.read()
    keep = data.rfind(b"\n") + 1
    lines = data[:keep].split(b"\n")[:-1]
    if lines:
        try:
            last = json.loads(lines[-1])
        except (json.JSONDecodeError, UnicodeDecodeError):
            last = None
        if isinstance(last, dict) and last.get("kind") == "run_end":
            keep -= len(lines[-1]) + 1
    handle.seek(keep)
    handle.truncate()
    handle.flush()
    os.fsync(handle.fileno())
