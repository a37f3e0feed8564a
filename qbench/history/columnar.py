"""The compacted history: finished runs moved from JSON lines into Parquet files, one per run, partitioned by machine
and month, which readers query for only the rows and columns they need.

    results/<machine_id>/store/v2/month=<YYYY-MM>/<stem>.parquet      (stem: the run file's name without .jsonl)

Store version 2 (written): one row per record with the run's summary columns (qbench.history.summary.SCHEMA: case
identity, status, every metric's per-process value, the precision of each noisy metric's point, provenance), computed
once at compaction from records that passed the value rules, and the record itself, whole (raw samples included)
but cut into JSON columns: `json_<section>` for each of SECTIONS (null when the record has none) and `json_rest` for
its other fields, all compressed with zstd; the parts that repeat (machine, environment, suite, case) are parsed once
per value. The run's header and footer lines are kept whole in the file's key-value metadata (`qbench.header`, `qbench.footer`), next to `qbench.store_version` and `qbench.value_rules` (the
version of the rules the records passed: qbench.history.validate.RULES_VERSION). So compacting loses nothing, and a
compacted run reads back as the same RunFile (qbench.history.store reads both kinds through `read_run_file`).

Store version 1 (read, and rewritten as version 2 by `compact`): the same layout under store/v1 with only the
identity columns and `record`; its summaries are computed from its records on read. A file of a newer store version
is refused by name (exit 3), the rest is read. A run present in two versions (a migration that stopped between
writing the new file and removing the old one) is read once, from the newest.

What it buys: a reader that only needs runs (which is `latest`, which commit) reads a file's footer, not its records;
`summary(columns)` reads named columns only (history, report's regressions, shard costs, load_history); compare
rebuilds its two runs' records from summary columns and raw samples (`records_for_compare`), and full records are
parsed only for a command that describes a run (report, claims), without re-checking them when the file says they
passed the current value rules.

Only sealed, complete runs whose every record passes the value rules are compacted; killed runs (`.partial`) stay
JSON lines until they are resumed and sealed. Writing is atomic (a temporary file, then rename) and the JSON-lines
file is removed only after its Parquet file is in place; if both exist, readers take the Parquet one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from qbench.errors import StoreError
from qbench.history.record_columns import (ABSENT, METRIC_FIELDS, SECTIONS, SHARED, checked_case,
                                           decoded, metrics_from, sections)

__all__ = ["STORE_VERSION", "STORE_DIR", "SUFFIX", "compact", "compacted_files", "CompactedRun", "read_compacted",
           "write_run", "scan", "SECTIONS"]

STORE_VERSION = 2
STORE_DIR = f"store/v{STORE_VERSION}"
SUFFIX = ".parquet"
_COMPRESSION = {"compression": "zstd", "compression_level": 9}
def _version_of(path: Path) -> int:
    name = path.parents[1].name
    return int(name[1:]) if name[1:].isdigit() else 0


def compacted_files(root: Path) -> list[Path]:
    """Every compacted run under root, once each (the newest store version's file when a run is in two); files of
    store versions newer than this qbench are listed too, so that reading them names them."""
    root = Path(root)
    if not root.is_dir():
        return []
    newest: dict[tuple[str, str], Path] = {}
    for path in root.glob(f"*/store/v*/month=*/*{SUFFIX}"):
        key = (path.parents[3].name, path.name)
        if key not in newest or _version_of(path) > _version_of(newest[key]):
            newest[key] = path
    return sorted(newest.values())


def _target(root: Path, machine_id: str, stem: str, header: dict, fallback_month: str) -> Path:
    month = str(header.get("started_at", ""))[:7] or fallback_month
    return Path(root) / machine_id / STORE_DIR / f"month={month}" / f"{stem}{SUFFIX}"


def write_run(target: Path, header: dict, records: list, footer: dict | None, lines: list[dict] | None = None) -> Path:
    """Write one run (RunRecords that passed the value rules) as a store file, atomically. `lines`: the records as
    dicts (`to_dict()`) when the caller already has them (qbench.history.synthetic), else made from the records."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qbench.history.summary import summary_table
    from qbench.history.validate import RULES_VERSION

    dicts = [r.to_dict() for r in records] if lines is None else lines
    table = summary_table(records)
    for name, values in sections(dicts).items():
        table = table.append_column(name, pa.array(values, pa.large_string()))
    table = table.replace_schema_metadata({
        "qbench.store_version": str(STORE_VERSION), "qbench.value_rules": str(RULES_VERSION),
        "qbench.header": json.dumps(header, sort_keys=True), "qbench.footer": json.dumps(footer, sort_keys=True)})
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, **_COMPRESSION)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target


