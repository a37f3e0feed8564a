"""The fast paths of compare and report at scale (issue 10) against their reference paths on small histories:
compare's run-to-run noise from coded summary columns vs from Series, report's one-read series vs one metric at a
time, step detection's pre-check vs fitting every series, Newton's t quantile vs bisection."""

import dataclasses
import math
import random
from pathlib import Path

import pytest

from qbench.compare import steps
from qbench.compare.noise_model import (NOISE_COLUMNS, NOISY_METRICS, process_noise_figures, run_noise,
                                       run_noise_from_summaries)
from qbench.history.points import series_by_metric, series_from_summaries, series_columns
from qbench.history.series import build_series, series_metrics
from qbench.history.store import RunFile
from qbench.history.summary import run_summary
from qbench.records import CalibrationSpec
from qbench.stats import significance
from qbench.thresholds import ThresholdPolicy, parse_thresholds
from tests.factories import ENVIRONMENT, FP32, INT8, MACHINE, make_case, make_record, pairs

RECALIBRATED = dataclasses.replace(INT8, calibration=CalibrationSpec(batches=8))
OTHER = make_case(model="mobilenet_v2")
ARM = {**MACHINE, "machine_id": "arm-box"}


def random_history(seed: int, nights: int = 14) -> list[RunFile]:
    """Nights of 1-3 processes a case, noisy latency and memory with a step here and there, a case definition
    that changes half-way, a second machine, a failed process now and then, files not in start order."""
    rng = random.Random(seed)
    levels = {case.case_id: rng.uniform(0.005, 0.05) for case in (INT8, FP32, OTHER)}
    runs = []
    for night in range(nights):
        machine = ARM if night % 5 == 4 else MACHINE
        run_id = f"{night:04d}{seed:04d}" + "0" * 24
        started = f"2026-11-{night + 1:02d}T03:00:00.000000Z"
        records = []
        for case in (INT8 if night < nights // 2 else RECALIBRATED, FP32, OTHER):
            step = 1.5 if rng.random() < 0.1 else 1.0
            levels[case.case_id] *= step
            level = levels[case.case_id] * (1 + rng.gauss(0, 0.03))
            for process in range(rng.randint(1, 3)):
                status = "failed" if rng.random() < 0.05 else "ok"
                metrics = {"latency": {"unit": "s", "loops": 1, "warmup_rounds": 1,
                                       "samples": [level * (1 + rng.gauss(0, 0.01)) for _ in range(5)]},
                           "size": {"state_dict_bytes": 1000, "parameters": 10, "modules_quantized": 1,
                                    "modules_float": 0},
                           "memory": {"unit": "bytes", "peak_rss_build": 100,
                                      "peak_rss_run": int(2e8 * (1 + rng.gauss(0, 0.02)))}}
                records.append(make_record(case, status=status, run_id=run_id, started_at=started, machine=machine,
                                           environment=ENVIRONMENT, worker={"repeat": process},
                                           **({"metrics": metrics} if status == "ok" else {})))
        header = {"kind": "run", "run_id": run_id, "started_at": started, "machine": machine,
                  "qbench": {"commit": f"{night:040x}"}, "suite": {"name": "t"}}
        runs.append(RunFile(path=Path(f"/history/{run_id}.jsonl"), header=header, records=records, footer={}))
    rng.shuffle(runs)
    return runs


def summaries(runs, columns):
    return [(run, run_summary(run, columns, ok_only=True)) for run in runs]


@pytest.mark.parametrize("seed", range(6))
def test_run_noise_from_summary_columns_equals_run_noise_of_the_series(seed):
    runs = random_history(seed)
    expected = run_noise(build_series(pairs(*runs), list(NOISY_METRICS)), min_differences=4, min_case_differences=2)
    found = run_noise_from_summaries(summaries(runs, NOISE_COLUMNS), min_differences=4, min_case_differences=2)
    assert found == expected and expected[MACHINE["machine_id"]]["latency"]["*"][0] > 0


def test_run_noise_from_no_rows_is_empty():
    assert run_noise_from_summaries([]) == {}


@pytest.mark.parametrize("seed", range(3))
def test_one_read_series_equal_the_series_of_each_metric(seed):
    runs = random_history(seed)
    metrics = list(series_metrics())
    table = summaries(runs, ["status", *series_columns(metrics)])
    found = dict(series_by_metric(list(table), metrics))
    assert list(found) == metrics
    for metric in metrics:
        expected = series_from_summaries(summaries(runs, ["status", *series_columns([metric])]), [metric])
        assert [(s.machine_id, s.case_id, s.case_version, s.sources, s.run_ids, s.values, s.rel_errs)
                for s in found[metric]] == \
               [(s.machine_id, s.case_id, s.case_version, s.sources, s.run_ids, s.values, s.rel_errs)
                for s in expected]
    assert found["latency"] and found["speedup"]


@pytest.mark.parametrize("seed", range(4))
def test_the_pre_check_leaves_out_only_series_without_regressions(seed, monkeypatch):
    runs = random_history(seed, nights=24)
    series = build_series(pairs(*runs))
    for percent in (0.1, 5, 30):
        policy = ThresholdPolicy(command_line=parse_thresholds([f"latency:{percent}%", f"memory:{percent}%"]))
        checked = steps.find_regressions(series, policy)
        monkeypatch.setattr(steps, "can_rise", lambda y, threshold: True)
        assert steps.find_regressions(series, policy) == checked
        monkeypatch.undo()
    assert any(steps.find_regressions(build_series(pairs(*random_history(s, nights=24))), ThresholdPolicy())
               for s in range(4))


def test_can_rise_needs_a_later_point_above_an_earlier_one_by_the_threshold():
    assert steps.can_rise([1.0, 1.2, 1.0], 0.1) and not steps.can_rise([1.2, 1.0, 1.05], 0.1)
    assert not steps.can_rise([1.0, 1.09, 1.05], 0.1) and steps.can_rise([1.0, 1.11], 0.1)


def test_newtons_t_quantile_equals_bisection():
    for df in (0.7, 1.0, 1.3, 2.0, 2.5, 4.0, 7.9, 30.0, 412.0, 9000.0):
        for q in (0.6, 0.95, 0.975, 0.995, 0.9995):
            bisected = significance._bisected_quantile(q, df)
            assert significance._student_t_quantile(q, df) == pytest.approx(bisected, rel=1e-9)
    assert math.isclose(significance.student_t_quantile(0.975, math.inf), 1.959963984540054)


def pandas_process_noise(summaries, min_df=4):
    """process_noise as it was written with pandas (the reference the array version is checked against)."""
    import numpy as np
    import pandas as pd

    rows = pd.concat([table.to_pandas().assign(run=index) for index, (_run, table) in enumerate(summaries)],
                     ignore_index=True)
    rows["machine_id"] = rows["machine_id"].astype(str)
    squares = {}
    for name in NOISY_METRICS:
        values = rows[f"value_{name}"].to_numpy(dtype=float, na_value=np.nan)
        usable = np.isfinite(values) & (values > 0)
        part = rows.loc[usable, ["run", "machine_id", "case_id"]].assign(log=np.log(values[usable]))
        groups = part.groupby(["run", "machine_id", "case_id"], sort=False)["log"]
        per_run = pd.DataFrame({"ss": groups.var(ddof=0) * groups.count(), "df": groups.count() - 1})
        per_run = per_run[per_run["df"] > 0].groupby(level=["machine_id", "case_id"]).sum()
        for (machine_id, case_id), row in per_run.iterrows():
            squares.setdefault((machine_id, name), {})[case_id] = [float(row["ss"]), int(row["df"])]
    return process_noise_figures(squares, min_df)  # the sums of squares are what this reference checks


@pytest.mark.parametrize("seed", range(6))
def test_process_noise_as_arrays_equals_the_pandas_reference(seed):
    from qbench.compare.noise_model import process_noise

    table = summaries(random_history(seed, nights=20), NOISE_COLUMNS)
    expected, found = pandas_process_noise(table, min_df=3), process_noise(table, min_df=3)
    assert found.keys() == expected.keys() and expected
    for machine, metrics in expected.items():
        assert found[machine].keys() == metrics.keys()
        for metric, figures in metrics.items():
            assert found[machine][metric].keys() == figures.keys()
            for key, (sd, source) in figures.items():
                assert found[machine][metric][key] == (pytest.approx(sd, rel=1e-12), source)


def test_noise_figures_count_only_ok_rows_when_the_status_column_is_given():
    from qbench.compare.noise_model import process_noise

    runs = random_history(1, nights=20)
    every = [(run, run_summary(run, NOISE_COLUMNS)) for run in runs]
    assert any(len(table) > len(ok) for (_, table), (_, ok) in zip(every, summaries(runs, NOISE_COLUMNS)))
    assert run_noise_from_summaries(every) == run_noise_from_summaries(summaries(runs, NOISE_COLUMNS))
    assert process_noise(every, min_df=3) == process_noise(summaries(runs, NOISE_COLUMNS), min_df=3)
