"""Measure cases from Python through the same isolated worker path as `qbench run` (for asv benchmarks, A/B
runs and notebooks). Returns RunRecords; writes history only when given a results folder."""

from __future__ import annotations

import sys
from pathlib import Path

from qbench.launch.lifecycle import open_run
from qbench.launch.machine import collect_machine
from qbench.launch.session import Session
from qbench.plan.expand import Catalog, PlannedCase, skip_reason
from qbench.records import AccuracySpec, Case, CalibrationSpec, MeasureSpec, RunRecord
from qbench.suite.load import RunOptions, SuiteSpec

__all__ = ["measure_cases"]


def measure_cases(cases: list[Case], measure: MeasureSpec = MeasureSpec(), *, run: RunOptions = RunOptions(),
                  python: str = sys.executable, extra_env: dict | None = None, suite_name: str = "api",
                  results: Path | str | None = None, machine: dict | None = None, repeat: int = 1,
                  catalog: Catalog | None = None, accuracy: AccuracySpec = AccuracySpec(),
                  cache: dict | None = None) -> list[RunRecord]:
    """accuracy: the evaluation images (images=0: no accuracy); cache: artifact cache settings
    ({"enabled": bool, "dir": str | None}, default off)."""
    spec = SuiteSpec(name=suite_name, description="", matrices=(), calibration=CalibrationSpec(), measure=measure,
                     run=run, accuracy=accuracy)
    machine = machine or collect_machine()
    with Session(spec, python=python, extra_env=extra_env, cache=cache) as session:
        if catalog is None:
            custom = sorted({c.model for c in cases if ":" in c.model})
            catalog = session.catalog(custom, threads=min(c.threads for c in cases), modes={c.mode for c in cases})
        planned = [PlannedCase(c, skip_reason(c, catalog.models.get(c.model, {}), catalog)) for c in cases]
        with open_run(spec.identity(), machine, results, planned_cases=len(planned), repeat=repeat) as run:
            session.run(planned, catalog=catalog, writer=run, context=run.context, repeat=repeat)
    return run.records
