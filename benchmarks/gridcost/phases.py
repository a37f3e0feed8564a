"""Per-phase worker CPU seconds of runs side by side (details.phases_cpu_s), summed over a run's first processes of
each case (cold) and over the others (warm): where the time goes before and after a change, on a loaded machine.

    python benchmarks/gridcost/phases.py BEFORE.jsonl AFTER.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict


def sums(path: str) -> dict[str, dict[str, float]]:
    out = {"cold": defaultdict(float), "warm": defaultdict(float)}
    counts = defaultdict(int)
    with open(path) as handle:
        for line in handle:
            record = json.loads(line)
            if record.get("kind") != "case" or record["status"] != "ok":
                continue
            which = "cold" if record["worker"]["repeat"] == 0 else "warm"
            counts[which] += 1
            for phase, seconds in record["details"]["phases_cpu_s"].items():
                out[which][phase] += seconds
    return {which: {**phases, "processes": counts[which]} for which, phases in out.items()}


def main(paths: list[str]) -> None:
    runs = [sums(path) for path in paths]
    for which in ("cold", "warm"):
        phases = sorted({p for run in runs for p in run[which] if p not in ("total", "processes")},
                        key=lambda p: -runs[0][which].get(p, 0.0))
        print(f"{which}: CPU s summed over {' / '.join(str(run[which]['processes']) for run in runs)} processes")
        for phase in [*phases, "total"]:
            print(f"  {phase:18s}" + "".join(f"{run[which].get(phase, 0.0):10.1f}" for run in runs))


if __name__ == "__main__":
    main(sys.argv[1:])
