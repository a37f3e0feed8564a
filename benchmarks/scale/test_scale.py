"""Scale benchmark of qbench's readers (pytest-benchmark; not a unit test, not collected by `pytest`): wall and CPU
seconds, peak memory (max RSS of the qbench process) and on-disk size of `compare latest~1 latest`, `history
--metric latency` and `report` over a synthetic history of N nightlies of the full grid (suites/nightly.toml, 1,878
cases, repeat 3: 5,634 records a night, cloned from the real runs in tests/fixtures/records by
qbench.history.synthetic), kept in the columnar store (store v2) as `qbench compact` leaves it.

    .venv/bin/qbench list --suite nightly --json > build/scale/nightly-cases.jsonl
    .venv/bin/python -m qbench.history.synthetic --plan build/scale/nightly-cases.jsonl \
        --templates tests/fixtures/records --nights 365 --jobs 2 --out build/scale/nightlies
    QBENCH_SCALE_NIGHTS=1,30,365 .venv/bin/python -m pytest benchmarks/scale -p no:cacheprovider -s \
        --benchmark-columns=min,rounds --benchmark-json build/scale/result.json

QBENCH_SCALE_DIR=/path/build/scale measures the stores there (store-N with its .done marker is used as it is, nothing
is generated or written there); QBENCH_SCALE_OUT=folder takes the reports (default: that same folder).

The N-night history is the first N nights of build/scale/nightlies (hard links). Nights missing there are generated
(qbench.history.synthetic.generate, ~2 CPU s a night); with QBENCH_SCALE_REPLAY=1 they are instead replayed from the
generated ones under their own identities (qbench.history.synthetic.replay: same columns and sizes, values repeating
with the period of the generated nights), for when a year cannot be generated in the time there is.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCALE = Path(os.environ.get("QBENCH_SCALE_DIR", ROOT / "build" / "scale"))
# Where the reports go: a folder of stores made by another checkout can be measured without writing to it.
OUT = Path(os.environ.get("QBENCH_SCALE_OUT", SCALE))
NIGHTS = [int(n) for n in os.environ.get("QBENCH_SCALE_NIGHTS", "1,30").split(",") if n]
REPLAY = os.environ.get("QBENCH_SCALE_REPLAY") == "1"
PLAN = SCALE / "nightly-cases.jsonl"
SOURCE = SCALE / "nightlies"
TEMPLATES = ROOT / "tests" / "fixtures" / "records"
# Columns that hold raw samples or the rest of the record (qbench.history.columnar): without them, only summaries.
RAW = ("latency_samples", "json_")


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def summary_bytes(folder: Path) -> int:
    """Compressed bytes of the store's summary columns only (no raw samples, no record JSON)."""
    import pyarrow.parquet as pq

    total = 0
    for path in folder.rglob("*.parquet"):
        meta = pq.ParquetFile(path).metadata
        for group in range(meta.num_row_groups):
            for index in range(meta.num_columns):
                column = meta.row_group(group).column(index)
                if not column.path_in_schema.startswith(RAW):
                    total += column.total_compressed_size
    return total


def history(nights: int) -> Path:
    """The first `nights` nightlies of the generated store, as a results folder of their own (hard links)."""
    sys.path.insert(0, str(ROOT))
    from qbench.history.columnar import STORE_DIR
    from qbench.history.synthetic import generate, load_plan, load_templates, replay

    if not PLAN.is_file():
        pytest.skip(f"{PLAN} missing: qbench list --suite nightly --json > {PLAN}")
    folder = SCALE / f"store-{nights}"
    if (folder / ".done").exists():
        return folder
    if REPLAY and SOURCE.is_dir():
        replay(SOURCE, nights)
    else:
        generate(SOURCE, load_plan(PLAN), load_templates(TEMPLATES), nights, repeat=3, store="parquet")
    shutil.rmtree(folder, ignore_errors=True)
    (machine,) = [p for p in SOURCE.iterdir() if (p / STORE_DIR).is_dir()]
    files = sorted((machine / STORE_DIR).rglob("*.parquet"))[:nights]
    for path in files + [machine / "machine.json"]:
        target = folder / path.relative_to(SOURCE)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(path, target)
    (folder / ".done").touch()
    return folder


def run_qbench(*args) -> dict:
    """Run one qbench command; its exit code, CPU seconds and the peak RSS of its process."""
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
    "report": lambda root, nights: ("report", "--results", str(root), "--out", str(OUT / f"report-{nights}")),
}


def measure(benchmark, root: Path, command: str, nights: int) -> None:
    outcome = {}

    def once():
        outcome.update(run_qbench(*COMMANDS[command](root, nights)))

    benchmark.pedantic(once, rounds=1, iterations=1)
    load = os.getloadavg()[0]
    disk, summaries = disk_bytes(root), summary_bytes(root)
    benchmark.extra_info.update({"nights": nights, "disk_mib": round(disk / 2**20, 1),
                                 "summary_mib": round(summaries / 2**20, 1), "load1": load, **outcome})
    print(f"\nscale {command:8} {nights:4} nights: {benchmark.stats.stats.min:7.2f} s wall, {outcome['cpu_s']:7.2f} s "
          f"CPU, peak RSS {outcome['peak_rss_mib']:7.1f} MiB; on disk {disk / 2**20:7.1f} MiB "
          f"({summaries / 2**20:.1f} MiB without raw samples and record JSON); load {load:.1f}")


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("nights", NIGHTS)
def test_scale(benchmark, nights, command):
    measure(benchmark, history(nights), command, nights)

