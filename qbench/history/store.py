"""History on disk: one JSON-lines file per `qbench run`, under results/<machine_id>/runs/<YYYY-MM>/.

Only this module knows the layout. A run file is written as `<name>.jsonl.partial`, one fsync'd line per finished
case, and renamed atomically to `<name>.jsonl` when the run ends. A run that was killed therefore leaves every
case it finished, in a file whose name says it is incomplete; a torn last line of such a file is ignored. File
names carry a timestamp, the commit and a random run id, never a sequence number, so concurrent runs never collide.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from qbench.errors import InfraError, SchemaVersionError, StoreError
from qbench.history.files import write_atomic
from qbench.history.validate import check_case_line, check_header_line
from qbench.records import SCHEMA_VERSION, RunRecord

__all__ = ["RunWriter", "RunFile", "run_files", "read_run_file", "iter_records", "load_history",
           "ensure_machine", "report_rejected", "MIGRATIONS"]

PARTIAL = ".jsonl.partial"
FINAL = ".jsonl"
# update_to_N(line) functions, applied in order to lines of older schema versions (asv style).
MIGRATIONS: dict[int, callable] = {}
# Fields of a machine record that must match for two fingerprints to be the same machine.
MACHINE_IDENTITY = ("arch", "cpu_model", "cpu_signature", "isa", "logical_cpus", "memory_gib")


def ensure_machine(root: Path, machine: dict) -> Path:
    """Create results/<machine_id>/machine.json, or check that the one there describes this machine."""
    folder = Path(root) / machine["machine_id"]
    path = folder / "machine.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InfraError(f"cannot create results folder {folder}: {exc.strerror}") from None
    if path.exists():
        try:
            stored = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise StoreError(f"{path}: unreadable machine record: {exc}") from None
        changed = [k for k in MACHINE_IDENTITY if stored.get(k) != machine.get(k)]
        if changed:
            raise InfraError(f"{path} describes another machine (differs in {', '.join(changed)}); "
                             f"choose another --machine name")
        return folder
    write_atomic(path, json.dumps(machine, indent=2, sort_keys=True) + "\n")
    return folder


class RunWriter:
    """Appends the lines of one run; `finish()` seals the file under its final name."""

    def __init__(self, root: Path, machine: dict, header: dict):
        folder = ensure_machine(root, machine) / "runs" / header["started_at"][:7]
        folder.mkdir(parents=True, exist_ok=True)
        stamp = header["started_at"].replace("-", "").replace(":", "")[:15]
        commit = (header.get("qbench", {}).get("commit") or "nocommit")[:8]
        stem = f"{stamp}Z_{commit}_{header['run_id'][:8]}"
        self.partial_path = folder / f"{stem}{PARTIAL}"
        self.final_path = folder / f"{stem}{FINAL}"
        try:
            self._handle = open(self.partial_path, "x", encoding="utf-8")
        except OSError as exc:
            raise InfraError(f"cannot create {self.partial_path}: {exc.strerror}") from None
        fcntl.flock(self._handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while writing: see history.resume
        self._write({"kind": "run", "schema_version": SCHEMA_VERSION, **header})

    def append(self, record: RunRecord) -> None:
        self._write(record.to_dict())

    def finish(self, footer: dict) -> Path:
        self._write({"kind": "run_end", "schema_version": SCHEMA_VERSION, **footer})
        self._handle.close()
        os.replace(self.partial_path, self.final_path)
        return self.final_path

    def _write(self, line: dict) -> None:
        self._handle.write(json.dumps(line, sort_keys=True, allow_nan=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())


@dataclass
class RunFile:
    """rejected: one StoreError per case line left out because its values break qbench.history.validate's rules."""

    path: Path
    header: dict
    records: list[RunRecord]
    footer: dict | None
    rejected: list[StoreError] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.footer is not None and not self.path.name.endswith(PARTIAL)


def run_files(root: Path) -> list[Path]:
    """Every run under root: JSON-lines files and compacted ones (qbench.history.columnar), each run once."""
    from qbench.history.columnar import SUFFIX, compacted_files

    root = Path(root)
    if not root.is_dir():
        return []
    compacted = compacted_files(root)
    stems = {(p.parents[3].name, p.name[:-len(SUFFIX)]) for p in compacted}
    lines = [p for p in root.glob("*/runs/*/*") if p.name.endswith((FINAL, PARTIAL))
             and (p.parents[2].name, p.name.split(".jsonl")[0]) not in stems]
    return sorted(lines + compacted)


