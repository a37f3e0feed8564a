"""The compacted history: finished runs moved from JSON lines into Parquet files, one per run, partitioned by machine
and month, which readers open without parsing what they do not need.

    results/<machine_id>/store/v1/month=<YYYY-MM>/<stem>.parquet      (stem: the run file's name without .jsonl)

One row per record. Columns: the record's identity and status (`run_id`, `record_id`, `case_id`, `case_version`,
`model`, `mode`, `engine`, `status`, `started_at`), and `record`, the record's JSON line exactly as qbench wrote it
(raw samples included), compressed with zstd. The run's header and footer lines are kept whole in the file's
key-value metadata (`qbench.header`, `qbench.footer`), next to `qbench.store_version`. So compacting loses nothing,
and a compacted run reads back as the same RunFile (qbench.history.store reads both kinds through `read_run_file`).

What it buys: a reader that only needs runs (which is `latest`, which commit) reads a file's footer, not its records;
a run's records are parsed only when a command asks for them (`CompactedRun.records`), and a query over columns
(`scan`) reads only those columns, with pyarrow datasets (or DuckDB, Spark: it is plain hive-partitioned Parquet).

Only sealed, complete runs whose every record passes the value rules are compacted; killed runs (`.partial`) stay
JSON lines until they are resumed and sealed. Writing is atomic (a temporary file, then rename) and the JSON-lines
file is removed only after its Parquet file is in place; if both exist, readers take the Parquet one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qbench.errors import StoreError

__all__ = ["STORE_VERSION", "STORE_DIR", "SUFFIX", "compact", "compacted_files", "CompactedRun", "read_compacted",
           "scan"]

STORE_VERSION = 1
STORE_DIR = f"store/v{STORE_VERSION}"
SUFFIX = ".parquet"
_COLUMNS = ("run_id", "record_id", "case_id", "case_version", "model", "mode", "engine", "status", "started_at")


def compacted_files(root: Path) -> list[Path]:
    """Every compacted run under root (any store version this qbench reads)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(root.glob(f"*/{STORE_DIR}/month=*/*{SUFFIX}"))


def _target(root: Path, path: Path, header: dict) -> Path:
    machine_id = path.parent.parent.parent.name
    month = str(header.get("started_at", ""))[:7] or path.parent.name
    stem = path.name[:-len(".jsonl")]
    return Path(root) / machine_id / STORE_DIR / f"month={month}" / f"{stem}{SUFFIX}"


def compact(root: Path) -> tuple[list[Path], list[str]]:
    """Move every sealed, complete, valid JSON-lines run under root into the columnar store. Returns the Parquet files
    written and, one line each, the runs left as they are and why."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qbench.history.store import FINAL, read_run_file, run_files

    written, kept = [], []
    for path in run_files(root):
        if path.suffix == SUFFIX or not path.name.endswith(FINAL):
            continue
        try:
            run = read_run_file(path)
        except StoreError as exc:
            kept.append(f"{path}: not compacted: {exc}")
            continue
        if not run.complete:
            kept.append(f"{path}: not compacted: the run has no footer")
            continue
        if run.rejected:
            kept.append(f"{path}: not compacted: {run.rejected[0]}")
            continue
        lines = [json.dumps(r.to_dict(), sort_keys=True, allow_nan=False) for r in run.records]
        columns = {name: [] for name in _COLUMNS}
        for record in run.records:
            case = record.case
            for name, value in zip(_COLUMNS, (record.run_id, record.record_id, case.case_id, case.case_version,
                                              case.model, case.mode, case.engine, record.status, record.started_at)):
                columns[name].append(value)
        table = pa.table({**{name: pa.array(values, pa.string()) for name, values in columns.items()},
                          "record": pa.array(lines, pa.large_string())})
        table = table.replace_schema_metadata({
            "qbench.store_version": str(STORE_VERSION),
            "qbench.header": json.dumps(run.header, sort_keys=True),
            "qbench.footer": json.dumps(run.footer, sort_keys=True)})
        target = _target(root, path, run.header)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        pq.write_table(table, tmp, compression="zstd", compression_level=9)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        path.unlink()
        written.append(target)
    return written, kept


class CompactedRun:
    """A compacted run as qbench.history.store.RunFile: header and footer at once, records parsed on first use."""

    def __init__(self, path: Path, header: dict, footer: dict | None):
        self.path = Path(path)
        self.header = header
        self.footer = footer
        self._records = None
        self._rejected: list[StoreError] = []

    @property
    def complete(self) -> bool:
        return self.footer is not None

    @property
    def records(self):
        if self._records is None:
            self._records = self._load()
        return self._records

    @records.setter
    def records(self, value) -> None:
        self._records = value

    @property
    def rejected(self) -> list[StoreError]:
        """Records left out so far (only runs whose every record passed are compacted, so normally none); not a
        reason to parse the records."""
        return self._rejected

    def _load(self):
        import pyarrow.parquet as pq

        from qbench.history.store import _migrate
        from qbench.history.validate import check_case_line
        from qbench.records import RunRecord

        try:
            lines = pq.read_table(self.path, columns=["record"]).column("record").to_pylist()
        except (OSError, ValueError) as exc:
            raise StoreError(f"{self.path}: cannot read: {exc}") from None
        records = []
        for number, text in enumerate(lines, start=1):
            where = f"{self.path}:row {number}"
            try:
                line = _migrate(json.loads(text), where)
                problem = check_case_line(line)
                if problem:
                    raise StoreError(problem)
                records.append(RunRecord.from_dict(line))
            except (StoreError, json.JSONDecodeError) as exc:
                self._rejected.append(StoreError(f"{where}: left out: {exc}"))
        return records


def read_compacted(path: Path) -> CompactedRun:
    """The run in one Parquet file of the store; reads only its footer metadata."""
    import pyarrow.parquet as pq

    from qbench.errors import SchemaVersionError
    from qbench.history.store import _migrate
    from qbench.history.validate import check_header_line

    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read: {exc}") from None
    version = metadata.get(b"qbench.store_version")
    if version is None or not version.isdigit():
        raise StoreError(f"{path}: not a qbench store file (no qbench.store_version)")
    if int(version) > STORE_VERSION:
        raise SchemaVersionError(f"{path}: written by a store of version {int(version)}, newer than this qbench reads "
                                 f"({STORE_VERSION}); upgrade qbench")
    try:
        header = _migrate(json.loads(metadata[b"qbench.header"]), f"{path}:header")
        footer = json.loads(metadata.get(b"qbench.footer", b"null"))
    except (KeyError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: unreadable run header or footer: {exc}") from None
    problem = check_header_line(header) if isinstance(header, dict) else "not an object"
    if problem:
        raise StoreError(f"{path}:header: unreadable run header: {problem}")
    return CompactedRun(path, header, footer)


def scan(root: Path, columns: list[str], **equal):
    """A pyarrow table of these columns over every compacted run under root, rows filtered by column == value:
    a query that reads only what it names (`scan(root, ["case_id", "status"], mode="fp32")`)."""
    import pyarrow.dataset as ds

    files = [str(p) for p in compacted_files(root)]
    if not files:
        return None
    dataset = ds.dataset(files, format="parquet")
    expression = None
    for name, value in equal.items():
        term = ds.field(name) == value
        expression = term if expression is None else expression & term
    return dataset.to_table(columns=columns, filter=expression)
