"""A synthetic history for scale benchmarks: N nightlies of a suite's full grid, every record cloned from a real one.

Real records (files qbench wrote) are the templates, so sizes, field sets and sample counts are those of real runs,
not toy data. Each planned case (from `qbench list --suite S --json`) takes a template of the same mode and engine
(else the same mode, else any ok record); its identity, ids, times, commit and torch build are replaced, and its
latency samples are scaled by a seeded per-night, per-case factor (about 3% noise), so step detection sees realistic
series. Skipped cases are written as skipped records with their reason. Each night has `repeat` records per case
(worker.repeat 0..repeat-1), one run file per night in the layout of qbench.history.store, each night a new torch
nightly build at one qbench commit.

    python -m qbench.history.synthetic --plan cases.jsonl --templates tests/fixtures/records --nights 365 \
        --repeat 3 --out /tmp/history [--store jsonl]

By default each night is written straight into the columnar store (qbench.history.columnar.write_run: the same
summary columns and record JSON `qbench compact` writes), which is how a year of nightlies is kept; `--store jsonl`
writes JSON-lines run files instead (what `qbench run` writes; `qbench compact` then gives the same store). The
clones are not checked against the value rules again: their templates were when they were read, and cloning only
replaces identities and scales latency samples by a positive factor. Files are written whole (no per-line fsync:
this is a fixture, not a run).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from qbench.history.columnar import STORE_DIR, SUFFIX, write_run
from qbench.history.store import FINAL, read_run_file, run_files
from qbench.records import SCHEMA_VERSION, Case, RunRecord

__all__ = ["load_templates", "load_plan", "generate", "main"]

COMMIT = "5ca1e0" + "0" * 34
FIRST_NIGHT = datetime(2026, 1, 1, 2, 0, tzinfo=timezone.utc)


def load_templates(folder: Path) -> dict[tuple, list[dict]]:
    """(mode, engine) → the ok case lines under `folder`, plus (mode,) and () keys for the fallbacks."""
    found: dict[tuple, list[dict]] = {}
    for path in run_files(folder):
        for record in read_run_file(path).records:
            if record.status != "ok":
                continue
            line = record.to_dict()
            for key in ((record.case.mode, record.case.engine), (record.case.mode,), ()):
                found.setdefault(key, []).append(line)
    if not found:
        raise SystemExit(f"no ok records under {folder} to clone")
    return found


def load_plan(path: Path) -> list[tuple[Case, str | None]]:
    """(case, skip reason) per line of `qbench list --json` output."""
    plan = []
    for text in Path(path).read_text().splitlines():
        item = json.loads(text)
        plan.append((Case.from_dict(item["case"]), item.get("skip_reason")))
    return plan


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_IDENTITIES: dict[str, dict] = {}
_ENVIRONMENTS: dict[tuple[int, str], dict] = {}


def _environment(template: dict, torch: str) -> dict:
    """The template's environment with this night's torch build: one shared dict per template and night."""
    key = (id(template), torch)
    if key not in _ENVIRONMENTS:
        if len(_ENVIRONMENTS) > 256:
            _ENVIRONMENTS.clear()
        _ENVIRONMENTS[key] = {**template, "torch": torch}
    return _ENVIRONMENTS[key]


def _identity(case: Case) -> dict:
    if case.case_version not in _IDENTITIES:
        _IDENTITIES[case.case_version] = case.to_dict()
    return copy.deepcopy(_IDENTITIES[case.case_version])


def _as_record(line: dict, case: Case) -> RunRecord:
    """RunRecord.from_dict(line), sharing the plan's Case object (its case_version is computed once)."""
    fields = {k: v for k, v in line.items() if k not in ("kind", "case", "case_id", "case_version")}
    return RunRecord(case=case, **fields)


def _template(templates: dict, case: Case, index: int) -> dict:
    for key in ((case.mode, case.engine), (case.mode,), ()):
        if key in templates:
            choices = templates[key]
            return choices[index % len(choices)]
    raise AssertionError("load_templates always has the () key")