def _migrate(line: dict, where: str) -> dict:
    version = line.get("schema_version")
    if not isinstance(version, int):
        raise StoreError(f"{where}: line has no schema_version")
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"{where}: written with schema version {version}, newer than this qbench "
                                 f"reads ({SCHEMA_VERSION}); upgrade qbench")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        line = MIGRATIONS[target](line)
    return line


def read_run_file(path: Path) -> RunFile:
    path = Path(path)
    if path.name.endswith(".parquet"):
        from qbench.history.columnar import read_compacted

        return read_compacted(path)
    partial = path.name.endswith(PARTIAL)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from None
    if lines and lines[-1] == "":
        lines.pop()
    header, records, footer, rejected = None, [], None, []
    for number, text in enumerate(lines, start=1):
        where = f"{path}:{number}"
        try:
            line = json.loads(text)
        except json.JSONDecodeError as exc:
            if partial and number == len(lines):
                warnings.warn(f"{where}: ignoring the torn last line of an interrupted run")
                break
            raise StoreError(f"{where}: corrupt line ({exc.msg})") from None
        if not isinstance(line, dict):
            raise StoreError(f"{where}: a line must be a JSON object")
        line = _migrate(line, where)
        kind = line.get("kind")
        if number == 1:
            if kind != "run":
                raise StoreError(f"{where}: the first line must be a run header, found kind {kind!r}")
            problem = check_header_line(line)
            if problem:
                raise StoreError(f"{where}: unreadable run header: {problem}")
            header = line
        elif kind == "case":
            problem = check_case_line(line)
            try:
                if problem:
                    raise StoreError(problem)
                records.append(RunRecord.from_dict(line))
            except StoreError as exc:
                record_id = line.get("record_id")
                named = f"record {str(record_id)[:12]} " if isinstance(record_id, str) else ""
                rejected.append(StoreError(f"{where}: {named}left out: {exc}"))
        elif kind == "run_end":
            footer = line
        else:
            raise StoreError(f"{where}: unknown line kind {kind!r}")
    if header is None:
        raise StoreError(f"{path}: empty run file")
    return RunFile(path=path, header=header, records=records, footer=footer, rejected=rejected)


def iter_records(root: Path, errors: list | None = None) -> Iterator[tuple[RunFile, RunRecord]]:
    """Every record under root. With `errors` given, unreadable files and records left out are listed there;
    without, an unreadable file is raised and a record left out is a warning."""
    for run in _readable_runs(root, errors):
        for record in run.records:
            yield run, record


def _readable_runs(root: Path, errors: list | None) -> Iterator[RunFile]:
    """The run files under root that can be read (see iter_records for `errors`), their left-out records reported."""
    for path in run_files(root):
        try:
            run = read_run_file(path)
        except StoreError as exc:
            if errors is None:
                raise
            errors.append(exc)
            continue
        report_rejected(run, errors)
        yield run


def load_history(root: Path, errors: list | None = None, columns: list[str] | None = None):
    """All history under root as a pandas DataFrame, one row per record (qbench.history.frame.COLUMNS, or only
    `columns` of them), with summaries derived from samples: a compacted run's come from its summary columns, a
    JSON-lines run's from its records (qbench.history.summary, one definition)."""
    import pyarrow as pa

    from qbench.history.frame import COLUMNS
    from qbench.history.summary import FILE_COLUMNS, run_summary

    wanted = list(columns or COLUMNS)
    stored = [name for name in wanted if name not in FILE_COLUMNS]
    tables = []
    for run in _readable_runs(root, errors):
        try:
            table = run_summary(run, stored)
        except StoreError as exc:
            if errors is None:
                raise
            errors.append(exc)
            continue
        extra = {"run_complete": pa.array([run.complete] * len(table), pa.bool_()),
                 "file": pa.array([str(run.path)] * len(table), pa.string())}
        tables.append(pa.table({name: extra[name] if name in extra else _plain(table[name]) for name in wanted}))
    if not tables:
        import pandas as pd

        return pd.DataFrame()
    frame = pa.concat_tables(tables).to_pandas()
    if "started_at" in frame:
        import pandas as pd

        frame["started_at"] = pd.to_datetime(frame["started_at"], utc=True)
    return frame


def _plain(column):
    """A dictionary-encoded column as its values (the store reads strings as dictionaries)."""
    import pyarrow as pa

    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def report_rejected(run: RunFile, errors: list | None) -> None:
    """Add the records left out of `run` to `errors`, or warn about them when there is no list."""
    for problem in run.rejected:
        if errors is None:
            warnings.warn(str(problem))
        else:
            errors.append(problem)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
