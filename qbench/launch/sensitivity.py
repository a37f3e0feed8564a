"""The parent side of `qbench sensitivity`: one static_fx case measured layer by layer in an isolated worker
(qbench.runner.sensitivity) and stored as a run of suite "sensitivity"."""

from __future__ import annotations

import time

from qbench.errors import ConfigError

__all__ = ["SUITE_NAME", "ENTRY", "SUPPORTED_MODES", "METHODS", "EVAL_BATCH", "RANKED_BY", "run_sensitivity"]

SUITE_NAME = "sensitivity"
ENTRY = "qbench.runner.sensitivity:sensitivity_task"
SUPPORTED_MODES = ("static_fx",)
METHODS = ("swap", "mapping")
RANKED_BY = "only_this_quantized.sqnr_db"
EVAL_BATCH = 8


def _check_model(case, catalog) -> None:
    import difflib

    if case.model not in catalog.models:
        close = difflib.get_close_matches(case.model, list(catalog.models), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown model {case.model!r}{hint}")


def run_sensitivity(case, *, images: int = 16, layers: str | None = None, method: str = "swap",
                    results=None, isolation: str | None = None, timeout_s: float = 1800.0,
                    machine: dict | None = None):
    """Measure `case` (mode static_fx) in an isolated worker; append the record to `results` as a run of suite
    "sensitivity" when given. Returns (RunRecord, path of the run file or None). Raises ConfigError for bad input
    (unknown model, mode, engine, too few images)."""
    from qbench.history.store import utc_now
    from qbench.launch.lifecycle import open_run, run_context
    from qbench.launch.machine import collect_machine
    from qbench.launch.session import Session, record_from_outcome
    from qbench.plan.expand import PlannedCase, skip_reason
    from qbench.records import ENGINES, MeasureSpec
    from qbench.suite.load import RunOptions, SuiteSpec

    if case.mode not in SUPPORTED_MODES:
        raise ConfigError(f"sensitivity supports mode {', '.join(SUPPORTED_MODES)}, not {case.mode!r}")
    if case.engine not in ENGINES:
        raise ConfigError(f"unknown engine {case.engine!r}; allowed: {', '.join(ENGINES)}")
    if images < 1:
        raise ConfigError(f"--images must be at least 1, got {images}")
    if method not in METHODS:
        raise ConfigError(f"unknown sensitivity method {method!r}; allowed: {', '.join(METHODS)}")
    spec = SuiteSpec(name=SUITE_NAME, description="per-layer sensitivity", matrices=(),
                     calibration=case.calibration, measure=MeasureSpec(timeout_s=timeout_s),
                     run=RunOptions(isolation=isolation or "fork"))
    machine = machine or collect_machine()
    context = run_context(spec.identity(), machine)
    with Session(spec, isolation=isolation) as session:
        catalog = session.catalog([case.model] if ":" in case.model else [], threads=case.threads)
        _check_model(case, catalog)
        planned = PlannedCase(case, skip_reason(case, catalog.models[case.model], catalog))
        started_at, began = utc_now(), time.perf_counter()
        outcome = None
        if planned.skip_reason is None:
            task = {"entry": ENTRY, "case": case.to_dict(), "images": images, "layers": layers, "method": method}
            outcome = session.run_task(task, case.threads, timeout_s, None, case.runner)
        record = record_from_outcome(planned, outcome, context=context, catalog=catalog, started_at=started_at,
                                     duration_s=time.perf_counter() - began, timeout_s=timeout_s,
                                     isolation=session.isolation)
    if record.status == "failed" and (record.reason or "").startswith("ConfigError: "):
        raise ConfigError(record.reason.removeprefix("ConfigError: "))
    with open_run(spec.identity(), machine, results, context=context, started_at=started_at, planned_cases=1,
                  images=images, layers=layers, method=method) as run:
        run.append(record)
    return record, run.path