def compact(root: Path) -> tuple[list[Path], list[str]]:
    """Move every sealed, complete, valid JSON-lines run under root into the columnar store, and rewrite runs of
    older store versions in the current one. Returns the Parquet files written and, one line each, the runs left as
    they are and why."""
    from qbench.history.store import FINAL, read_run_file, run_files

    written, kept = [], []
    for path in run_files(root):
        compacted = path.suffix == SUFFIX
        if (compacted and _version_of(path) >= STORE_VERSION) or not (compacted or path.name.endswith(FINAL)):
            continue
        try:
            run = read_run_file(path)
            records = run.records
        except StoreError as exc:
            kept.append(f"{path}: not compacted: {exc}")
            continue
        if not run.complete:
            kept.append(f"{path}: not compacted: the run has no footer")
            continue
        if run.rejected:
            kept.append(f"{path}: not compacted: {run.rejected[0]}")
            continue
        if compacted:
            target = _target(root, path.parents[3].name, path.name[:-len(SUFFIX)], run.header, path.parent.name[6:])
        else:
            target = _target(root, path.parents[2].name, path.name[:-len(FINAL)], run.header, path.parent.name)
        written.append(write_run(target, run.header, records, run.footer))
        path.unlink()
    return written, kept


class CompactedRun:
    """A compacted run as qbench.history.store.RunFile: header and footer at once, records parsed on first use."""

    def __init__(self, path: Path, header: dict, footer: dict | None, version: int = STORE_VERSION,
                 checked: bool = False):
        self.path = Path(path)
        self.header = header
        self.footer = footer
        self.version = version
        self.checked = checked  # its records passed the current value rules at compaction
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

    def summary(self, columns: list[str] | None = None, ok_only: bool = False):
        """The run's summary rows (qbench.history.summary.SCHEMA), only these columns; read from the file's columns
        (store v2), or computed from its records (v1)."""
        import pyarrow.compute as pc

        from qbench.history.summary import summary_table

        if self.version < 2:
            table = summary_table(self.records)
        else:
            wanted = list(dict.fromkeys([*columns, "status"])) if columns is not None else _summary_names()
            try:  # strings as dictionaries: a value repeated over a run's rows (environment, case) is held once
                table = _read(self.path, wanted, [n for n in wanted if n in _STRINGS])
            except (OSError, ValueError, KeyError) as exc:
                raise StoreError(f"{self.path}: cannot read: {exc}") from None
        if ok_only:
            table = table.filter(pc.equal(table["status"], "ok"))
        return table if columns is None else table.select(columns)

    def records_at(self, rows: list[int]):
        """The records of these rows (summary row numbers) only."""
        if self._records is not None or self.version < 2:
            return [self.records[i] for i in rows]
        return self._parse(rows) if rows else []

    def records_for_compare(self):
        """The records as compare reads them (qbench.compare.pairwise: identity, status, provenance, and the fields
        qbench.metrics extracts, rebuilt from the summary columns; `details`, `worker` and the rest of `metrics` left
        empty): a run's records at a fraction of the parsing. tests/test_columnar.py checks that every metric and
        basis extracts the same from them as from the full records. JSON-lines and store v1 runs give their full
        records."""
        if self._records is not None or self.version < 2 or not self.checked:
            return self.records
        from qbench.history.store import _migrate
        from qbench.records import RunRecord

        names = [f"json_{n}" for n in SHARED] + ["json_rest"]
        table = self._columns(names + list(METRIC_FIELDS), None)
        columns = {name: decoded(table.column(name)) for name in names}
        values = {name: table.column(name).to_pylist() for name in METRIC_FIELDS}
        cases: dict[int, object] = {}
        records = []
        for index in range(len(table)):
            where = f"{self.path}:row {index + 1}"
            try:
                line = columns["json_rest"][index]
                for name in names[:-1]:
                    if columns[name][index] is not ABSENT:
                        line[name[5:]] = columns[name][index]
                line = _migrate(line, where)
                line["metrics"] = metrics_from({name: column[index] for name, column in values.items()})
                shared = id(line["case"]) if isinstance(line.get("case"), dict) else None
                if shared and shared not in cases:
                    cases[shared] = checked_case(line["case"], line.get("case_version"))
                record = RunRecord.from_dict(line, cases.get(shared) if shared else None)
                if shared:
                    cases.setdefault(shared, record.case)
                records.append(record)
            except StoreError as exc:
                self._rejected.append(StoreError(f"{where}: left out: {exc}"))
        return records

    def _load(self):
        return self._parse(None)

    def _columns(self, names: list[str], rows: list[int] | None):
        try:
            table = _read(self.path, names, [n for n in names if n[5:] in SHARED])
        except (OSError, ValueError, KeyError) as exc:
            raise StoreError(f"{self.path}: cannot read: {exc}") from None
        return table if rows is None else table.take(rows)

    def _parse(self, rows: list[int] | None):
        from qbench.history.store import _migrate
        from qbench.history.validate import check_case_line
        from qbench.records import RunRecord

        if self.version < 2:
            return self._parse_v1(rows)
        names = [f"json_{n}" for n in SECTIONS] + ["json_rest"]
        table = self._columns(names, rows)
        columns = {name: decoded(table.column(name)) for name in names}
        numbers = range(1, len(table) + 1) if rows is None else [i + 1 for i in rows]
        cases: dict[int, object] = {}
        records = []
        for index, number in enumerate(numbers):
            where = f"{self.path}:row {number}"
            try:
                line = columns["json_rest"][index]  # a fresh object per row (not a dictionary column)
                for name in names[:-1]:
                    value = columns[name][index]
                    if value is not ABSENT:
                        line[name[5:]] = value
                line = _migrate(line, where)
                problem = None if self.checked else check_case_line(line)
                if problem:
                    raise StoreError(problem)
                # one object per distinct case text (a dictionary column): its Case is made and checked once
                shared = id(line["case"]) if isinstance(line.get("case"), dict) else None
                record = RunRecord.from_dict(line, cases.get(shared) if shared else None)
                if shared:
                    cases.setdefault(shared, record.case)
                records.append(record)
            except (StoreError, json.JSONDecodeError) as exc:
                self._rejected.append(StoreError(f"{where}: left out: {exc}"))
        return records

    def _parse_v1(self, rows):
        from qbench.history.store import _migrate
        from qbench.history.validate import check_case_line
        from qbench.records import RunRecord

        lines = self._columns(["record"], rows).column("record").to_pylist()
        numbers = range(1, len(lines) + 1) if rows is None else [i + 1 for i in rows]
        records = []
        for number, text in zip(numbers, lines):
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