def _record(template: dict, case: Case, run_id: str, night: int, repeat: int, started: datetime, torch: str,
            skip_reason: str | None, rng: random.Random, drift: float) -> dict:
    line = dict(template)  # shallow: nested parts are shared with the template and never changed, only replaced
    line.update({"case": _identity(case), "case_id": case.case_id, "case_version": case.case_version, "run_id": run_id,
                 "record_id": uuid.UUID(int=rng.getrandbits(128)).hex, "started_at": _stamp(started),
                 "finished_at": _stamp(started + timedelta(seconds=5)), "schema_version": SCHEMA_VERSION})
    line["qbench"] = {**line.get("qbench", {}), "commit": COMMIT, "dirty": False}
    line["environment"] = _environment(line.get("environment") or {}, torch)
    line["worker"] = {**line.get("worker", {}), "repeat": repeat}
    if skip_reason:
        line.update({"status": "skipped", "reason": skip_reason, "error_tail": None, "metrics": {}, "details": {}})
        return line
    latency = (line.get("metrics") or {}).get("latency")
    if latency and latency.get("samples"):
        factor = drift * rng.lognormvariate(0.0, 0.03)
        line["metrics"] = {**line["metrics"], "latency": {**latency, "samples": [s * factor for s in latency["samples"]]}}
    return line


def generate(out: Path, plan: list[tuple[Case, str | None]], templates: dict, nights: int, repeat: int = 3,
             machine: dict | None = None, seed: int = 0, store: str = "jsonl", first: int = 0) -> list[Path]:
    """Write nights `first` .. `nights - 1` as run files under out/<machine_id>/runs/<YYYY-MM>/ (store "jsonl") or
    as compacted runs under out/<machine_id>/store/ (store "parquet"); returns their paths."""
    machine = machine or _template(templates, plan[0][0], 0)["machine"]
    folder = Path(out) / machine["machine_id"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "machine.json").write_text(json.dumps(machine, indent=2, sort_keys=True) + "\n")
    suite = {"name": "nightly", "path": "suites/nightly.toml", "sha256": hashlib.sha256(b"nightly").hexdigest()}
    paths = []
    for night in range(first, nights):
        rng = random.Random(f"{seed}/{night}")
        started = FIRST_NIGHT + timedelta(days=night)
        run_id = uuid.UUID(int=rng.getrandbits(128)).hex
        stem = f"{started:%Y%m%dT%H%M%S}Z_{COMMIT[:8]}_{run_id[:8]}"
        target = folder / STORE_DIR / f"month={started:%Y-%m}" / f"{stem}{SUFFIX}"
        if store == "parquet" and target.exists():  # written whole (atomic rename) by an earlier, stopped call
            paths.append(target)
            continue
        torch = f"2.13.0.dev{started:%Y%m%d}+cpu"
        header = {"kind": "run", "schema_version": SCHEMA_VERSION, "run_id": run_id, "suite": suite,
                  "machine": machine, "qbench": {"version": "0.1.0", "commit": COMMIT, "dirty": False},
                  "started_at": _stamp(started), "argv": ["run", "--suite", "nightly"],
                  "planned_cases": len(plan), "repeat": repeat, "filter": [], "isolation": "fork"}
        lines = []
        counts: dict[str, int] = {}
        for index in range(repeat):
            for number, (case, skip_reason) in enumerate(plan):
                if skip_reason and index > 0:
                    continue
                case_rng = random.Random(f"{seed}/{case.case_version}")
                drift = 1.0 + 0.02 * case_rng.random()
                line = _record(_template(templates, case, number), case, run_id, night, index, started, torch,
                               skip_reason, rng, drift)
                counts[line["status"]] = counts.get(line["status"], 0) + 1
                lines.append((line, case))
        footer = {"kind": "run_end", "schema_version": SCHEMA_VERSION, "run_id": run_id,
                  "finished_at": _stamp(started + timedelta(hours=2)), "interrupted": False, "counts": counts}
        if store == "parquet":
            paths.append(write_run(target, header, [_as_record(line, case) for line, case in lines], footer,
                                   [line for line, _ in lines]))
            continue
        month = folder / "runs" / f"{started:%Y-%m}"
        month.mkdir(parents=True, exist_ok=True)
        path = month / f"{stem}{FINAL}"
        text = [json.dumps(header, sort_keys=True)] + [json.dumps(line, sort_keys=True, allow_nan=False)
                                                       for line, _ in lines] + [json.dumps(footer, sort_keys=True)]
        path.write_text("\n".join(text) + "\n")
        paths.append(path)
    return paths


