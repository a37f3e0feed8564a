"""Scale benchmark of qbench's readers (pytest-benchmark; not a unit test, not collected by `pytest`): the wall time,
peak memory (max RSS of the qbench process) and on-disk size of `compare latest~1 latest`, `history --metric
latency` and `report` over a synthetic history of N nightlies of the full grid (suites/nightly.toml, 1,878 cases,
repeat 3, records cloned from the real runs in tests/fixtures/records by qbench.history.synthetic), as JSON lines
and compacted (qbench.history.columnar).

    .venv/bin/qbench list --suite nightly --json > build/scale/nightly-cases.jsonl
    QBENCH_SCALE_NIGHTS=1,30 .venv/bin/python -m pytest benchmarks/scale -p no:cacheprovider \
        --benchmark-columns=min,rounds --benchmark-json build/scale/result.json

QBENCH_SCALE_DIR [build/scale] keeps the generated histories between sessions (30 nightlies: 1.2 GB of JSON lines).
`compare` at 365 nightlies runs on the compacted store built by `compact_clones` below (QBENCH_SCALE_CLONED=365):
the two newest nights are generated in full and the older ones are copies of a compacted night whose header and
footer are rewritten (their records repeat one night's), which is what compare's cost depends on (it reads every
run's footer and the two runs' records); history and report read every record, so they are measured only at N
generated nights.
"""

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCALE = Path(os.environ.get("QBENCH_SCALE_DIR", ROOT / "build" / "scale"))
NIGHTS = [int(n) for n in os.environ.get("QBENCH_SCALE_NIGHTS", "1,30").split(",") if n]
CLONED = [int(n) for n in os.environ.get("QBENCH_SCALE_CLONED", "").split(",") if n]
PLAN = SCALE / "nightly-cases.jsonl"
TEMPLATES = ROOT / "tests" / "fixtures" / "records"


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def history(nights: int, store: str) -> Path:
    """A synthetic history of `nights` nightlies, as JSON lines or compacted, generated once and kept."""
    sys.path.insert(0, str(ROOT))
    from qbench.history.columnar import compact
    from qbench.history.synthetic import generate, load_plan, load_templates

    if not PLAN.is_file():
        pytest.skip(f"{PLAN} missing: qbench list --suite nightly --json > {PLAN}")
    lines = SCALE / f"jsonl-{nights}"
    if not (lines / ".done").exists():
        shutil.rmtree(lines, ignore_errors=True)
        generate(lines, load_plan(PLAN), load_templates(TEMPLATES), nights, repeat=3)
        (lines / ".done").touch()
    if store == "jsonl":
        return lines
    compacted = SCALE / f"compacted-{nights}"
    if not (compacted / ".done").exists():
        shutil.rmtree(compacted, ignore_errors=True)
        shutil.copytree(lines, compacted)
        compact(compacted)
        (compacted / ".done").touch()
    return compacted


def compact_clones(nights: int) -> Path:
    """A compacted history of `nights` nightlies whose nights older than the newest two are rewritten copies of one."""
    import pyarrow.parquet as pq

    folder = SCALE / f"cloned-{nights}"
    if (folder / ".done").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(history(3, "compacted"), folder)
    files = sorted(folder.rglob("*.parquet"))
    table = pq.read_table(files[0])
    metadata = table.schema.metadata
    header, footer = json.loads(metadata[b"qbench.header"]), json.loads(metadata[b"qbench.footer"])
    files[0].unlink()
    for day in range(1, nights - 1):  # the two real nights are the newest: move them after the clones
        stamp = f"2025-{1 + (day - 1) // 28:02d}-{1 + (day - 1) % 28:02d}T02:00:00.000000Z"
        run_id = f"{day:08x}" + header["run_id"][8:]
        new = {**metadata, b"qbench.header": json.dumps({**header, "run_id": run_id, "started_at": stamp}).encode(),
               b"qbench.footer": json.dumps({**footer, "run_id": run_id}).encode()}
        target = files[0].parents[1] / f"month={stamp[:7]}" / f"{stamp[:10].replace('-', '')}T020000Z_5ca1e000_{run_id[:8]}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.replace_schema_metadata(new), target, compression="zstd")
    (folder / ".done").touch()
    return folder


def run_qbench(*args) -> dict:
    """Run one qbench command; its exit code and the peak RSS of its process (and its children)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    process = subprocess.Popen([sys.executable, "-m", "qbench", *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    error = process.stderr.read().decode()
    assert process.returncode in (0, 1), error[-2000:]
    return {"exit": process.returncode, "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


COMMANDS = {
    # With one nightly there is no latest~1: the run is compared with itself.
    "compare": lambda root, nights: ("compare", "latest~1" if nights > 1 else "latest", "latest", "--results",
                                     str(root)),
    "history": lambda root, nights: ("history", "--metric", "latency", "--results", str(root)),
    "report": lambda root, nights: ("report", "--results", str(root), "--out", str(SCALE / "report-out")),
}


def measure(benchmark, root: Path, command: str, nights: int, store: str) -> None:
    outcome = {}

    def once():
        outcome.update(run_qbench(*COMMANDS[command](root, nights)))

    benchmark.pedantic(once, rounds=1, iterations=1)
    benchmark.extra_info.update({"nights": nights, "store": store, "disk_mib": round(disk_bytes(root) / 2**20, 1),
                                 **outcome})
    print(f"\nscale {command:8} {store:10} {nights:4} nights: {benchmark.stats.stats.min:8.2f} s wall, "
          f"{outcome['cpu_s']:8.2f} s CPU, peak RSS "
          f"{outcome['peak_rss_mib']:8.1f} MiB, on disk {disk_bytes(root) / 2**20:9.1f} MiB")


@pytest.mark.parametrize("store", ["jsonl", "compacted"])
@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("nights", NIGHTS)
def test_scale(benchmark, nights, command, store):
    measure(benchmark, history(nights, store), command, nights, store)


@pytest.mark.parametrize("nights", CLONED)
def test_scale_compare_cloned(benchmark, nights):
    measure(benchmark, compact_clones(nights), "compare", nights, "cloned")
