"""How the nightly's history branch grows: N simulated nights (qbench.history.synthetic, records cloned from the real
runs in tests/fixtures/records) pushed onto a git branch the way .ci/nightly-merge does, under four layouts, with the
branch's packed size (`git gc`, then `git count-objects -v`: size-pack) after every night. Not a unit test.

    .venv/bin/qbench list --suite smoke --json > build/branch/smoke.jsonl
    .venv/bin/python benchmarks/branch_growth.py --plan build/branch/smoke.jsonl --nights 30 --out build/branch/smoke

Layouts (one commit per night onto the previous one unless said otherwise):
  jsonl          the run files as JSON lines, never compacted (the nightly before the columnar store)
  store          `qbench compact` after each merge: one immutable Parquet file per run (what .ci/nightly-merge does)
  month-rewrite  one Parquet file per machine and month, rewritten every night with the month's runs so far (the
                 layout a git branch must not hold: every rewrite is a new blob that git keeps)
  single         the compacted store as one commit without a parent, force-pushed (QBENCH_HISTORY_COMMITS=single)
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qbench.history.synthetic import generate, load_plan, load_templates  # noqa: E402

LAYOUTS = ("jsonl", "store", "month-rewrite", "single")


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=qbench", "-c", "user.email=qbench@localhost",
                           "-c", "gc.auto=0", *args], cwd=cwd, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def packed_bytes(repo: Path) -> int:
    git(repo, "reflog", "expire", "--expire=now", "--all")
    git(repo, "gc", "--quiet", "--prune=now")
    stats = dict(line.split(": ", 1) for line in git(repo, "count-objects", "-v").splitlines())
    return (int(stats["size-pack"]) + int(stats["size"])) * 1024


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts)


def compact(results: Path) -> None:
    subprocess.run([sys.executable, "-m", "qbench", "compact", "--results", str(results)], check=True,
                   capture_output=True, text=True)


def month_files(results: Path, dest: Path) -> None:
    """Rewrite each month's runs (compacted per run) as one Parquet file per machine and month."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    for month in sorted(results.glob("*/store/v1/month=*")):
        runs = sorted(month.glob("*.parquet"))
        if not runs:
            continue
        table = pa.concat_tables([pq.read_table(p) for p in runs])
        target = dest / month.parents[2].name / f"{month.name}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target, compression="zstd", compression_level=9)


def commit_night(layout: str, repo: Path, night: int) -> None:
    git(repo, "add", "-A", ".")
    if layout == "single":
        tree = git(repo, "write-tree")
        commit = git(repo, "commit-tree", tree, "-m", f"night {night}")
        git(repo, "update-ref", "refs/heads/results", commit)
        git(repo, "reset", "--quiet", "--soft", commit)
    else:
        git(repo, "commit", "--quiet", "--allow-empty", "-m", f"night {night}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--plan", required=True, help="output of `qbench list --suite S --json`")
    parser.add_argument("--templates", default=str(ROOT / "tests" / "fixtures" / "records"))
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--layouts", default=",".join(LAYOUTS))
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    staged = out / "nights"
    paths = generate(staged, load_plan(Path(args.plan)), load_templates(Path(args.templates)), args.nights,
                     args.repeat)
    layouts = args.layouts.split(",")
    repos = {}
    for layout in layouts:
        repos[layout] = out / layout
        repos[layout].mkdir(parents=True)
        git(repos[layout], "init", "--quiet", "-b", "results")
    print(f"{len(paths)} nights of {args.plan}, repeat {args.repeat}; sizes in KiB "
          f"(tree: the branch's files; pack: its packed size after git gc, history included)")
    print("night  " + "  ".join(f"{layout + ' tree':>18} {layout + ' pack':>18}" for layout in layouts))
    sizes: dict[str, list[tuple[int, int]]] = {layout: [] for layout in layouts}
    for night, path in enumerate(paths, start=1):
        relative = path.relative_to(staged)
        cells = []
        for layout in layouts:
            repo = repos[layout]
            results = repo / "results" if layout == "month-rewrite" else repo
            for name in ("machine.json",):
                target = results / relative.parts[0] / name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(staged / relative.parts[0] / name, target)
            (results / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, results / relative)
            if layout != "jsonl":
                compact(results)
            if layout == "month-rewrite":
                month_files(results, repo / "month-files")
                (repo / ".gitignore").write_text("/results/\n")
            commit_night(layout, repo, night)
            tree = folder_bytes(repo / "month-files" if layout == "month-rewrite" else repo)
            sizes[layout].append((tree, packed_bytes(repo)))
            cells.append(f"{tree / 1024:18.0f} {sizes[layout][-1][1] / 1024:18.0f}")
        print(f"{night:5d}  " + "  ".join(cells), flush=True)
    if len(paths) > 1:
        print("per night, from night 1 to the last (KiB):")
        for layout, rows in sizes.items():
            (tree0, pack0), (tree1, pack1) = rows[0], rows[-1]
            print(f"  {layout:14} tree +{(tree1 - tree0) / (len(rows) - 1) / 1024:10.1f}   "
                  f"pack +{(pack1 - pack0) / (len(rows) - 1) / 1024:10.1f}   "
                  f"pack last night +{(rows[-1][1] - rows[-2][1]) / 1024:10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
