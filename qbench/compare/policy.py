"""The threshold policy of a comparison: the command line's thresholds, else the candidate suite file's, else the
defaults, each raised to the case's measured noise (noise.json); and the comparison of two resolved sides under it."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

from qbench.compare.pairwise import CompareReport, compare, environment_differences, suite_key
from qbench.compare.noise_model import NOISE_COLUMNS, process_noise, run_noise_from_summaries
from qbench.compare.steps import Regression, find_regressions
from qbench.errors import ConfigError, StoreError
from qbench.history.noise import load_noise, noise_path
from qbench.history.sides import ResultsFolder, Side
from qbench.records import RunRecord
from qbench.suite.load import load_suite, resolve_suite_path
from qbench.thresholds import ThresholdPolicy

# Runs (newest) whose series and processes give compare its measured noise: a month of nightlies of one runner.
NOISE_WINDOW = 60

__all__ = ["compare_sides", "compare_policy", "suite_thresholds", "load_policy", "regressions_in_runs"]


def compare_sides(base: Side, cand: Side, history: ResultsFolder, *, results: str, command_line=(),
                  noise_file: str | None = None) -> CompareReport:
    """The comparison of two resolved sides under the threshold policy (command line > suite > default, raised
    to measured noise); also used by `qbench report --compare`."""
    base_records, cand_records = base.compare_records, cand.compare_records
    policy = compare_policy(results, history, cand_records, command_line=command_line, noise_file=noise_file)
    comparisons = compare(base_records, cand_records, policy)
    return CompareReport(base.label, cand.label, tuple(comparisons),
                         tuple(environment_differences(base_records, cand_records)),
                         tuple(str(error) for error in history.errors))


def compare_policy(results: str, history: ResultsFolder, records: list[RunRecord], *, command_line=(),
                   noise_file: str | None = None) -> ThresholdPolicy:
    """compare's policy for a candidate's records: thresholds (command line > suite > default), noise.json, and the
    run-to-run and process noise of each machine measured from the newest NOISE_WINDOW runs of the history under
    `results` (the machine's recent noise, at a cost that does not grow with the history's age)."""
    recent = copy.copy(history)
    recent.runs = history.runs[-NOISE_WINDOW:]
    summaries = recent.summaries(NOISE_COLUMNS)  # one read of the window for both figures; ok rows taken there
    return ThresholdPolicy(command_line=command_line, suites=suite_thresholds(records),
                           noise=_noise(results, noise_file, history, records),
                           run_noise=run_noise_from_summaries(summaries), process_noise=process_noise(summaries))


def suite_thresholds(records: list[RunRecord]) -> dict:
    """Thresholds of the candidate's suite files that can still be found, by suite key: at the path the run
    recorded, else by name among the known suites when that file is the one (sha256) the run read."""
    found = {}
    for record in records:
        key = suite_key(record)
        if key not in found:
            path = _suite_file(record.suite)
            found[key] = load_suite(str(path.resolve())).thresholds if path is not None else ()
    return found


def _suite_file(suite: dict) -> Path | None:
    recorded = suite.get("path")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    if suite.get("name") and suite.get("sha256"):
        try:
            path = resolve_suite_path(suite["name"])
        except ConfigError:
            return None
        if hashlib.sha256(path.read_bytes()).hexdigest() == suite["sha256"]:
            return path
    return None


def _noise(results: str, noise_file: str | None, history: ResultsFolder, records: list[RunRecord]) -> dict:
    """machine_id (or "*" for --noise) → case_id → metric → fraction; an unreadable file is named and skipped."""
    if noise_file is not None:
        sources = {"*": Path(noise_file)}
    else:
        machines = sorted({str(r.machine.get("machine_id")) for r in records})
        sources = {machine: noise_path(results, machine) for machine in machines}
    noise = {}
    for machine, path in sources.items():
        try:
            noise[machine] = load_noise(path)
        except StoreError as exc:
            history.errors.append(exc)
    return noise


def load_policy(results, machine_ids, errors: list) -> ThresholdPolicy:
    """compare's threshold policy with each machine's noise.json; an unreadable one is added to `errors`."""
    noise = {}
    for machine_id in sorted(machine_ids):
        try:
            noise[machine_id] = load_noise(noise_path(results, machine_id))
        except StoreError as exc:
            errors.append(exc)
    return ThresholdPolicy(noise=noise)


def regressions_in_runs(results, run_ids: set[str]) -> tuple[list[Regression], list]:
    """ResultsFolder's regressions (same series, noise and thresholds as `qbench history`) whose first bad run is one of
    `run_ids`, and the files that could not be read."""
    history = ResultsFolder(results)
    series = history.series()
    policy = load_policy(results, {s.machine_id for s in series}, history.errors)
    found = [r for r in find_regressions(series, policy) if r.first_bad.run_id in run_ids]
    return found, history.errors