def _identity_of(night: int, seed: int) -> tuple[str, datetime, str, Path]:
    """(run id, start, torch build, file stem) of a night, as generate() makes them."""
    rng = random.Random(f"{seed}/{night}")
    started = FIRST_NIGHT + timedelta(days=night)
    run_id = uuid.UUID(int=rng.getrandbits(128)).hex
    stem = f"{started:%Y%m%dT%H%M%S}Z_{COMMIT[:8]}_{run_id[:8]}"
    return run_id, started, f"2.13.0.dev{started:%Y%m%d}+cpu", Path(f"month={started:%Y-%m}") / f"{stem}{SUFFIX}"


def replay(out: Path, nights: int, seed: int = 0) -> list[Path]:
    """Fill each night of 0 .. nights-1 missing from out's store with a copy of generated night n mod K (K: the
    first missing night) under night n's identity: its run id, start and finish times, torch build and the first 8
    hex digits of every record id are rewritten (in the summary columns, the record's JSON and the header and
    footer); values repeat with period K. Column for column what generate() writes, at a tenth of its cost: for
    readers' cost at scale when there is no time to generate every night."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    (folder,) = [p for p in Path(out).iterdir() if (p / STORE_DIR).is_dir()]
    store = folder / STORE_DIR
    have = [n for n in range(nights) if (store / _identity_of(n, seed)[3]).exists()]
    period = next((n for n in range(nights) if n not in have), nights)
    written = []
    for night in range(period, nights):
        target = store / _identity_of(night, seed)[3]
        if target.exists():
            continue
        run_id, started, torch, source = _identity_of(night % period, seed)
        new_id, new_start, new_torch, _ = _identity_of(night, seed)
        table = pq.read_table(store / source)
        swaps = [(torch, new_torch), (run_id, new_id), (f"{started:%Y-%m-%d}T", f"{new_start:%Y-%m-%d}T")]
        prefix = hashlib.sha256(f"{seed}/{night}".encode()).hexdigest()[:8]
        for name in ("run_id", "record_id", "started_at", "torch", "environment", "json_environment", "json_rest"):
            column = table.column(name)
            for old, new in swaps:
                column = pc.replace_substring(column, old, new)
            if name in ("record_id", "json_rest"):
                pattern = "^[0-9a-f]{8}" if name == "record_id" else '"record_id": "[0-9a-f]{8}'
                column = pc.replace_substring_regex(column, pattern, prefix if name == "record_id"
                                                    else f'"record_id": "{prefix}')
            table = table.set_column(table.column_names.index(name), name, column.cast(table.schema.field(name).type))
        metadata = dict(table.schema.metadata)
        for key in (b"qbench.header", b"qbench.footer"):
            text = metadata[key].decode()
            for old, new in swaps:
                text = text.replace(old, new)
            metadata[key] = text.encode()
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        pq.write_table(table.replace_schema_metadata(metadata), tmp, compression="zstd", compression_level=9)
        tmp.replace(target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qbench.history.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--plan", required=True, help="output of `qbench list --suite S --json`")
    parser.add_argument("--templates", required=True, help="a results folder of real runs to clone records from")
    parser.add_argument("--nights", type=int, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", choices=("parquet", "jsonl"), default="parquet")
    parser.add_argument("--first", type=int, default=0, help="start at this night (to add nights to a history)")
    parser.add_argument("--jobs", type=int, default=1, help="processes, each writing a share of the nights")
    args = parser.parse_args(argv)
    plan, templates = load_plan(Path(args.plan)), load_templates(Path(args.templates))
    bounds = [args.first + (args.nights - args.first) * i // max(args.jobs, 1) for i in range(max(args.jobs, 1) + 1)]
    with ProcessPoolExecutor(len(bounds) - 1) as pool:
        shares = [pool.submit(generate, Path(args.out), plan, templates, stop, args.repeat, seed=args.seed,
                              store=args.store, first=start) for start, stop in zip(bounds, bounds[1:])]
        paths = [path for share in shares for path in share.result()]
    size = sum(p.stat().st_size for p in paths)
    kind = "compacted" if args.store == "parquet" else "JSON lines"
    print(f"synthetic {len(paths)} nightlies in {args.out}: {size / 2**20:.1f} MiB of {kind}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
