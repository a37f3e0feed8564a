"""Run-wide shifts: a whole run slower with nothing changed is the machine, not a regression of its cases; with a
torch build or qbench commit changed it is one regression of every case; a case's own step is still found through
the shift; too few cases to tell keeps the per-case rule."""

import random

import pytest

from qbench.compare.run_shifts import EVERY_CASE, MIN_SERIES
from qbench.compare.steps import find_regressions
from qbench.history.series import build_series
from tests.factories import make_case, make_run, noisy, pairs, qbench, write_history

CASES = [make_case(model=f"model{i}", mode="static_fx", engine="x86") for i in range(8)]
SAME_COMMIT = "c" * 40


def nights(levels_of, *, n=12, seed=0, torch_from=None, commit_from=None, cases=CASES):
    """n runs of `cases`; levels_of(night, case index) is the latency level; 1% noise per run."""
    rng = random.Random(seed)
    runs = []
    for night in range(n):
        spec = [(case, noisy(rng, levels_of(night, i), 0.01), 1000) for i, case in enumerate(cases)]
        torch = "2.14.0.dev" if torch_from is not None and night >= torch_from else "2.13.0+cpu"
        commit = "d" * 40 if commit_from is not None and night >= commit_from else SAME_COMMIT
        runs.append(make_run(night, spec, torch=torch, commit=commit))
    return runs


def regressions(runs, metrics=("latency", "throughput")):
    series = [s for s in build_series(pairs(*runs)) if s.metric in metrics]
    machine: list = []
    return find_regressions(series, machine_shifts=machine), machine


def test_every_case_slower_with_nothing_changed_is_the_machine_not_a_regression():
    found, machine = regressions(nights(lambda night, i: 0.010 * (i + 1) * (1.25 if night >= 9 else 1.0)))
    assert found == []
    assert {(m.metric, m.case_id) for m in machine} == {("latency", EVERY_CASE), ("throughput", EVERY_CASE)}
    latency = next(m for m in machine if m.metric == "latency")
    assert latency.change == pytest.approx(0.25, abs=0.03)
    assert latency.first_bad.run_id == nights(lambda *_: 1.0)[9].header["run_id"]


def test_without_the_shift_rule_each_case_would_be_called_a_regression():
    runs = nights(lambda night, i: 0.010 * (i + 1) * (1.25 if night >= 9 else 1.0), cases=CASES[:MIN_SERIES - 1])
    found, machine = regressions(runs, metrics=("latency",))
    assert machine == []
    assert len(found) == MIN_SERIES - 1  # too few cases to tell a run's shift apart: each case is judged alone


@pytest.mark.parametrize("change", ["torch", "commit"])
def test_every_case_slower_with_a_new_torch_build_or_commit_is_one_regression_of_every_case(change):
    runs = nights(lambda night, i: 0.010 * (i + 1) * (1.25 if night >= 9 else 1.0),
                  torch_from=9 if change == "torch" else None, commit_from=9 if change == "commit" else None)
    found, machine = regressions(runs, metrics=("latency",))
    (regression,) = found
    assert machine == []
    assert regression.case_id == EVERY_CASE
    assert regression.change == pytest.approx(0.25, abs=0.03)
    if change == "torch":
        assert regression.environment_changes["torch"] == ("2.13.0+cpu", "2.14.0.dev")
    else:
        assert regression.first_bad.commit != regression.last_good.commit


def test_one_case_slower_is_found_and_its_neighbours_are_not():
    found, machine = regressions(nights(lambda night, i: 0.010 * (i + 1) * (1.3 if i == 2 and night >= 9 else 1.0)),
                                 metrics=("latency",))
    (regression,) = found
    assert regression.case_id == CASES[2].case_id
    assert regression.change == pytest.approx(0.30, abs=0.04)
    assert machine == []


def test_a_case_slower_on_top_of_a_machine_shift_is_found_with_the_shift_divided_out():
    def level(night, i):
        machine = 1.25 if night >= 9 else 1.0
        own = 1.3 if i == 5 and night >= 9 else 1.0
        return 0.010 * (i + 1) * machine * own

    found, machine = regressions(nights(level), metrics=("latency",))
    (regression,) = found
    assert regression.case_id == CASES[5].case_id
    assert regression.change == pytest.approx(0.30, abs=0.04)  # its own step, not 1.25 x 1.3
    assert regression.run_shift == pytest.approx(0.25, abs=0.03)
    assert [m.case_id for m in machine] == [EVERY_CASE]


def test_a_noisy_machine_level_hides_no_case_step_and_invents_none():
    rng = random.Random(7)
    load = [1.0 + abs(rng.gauss(0, 0.15)) for _ in range(14)]  # the VM's run-to-run level, shared by every case
    found, _ = regressions(nights(lambda night, i: 0.010 * (i + 1) * load[night], n=14), metrics=("latency",))
    assert found == []
    found, _ = regressions(nights(lambda night, i: 0.010 * (i + 1) * load[night] * (1.4 if i == 1 and night >= 10
                                                                                    else 1.0), n=14),
                           metrics=("latency",))
    assert [r.case_id for r in found] == [CASES[1].case_id]


def test_history_cli_names_the_machine_shift_and_exits_0(tmp_path):
    runs = nights(lambda night, i: 0.010 * (i + 1) * (1.25 if night >= 9 else 1.0))
    write_history(tmp_path, runs)
    done = qbench("history", "--results", str(tmp_path), "--metric", "latency")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no regressions" in done.stdout
    assert "machine shift" in done.stdout and "+2" in done.stdout
