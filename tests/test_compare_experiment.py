"""compare's sensitivity experiment on the real A/A run files of an AVX2 host (tests/fixtures/records), and the
run-to-run noise compare measures from history."""

import math
from pathlib import Path

import pytest

from qbench.compare.noise_model import process_noise, run_noise
from qbench.history.series import build_series
from qbench.launch.compare_experiment import aa_runs, false_alarms, main, power, slowed
from qbench.thresholds import ThresholdPolicy
from tests.factories import INT8, MACHINE, history, pairs

FIXTURE = Path(__file__).parent / "fixtures" / "records" / "avx2-amd-epyc-zen3"


def test_the_two_quick_runs_of_the_avx2_host_compare_clean():
    runs = aa_runs(str(FIXTURE), "quick", None)
    assert len(runs) == 2 and all(len(records) == 12 for _, records in runs)
    alarms, total, by_case, _ = false_alarms(runs, ThresholdPolicy())
    assert (alarms, total, by_case) == (0, 12, {})


def test_slowing_multiplies_every_latency_sample_and_nothing_else():
    (_, records), _ = aa_runs(str(FIXTURE), "quick", None)
    slow = slowed(records, 1.5)
    for before, after in zip(records, slow):
        assert after.metrics["latency"]["samples"] == pytest.approx([s * 1.5 for s in
                                                                     before.metrics["latency"]["samples"]])
        assert after.metrics["size"] == before.metrics["size"] and before.metrics["latency"] is not after.metrics[
            "latency"]


def test_a_doubling_is_caught_on_a_steady_machine_and_a_3_percent_slowdown_is_not_between_two_runs():
    runs = aa_runs(str(FIXTURE), "quick", None)
    caught, total, detectable, caught_there, there = power(runs, ThresholdPolicy(), 1.0)
    assert total == 12 and caught >= 10 and caught_there == there
    caught, total, detectable, _, there = power(runs, ThresholdPolicy(), 0.03)
    assert caught == there == 0 and min(detectable) > 0.5


def test_the_command_prints_rates_with_intervals(capsys):
    assert main(["--results", str(FIXTURE), "--slowdowns", "3"]) == 0
    out = capsys.readouterr().out
    assert "A/A false alarms, all pairs: 0/12 = 0.0% (95% CI 0.0-26.5%)" in out
    assert "    3% all         0/12 = 0.0% (95% CI 0.0-26.5%); median detectable ±" in out
    assert "    3% consecutive 0/12 = 0.0% (95% CI 0.0-26.5%)" in out
    assert "; where detectable no comparisons" in out


def test_run_noise_is_measured_from_consecutive_runs_of_at_least_three():
    runs = history([0.010] * 12, noise=0.03, seed=1)
    found = run_noise(build_series(pairs(*runs)))
    sd, source = found[MACHINE["machine_id"]]["latency"]["*"]
    assert 0.015 < sd < 0.06 and source == "measured over 11 consecutive-run differences in history"
    assert found[MACHINE["machine_id"]]["latency"][INT8.case_id] == (
        sd, "measured over 11 consecutive runs of the case in history")
    assert run_noise(build_series(pairs(*runs[:2]))) == {}


def test_run_noise_ignores_a_single_step():
    steady = history([0.010] * 12, noise=0.01, seed=2)
    stepped = history([0.010] * 6 + [0.015] * 6, noise=0.01, seed=2)
    sd_steady = run_noise(build_series(pairs(*steady)))[MACHINE["machine_id"]]["latency"]["*"][0]
    sd_stepped = run_noise(build_series(pairs(*stepped)))[MACHINE["machine_id"]]["latency"]["*"][0]
    assert sd_stepped < 2 * sd_steady < math.log(1.5)


def test_runs_needed_for_a_slowdown():
    from qbench.launch.compare_experiment import runs_needed
    # 0.5% run noise: (2.576 + 1.645) * 0.005 * sqrt(2 / R) <= ln(1.03) needs R >= 1.01, so 2 runs a side.
    assert runs_needed(0.005, 0.03) == 2
    assert runs_needed(0.20, 0.03) > 1000


def test_a_case_noisier_than_its_machine_gets_its_own_run_noise():
    from qbench.stats.significance import Noise

    policy = ThresholdPolicy(run_noise={"m": {"latency": {"*": (0.05, "machine"), "a": (0.20, "case a")}}})
    assert policy.noise_for("latency", case_id="a", machine_id="m").run == 0.20
    assert policy.noise_for("latency", case_id="b", machine_id="m") == Noise(0.09, 0.05, "default", "machine")
    quiet = ThresholdPolicy(run_noise={"m": {"latency": {"*": (0.05, "machine"), "a": (0.01, "case a")}}})
    assert quiet.noise_for("latency", case_id="a", machine_id="m").run == 0.05


def test_process_noise_is_pooled_within_runs_of_two_or_more_processes():
    (_, records), _ = aa_runs(str(FIXTURE), "quick", None)
    assert process_noise([_summary_of(records)]) == {}  # one process a case: nothing to pool
    doubled = _summary_of(records + slowed(records, 1.10))
    found = process_noise([doubled])[records[0].machine["machine_id"]]["latency"]
    # Each case has two processes 10% apart: SD of (0, ln 1.1) is ln(1.1) / √2.
    assert found["*"][0] == pytest.approx(math.log(1.1) / math.sqrt(2))
    assert records[0].case_id not in found  # one degree of freedom a case: too few for its own figure
    assert found["*"][1] == "measured within runs in history, 12 df"


def _summary_of(records):
    """(run, its ok rows' summary columns) as ResultsFolder.summaries gives them to process_noise."""
    from qbench.compare.noise_model import SUMMARY_COLUMNS
    from qbench.history.store import RunFile
    from qbench.history.summary import run_summary

    run = RunFile(Path("x.jsonl"), {}, records, {})
    return run, run_summary(run, SUMMARY_COLUMNS, ok_only=True)