def _read(path: Path, columns: list[str], dictionaries: list[str]):
    """These columns of one store file (strings in `dictionaries` as dictionary arrays). pyarrow.parquet.ParquetFile,
    not read_table: for one file it reads the same, without loading pyarrow.dataset (and with it pandas)."""
    import pyarrow.parquet as pq

    with pq.ParquetFile(path, read_dictionary=dictionaries) as handle:
        return handle.read(columns=columns)


_STRINGS = ("run_id", "suite", "case_id", "case_version", "model", "mode", "engine", "weights", "qconfig", "runner",
            "status", "machine_id", "cpu_model", "isa", "cpu_capability", "torch", "torchvision", "python",
            "qbench_commit", "started_at", "eval_subset", "pair_key", "environment")


def _summary_names() -> list[str]:
    from qbench.history.summary import SCHEMA

    return SCHEMA.names


def read_compacted(path: Path) -> CompactedRun:
    """The run in one Parquet file of the store; reads only its footer metadata."""
    import pyarrow.parquet as pq

    from qbench.errors import SchemaVersionError
    from qbench.history.store import _migrate
    from qbench.history.validate import RULES_VERSION, check_header_line

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
    checked = metadata.get(b"qbench.value_rules") == str(RULES_VERSION).encode()
    return CompactedRun(path, header, footer, int(version), checked)


def scan(root: Path, columns: list[str], **equal):
    """A pyarrow table of these columns over every compacted run under root, rows filtered by column == value:
    a query that reads only what it names (`scan(root, ["case_id", "status"], mode="fp32")`). Columns a file's
    store version lacks read as null."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    files = [p for p in compacted_files(root) if _version_of(p) <= STORE_VERSION]
    if not files:
        return None
    schemas = {_version_of(p): p for p in files}
    schema = pa.unify_schemas([pq.read_schema(p).remove_metadata() for p in schemas.values()],
                              promote_options="permissive")
    dataset = ds.dataset([str(p) for p in files], format="parquet", schema=schema)
    expression = None
    for name, value in equal.items():
        term = ds.field(name) == value
        expression = term if expression is None else expression & term
    return dataset.to_table(columns=columns, filter=expression)
