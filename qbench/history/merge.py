"""Merge results folders (the downloaded artifacts of sharded CI runs) into one history, losing and overwriting
nothing.

What is merged from each source `<machine_id>/` folder:
  runs/<YYYY-MM>/*.jsonl[.partial]  copied when new; skipped when a byte-identical copy is already there; a different
                                    file under the same name is a conflict (StoreError) and nothing is written. A
                                    `.partial` file whose sealed `.jsonl` is already there is skipped as superseded.
  machine.json                      kept as it is when present (ephemeral runners of one type differ only in their
                                    hostname); one describing other hardware is a conflict. Written from the run
                                    header's fingerprint when neither side has one.
  noise.json                        the newest (by `created_at`) kept whole: its thresholds come from one A/A
                                    experiment over one suite, which a mixture of two would misdescribe.
  peaks.json                        merged per entry (runner profile × threads × torch), the newest `measured_at`
                                    of each kept; every record keeps its own copy of the peaks it was measured with.
Anything else is ignored and listed. Every source file is read and checked before the first write.
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from qbench.errors import ConfigError, InfraError, StoreError
from qbench.history.files import write_atomic
from qbench.history.noise import load_noise
from qbench.history.store import FINAL, MACHINE_IDENTITY, PARTIAL, read_run_file, run_files

__all__ = ["MergeReport", "merge_results", "newer_document", "merge_peaks"]

MACHINE_FILE = "machine.json"
NEWEST_KEPT = {"noise.json": "created_at", "peaks.json": "measured_at"}


@dataclass
class MergeReport:
    """What merge_results did. Paths are those of the destination, except `ignored` (source files)."""

    into: Path
    sources: list[Path]
    copied: list[Path] = field(default_factory=list)
    identical: list[Path] = field(default_factory=list)
    superseded: list[Path] = field(default_factory=list)
    machines_added: list[str] = field(default_factory=list)
    documents: list[Path] = field(default_factory=list)
    ignored: list[Path] = field(default_factory=list)
    empty_sources: list[Path] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)
    records: int = 0

    def to_dict(self) -> dict:
        def paths(items):
            return [str(p) for p in items]

        return {"into": str(self.into), "sources": paths(self.sources), "copied": paths(self.copied),
                "identical": paths(self.identical), "superseded": paths(self.superseded),
                "machines_added": self.machines_added, "documents": paths(self.documents),
                "ignored": paths(self.ignored), "empty_sources": paths(self.empty_sources),
                "run_ids": self.run_ids, "records": self.records}


@dataclass(frozen=True)
class _RunCopy:
    source: Path
    target: Path
    run_id: str
    records: int
    machine: dict


def merge_results(sources: list[Path | str], into: Path | str) -> MergeReport:
    """Copy the history of every source folder into `into` (created if missing). Raises ConfigError for a source
    that is not a folder, StoreError for an unreadable file or a conflict (before anything is written)."""
    into, sources = Path(into), [Path(s) for s in sources]
    for source in sources:
        if not source.is_dir():
            raise ConfigError(f"merge source {source} is not a folder")
        if source.resolve() == into.resolve():
            raise ConfigError(f"merge source {source} is the destination itself")
    report = MergeReport(into=into, sources=sources)
    copies = _plan_runs(sources, into, report)
    documents = _plan_documents(sources, into, copies, report)
    _write(copies, documents, report)
    return report


def _plan_runs(sources: list[Path], into: Path, report: MergeReport) -> list[_RunCopy]:
    planned: dict[Path, _RunCopy] = {}
    for source in sources:
        paths = run_files(source)
        if not paths:
            report.empty_sources.append(source)
        for path in paths:
            copy = _check_run(path, source, into)
            if not _already_there(copy, planned, report):
                planned[copy.target] = copy
    _drop_superseded(planned, report)
    return sorted(planned.values(), key=lambda c: str(c.target))


def _already_there(copy: _RunCopy, planned: dict[Path, _RunCopy], report: MergeReport) -> bool:
    """Whether a file of that name is in the history or already planned; a different one is a conflict."""
    if copy.target in planned:
        existing = planned[copy.target].source
    elif copy.target.exists():
        existing = copy.target
    else:
        return False
    if not filecmp.cmp(existing, copy.source, shallow=False):
        raise StoreError(f"{copy.source} differs from {existing}, which has the same name; refusing to overwrite it")
    if existing == copy.target:
        report.identical.append(copy.target)
    return True


def _drop_superseded(planned: dict[Path, _RunCopy], report: MergeReport) -> None:
    """A killed run's `.partial` file is left out when its sealed file is in the history or planned; a sealed file
    whose `.partial` is in the history would count the run twice, and is refused."""
    for target in sorted(planned):
        if target.name.endswith(PARTIAL):
            sealed = target.with_name(target.name[:-len(PARTIAL)] + FINAL)
            if sealed.exists() or sealed in planned:
                del planned[target]
                report.superseded.append(target)
        elif target.with_name(target.name[:-len(FINAL)] + PARTIAL).exists():
            raise StoreError(f"{target.with_name(target.name[:-len(FINAL)] + PARTIAL)} holds part of the run "
                             f"{planned[target].source} completes; move it out of the history and merge again")


def _check_run(path: Path, source: Path, into: Path) -> _RunCopy:
    run = read_run_file(path)
    if run.rejected:
        raise StoreError(f"{run.rejected[0]} (a file with a record that breaks the rules is not merged)")
    relative = path.relative_to(source)
    machine = run.header.get("machine") or {}
    if machine.get("machine_id") != relative.parts[0]:
        raise StoreError(f"{path}: its header names machine {machine.get('machine_id')!r}, but it is filed under "
                         f"{relative.parts[0]!r}")
    run_id = run.header.get("run_id")
    if not run_id or any(record.run_id != run_id for record in run.records):
        raise StoreError(f"{path}: records do not all belong to the run its header names")
    return _RunCopy(source=path, target=into / relative, run_id=run_id, records=len(run.records), machine=machine)


def _plan_documents(sources: list[Path], into: Path, copies: list[_RunCopy], report: MergeReport) -> dict[Path, str]:
    """Destination path -> new text for machine.json, noise.json and peaks.json files that change."""
    texts: dict[Path, str] = {}
    machines = {c.target.relative_to(into).parts[0]: c.machine for c in copies}
    for source in sources:
        known = set(run_files(source))
        for folder in sorted(p for p in source.iterdir() if p.is_dir()):
            _plan_machine_folder(folder, into / folder.name, texts, report, known)
    for machine_id, machine in sorted(machines.items()):
        path = into / machine_id / MACHINE_FILE
        if not path.exists() and path not in texts:
            texts[path] = _json_text(machine)
    report.machines_added = sorted(p.parent.name for p in texts if p.name == MACHINE_FILE)
    return texts


def _plan_machine_folder(folder: Path, target: Path, texts: dict[Path, str], report: MergeReport,
                         known_runs: set[Path]) -> None:
    for path in sorted(folder.iterdir()):
        if path.name in ("runs", "store") and path.is_dir():  # store: compacted runs (qbench.history.columnar)
            report.ignored.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p not in known_runs)
        elif path.name == MACHINE_FILE:
            _plan_machine_file(path, target / MACHINE_FILE, texts)
        elif path.name in NEWEST_KEPT:
            _plan_newest(path, target / path.name, texts)
        elif not path.name.startswith("."):
            report.ignored.append(path)


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: unreadable {what}: {exc}") from None
    if not isinstance(data, dict):
        raise StoreError(f"{path}: a {what} must be a JSON object")
    return data


def _plan_machine_file(path: Path, target: Path, texts: dict[Path, str]) -> None:
    incoming = _read_json(path, "machine record")
    if incoming.get("machine_id") != path.parent.name:
        raise StoreError(f"{path}: names machine {incoming.get('machine_id')!r}, not its folder's")
    current = _read_json(target, "machine record") if target.exists() else _pending(texts, target)
    if current is None:
        texts[target] = _json_text(incoming)
        return
    changed = [key for key in MACHINE_IDENTITY if current.get(key) != incoming.get(key)]
    if changed:
        raise StoreError(f"{path} describes other hardware than {target} (differs in {', '.join(changed)}); "
                         f"refusing to merge it")


def _pending(texts: dict[Path, str], target: Path) -> dict | None:
    return json.loads(texts[target]) if target in texts else None


def _plan_newest(path: Path, target: Path, texts: dict[Path, str]) -> None:
    incoming = _read_json(path, path.name)
    if path.name == "noise.json":
        load_noise(path)
    current = _read_json(target, target.name) if target.exists() else _pending(texts, target)
    if current is None:
        texts[target] = _json_text(incoming)
        return
    if path.name == "peaks.json":
        merged = merge_peaks(current, incoming)
    else:
        merged = newer_document(current, incoming, NEWEST_KEPT[path.name])
    if merged != current:
        texts[target] = _json_text(merged)


def newer_document(current: dict, incoming: dict, stamp: str) -> dict:
    """The document with the later ISO timestamp `stamp`; the current one on a tie or when either lacks it."""
    new, old = incoming.get(stamp), current.get(stamp)
    if isinstance(new, str) and isinstance(old, str) and new > old:
        return incoming
    return current


def merge_peaks(current: dict, incoming: dict) -> dict:
    """peaks.json files ({"schema_version", "machine_id", "entries": {runner/threads/torch key: peaks}}) merged per
    entry, the newest `measured_at` winning; documents without entries: the newer one whole."""
    ours, theirs = current.get("entries"), incoming.get("entries")
    if not (isinstance(ours, dict) and isinstance(theirs, dict)):
        return newer_document(current, incoming, "measured_at")
    entries = dict(ours)
    for key, peaks in theirs.items():
        entries[key] = newer_document(ours[key], peaks, "measured_at") if key in ours else peaks
    return {**current, "entries": entries}


def _json_text(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _write(copies: list[_RunCopy], documents: dict[Path, str], report: MergeReport) -> None:
    for path, text in sorted(documents.items()):
        write_atomic(path, text)
        report.documents.append(path)
    for copy in copies:
        _copy_new(copy.source, copy.target)
        report.copied.append(copy.target)
        report.run_ids.append(copy.run_id)
        report.records += copy.records


def _copy_new(source: Path, target: Path) -> None:
    """Copy under a temporary name, then link to the final name, which fails rather than replace a file."""
    _mkdir(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.merge.tmp")
    try:
        shutil.copyfile(source, tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.link(tmp, target)
    except FileExistsError:
        raise StoreError(f"{target} appeared while merging; refusing to overwrite it") from None
    except OSError as exc:
        raise InfraError(f"cannot write {target}: {exc.strerror}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InfraError(f"cannot create {folder}: {exc.strerror}") from None
