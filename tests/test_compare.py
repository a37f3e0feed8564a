"""Comparison of two sides on hand-built records: every verdict, the rules for incomparable records, significance
over repeats, direction, and the shapes of the JSON and markdown reports."""

import json
import math
import subprocess
import sys

import pytest

from qbench.compare.pairwise import CompareReport, compare, environment_differences
from qbench.report.compare import render_json, render_markdown, render_table
from qbench.stats.significance import (ALPHA, POWER, Noise, clopper_pearson, significance, student_t_p,
                                      student_t_quantile)
from qbench.thresholds import DEFAULT_NOISE, Threshold, ThresholdPolicy, noise_from_fraction, parse_thresholds
from tests.factories import ENVIRONMENT, MACHINE, make_case, make_record

CASE = make_case()
OTHER = make_case(model="mobilenet_v2")
# A quiet machine: runs do not drift, so that a few tight processes can show a small change.
QUIET = {"latency": Noise(0.01, 0.0, "test"), "memory": Noise(0.005, 0.0, "test")}
# A steady machine: runs drift 2% (memory 0.2%) from one another.
STEADY = ThresholdPolicy(assumed={"latency": Noise(0.12, 0.02, "test", "test"), "throughput": Noise(0.12, 0.02),
                                  "memory": Noise(0.008, 0.002)})


def process(median=0.010, *, spread=0.02, n=21, size=1000, rss=300e6, case=CASE, **overrides):
    """One worker process's record: n latency samples spread evenly ±spread around `median`."""
    half = n // 2
    samples = [median * (1 + spread * (i - half) / half) for i in range(n)]
    metrics = {"latency": {"unit": "s", "samples": samples, "loops": 1, "warmup_rounds": 1},
               "size": {"state_dict_bytes": size}, "memory": {"unit": "bytes", "peak_rss_run": rss}}
    return make_record(case, metrics=metrics, **overrides)


def processes(medians, **kwargs):
    return [process(m, **kwargs) for m in medians]


def by_metric(comparisons, case=CASE):
    return {c.metric: c for c in comparisons if c.case_id == case.case_id}


def test_identical_sides_are_unchanged_with_ratio_one():
    base = processes([0.010, 0.0101, 0.0099])
    rows = by_metric(compare(base, base, ThresholdPolicy(assumed=QUIET)))
    assert set(rows) == {"latency", "memory", "size"}
    assert all(r.verdict == "unchanged" and r.ratio == 1.0 for r in rows.values())
    assert rows["latency"].base.processes == 3 and rows["latency"].base.samples == 63
    assert "+0.0%, not significant, detectable ±" in rows["latency"].reason


def test_identical_sides_whose_noise_hides_the_threshold_are_undetectable_not_unchanged():
    base = processes([0.010, 0.0101, 0.0099])
    latency = by_metric(compare(base, base))["latency"]
    assert latency.verdict == "undetectable" and latency.ratio == 1.0
    assert latency.test.detectable > 0.10
    assert latency.reason.startswith(f"+0.0%, not significant; detectable ±{latency.test.detectable * 100:.0f}% only, "
                                     "more than 10% (default); t-test over 3 vs 3 processes")


def test_slower_latency_in_separate_processes_is_regressed_with_both_values_and_the_ratio():
    base = processes([0.0100, 0.0101, 0.0099, 0.01005, 0.00995])
    cand = processes([0.0120, 0.0121, 0.0119, 0.01205, 0.01195])
    latency = by_metric(compare(base, cand, STEADY))["latency"]
    assert latency.verdict == "regressed"
    assert latency.base.value == pytest.approx(0.0100) and latency.cand.value == pytest.approx(0.0120)
    assert latency.ratio == pytest.approx(1.2)
    assert latency.test.test == "t" and latency.test.measured and latency.test.p_value < ALPHA
    assert latency.reason.startswith("+20.0%, beyond 10% (default) and significant, detectable ±")
    assert "; t-test over 5 vs 5 processes, p<0.0001" in latency.reason
    assert "process noise 0.7% measured over 5 vs 5 processes; run-to-run 2.0%, test)" in latency.reason


def test_faster_latency_is_improved():
    base = processes([0.0100, 0.0101, 0.0099, 0.01005, 0.00995])
    cand = processes([0.0080, 0.0081, 0.0079, 0.00805, 0.00795])
    assert by_metric(compare(base, cand, STEADY))["latency"].verdict == "improved"


def test_three_processes_a_side_use_the_t_test_on_the_process_values():
    base = processes([0.0100, 0.0101, 0.0099])
    cand = processes([0.0120, 0.0121, 0.0119])
    latency = by_metric(compare(base, cand, STEADY))["latency"]
    assert latency.verdict == "regressed" and latency.test.test == "t"
    assert "t-test over 3 vs 3 processes" in latency.reason


def test_a_large_change_that_the_processes_do_not_support_is_undetectable():
    base = processes([0.0080, 0.0120, 0.0100])
    cand = processes([0.0090, 0.0150, 0.0116])
    latency = by_metric(compare(base, cand))["latency"]
    assert latency.ratio == pytest.approx(1.16)
    assert latency.verdict == "undetectable" and latency.test.significant is False
    assert latency.test.detectable > 0.5
    assert "+16.0%, not significant; detectable ±" in latency.reason


def test_single_processes_use_the_assumed_process_noise_never_their_samples():
    # Tight samples (±2%) in each process, 20% apart: within-process noise alone would call this significant.
    latency = by_metric(compare([process(0.010)], [process(0.012)]))["latency"]
    assert latency.verdict == "undetectable" and latency.test.processes == (1, 1) and not latency.test.measured
    assert latency.test.process_sd == DEFAULT_NOISE["latency"].process
    assert "process noise 9.0% assumed (default; one process a side)" in latency.reason


def test_change_within_the_threshold_is_unchanged_even_when_significant():
    base = processes([0.0100, 0.0100, 0.0100, 0.0100, 0.0100], spread=0.001)
    cand = processes([0.0105, 0.0105, 0.0105, 0.0105, 0.0105], spread=0.001)
    latency = by_metric(compare(base, cand, ThresholdPolicy(assumed=QUIET)))["latency"]
    assert latency.test.significant and latency.verdict == "unchanged"
    assert latency.reason.startswith("+5.0%, significant but within 10% (default), detectable ±")


def test_command_line_threshold_decides():
    base, cand = processes([0.0100, 0.01001, 0.00999] * 2), processes([0.0105, 0.01051, 0.01049] * 2)

    def latency(spec):
        policy = ThresholdPolicy(command_line=parse_thresholds([spec]), assumed=QUIET)
        return by_metric(compare(base, cand, policy))["latency"]
    assert latency("latency:3%").verdict == "regressed" and latency("latency:3%").threshold == "3% (command line)"
    assert latency("latency:0.4").verdict == "regressed" and latency("latency:0.4").threshold == "0.4 ms (command line)"
    assert latency("latency:0.6").verdict == "unchanged"


def test_noise_json_sets_the_assumed_process_noise_of_its_case_not_the_threshold():
    base, cand = [process(0.0100), process(0.0100, case=OTHER)], [process(0.0112), process(0.0112, case=OTHER)]
    rows = compare(base, cand, ThresholdPolicy(assumed=QUIET), noise={CASE.case_id: {"latency": 0.01}})
    latency = by_metric(rows)["latency"]
    assert latency.verdict == "regressed" and latency.threshold == "10% (default)"
    assert latency.test.process_sd == pytest.approx(noise_from_fraction(0.01))
    assert "assumed (noise.json; one process a side)" in latency.reason
    assert by_metric(rows, OTHER)["latency"].test.process_sd == QUIET["latency"].process


def test_noise_json_fraction_is_the_95th_percentile_of_two_processes_apart():
    sigma = noise_from_fraction(0.10)
    assert math.log(1.10) == pytest.approx(1.959964 * math.sqrt(2) * sigma)


def test_suite_thresholds_apply_by_the_candidate_records_suite():
    suite = {"name": "gate", "sha256": "f" * 64}
    base = processes([0.0100, 0.01001, 0.00999] * 2, suite=suite)
    cand = processes([0.0106, 0.01061, 0.01059] * 2, suite=suite)
    policy = ThresholdPolicy(suites={"f" * 64: (Threshold("latency", 0.05, True, "suite gate"),)}, assumed=QUIET)
    latency = by_metric(compare(base, cand, policy))["latency"]
    assert latency.verdict == "regressed" and latency.threshold == "5% (suite gate)"


def test_size_is_deterministic_exact_threshold_without_a_test():
    rows = by_metric(compare([process(size=1_000_000)], [process(size=1_001_001)]))
    assert rows["size"].verdict == "regressed" and rows["size"].test is None
    assert rows["size"].reason == "+0.1%, beyond 0.1% (default); exact threshold"
    rows = by_metric(compare([process(size=1_000_000)], [process(size=1_001_000)]))
    assert rows["size"].verdict == "unchanged"
    rows = by_metric(compare([process(size=1_000_000)], [process(size=500_000)]))
    assert rows["size"].verdict == "improved"


def test_memory_of_single_processes_is_tested_with_its_assumed_noise():
    memory = by_metric(compare([process(rss=300e6)], [process(rss=360e6)]))["memory"]
    assert memory.verdict == "regressed" and memory.test.significant and not memory.test.measured
    memory = by_metric(compare([process(rss=300e6)], [process(rss=306e6)]))["memory"]
    assert memory.verdict == "unchanged" and not memory.test.significant
    assert memory.reason.startswith("+2.0%, not significant, detectable ±4.8% (within 5% (default))")


def test_memory_over_processes_is_tested():
    base = processes([0.01] * 3, rss=300e6)
    cand = [process(rss=rss) for rss in (360e6, 361e6, 359e6)]
    memory = by_metric(compare(base, cand))["memory"]
    assert memory.verdict == "regressed" and memory.test.test == "t" and memory.test.measured


def test_direction_higher_is_better_for_throughput():
    base, cand = processes([0.0100] * 5), processes([0.0125] * 5)
    policy = ThresholdPolicy(command_line=parse_thresholds(["throughput:10%"]), assumed=STEADY.assumed)
    rows = by_metric(compare(base, cand, policy))
    assert rows["throughput"].verdict == "regressed"
    assert rows["throughput"].ratio == pytest.approx(0.8)
    assert rows["latency"].verdict == "regressed"
    rows = by_metric(compare(cand, base, policy))
    assert rows["throughput"].verdict == "improved" and rows["latency"].verdict == "improved"


def test_throughput_is_left_out_unless_a_threshold_names_it():
    assert "throughput" not in by_metric(compare([process()], [process()]))


def test_different_machine_is_incomparable_and_never_compared():
    other_machine = {**MACHINE, "machine_id": "x86_64-other-4c-16g-123456"}
    (row,) = compare([process(0.010)], [process(0.020, machine=other_machine)])
    assert row.verdict == "incomparable" and row.metric == "status" and row.ratio is None
    assert row.reason == ("different machines: base x86_64-test-2c-24g-abcdef, "
                          "candidate x86_64-other-4c-16g-123456")


def test_different_case_definition_is_incomparable_and_names_the_field():
    changed = make_case(calibration=CASE.calibration.__class__(batches=8))
    assert changed.case_id == CASE.case_id and changed.case_version != CASE.case_version
    (row,) = compare([process(0.010)], [process(0.020, case=changed)])
    assert row.verdict == "incomparable"
    assert f"case_version {CASE.case_version} vs {changed.case_version} (calibration.batches changed)" in row.reason


def test_records_of_another_machine_on_one_side_are_ignored_with_a_note():
    other_machine = {**MACHINE, "machine_id": "x86_64-other"}
    rows = by_metric(compare([process(), process(machine=other_machine)], [process()]))
    assert rows["latency"].verdict == "undetectable" and rows["latency"].base.processes == 1
    assert "1 base records of another machine or case_version ignored (x86_64-other)" in rows["latency"].reason


def test_case_on_one_side_only_is_missing():
    rows = compare([process(), process(case=OTHER)], [process(), process(case=make_case(model="resnet50"))])
    missing = {c.case_id: c.reason for c in rows if c.verdict == "missing"}
    assert missing == {OTHER.case_id: "only in base, not in candidate",
                       make_case(model="resnet50").case_id: "only in candidate, not in base"}


def test_ok_to_failed_is_regressed_with_the_status_change():
    (row,) = compare([process()], [make_record(CASE, status="failed", reason="RuntimeError: boom")])
    assert (row.verdict, row.metric) == ("regressed", "status")
    assert row.reason == "ok → failed: RuntimeError: boom"


def test_ok_to_timeout_and_ok_to_skipped_are_regressed():
    (row,) = compare([process()], [make_record(CASE, status="timeout", reason="exceeded the 600 s timeout")])
    assert row.verdict == "regressed" and row.reason.startswith("ok → timeout")
    (row,) = compare([process()], [make_record(CASE, status="skipped", reason="engine x86 unavailable")])
    assert row.verdict == "regressed" and row.reason == "ok → skipped: engine x86 unavailable"


def test_one_failed_process_of_three_is_a_regression_and_the_rest_still_compare():
    cand = [process(), process(), make_record(CASE, status="failed", reason="killed by SIGKILL")]
    rows = by_metric(compare(processes([0.010] * 3), cand))
    assert rows["status"].verdict == "regressed"
    assert rows["status"].reason == "ok → failed in 1 of 3 processes: killed by SIGKILL"
    assert rows["latency"].verdict != "regressed" and rows["latency"].cand.processes == 2


def test_failed_to_ok_is_improved():
    rows = by_metric(compare([make_record(CASE, status="failed")], [process()]))
    assert rows == {"status": rows["status"]} and rows["status"].verdict == "improved"
    assert rows["status"].reason == "failed → ok"


def test_failed_on_both_sides_is_unchanged_still_broken():
    (row,) = compare([make_record(CASE, status="failed", reason="old")],
                     [make_record(CASE, status="timeout", reason="new")])
    assert row.verdict == "unchanged"
    assert row.reason == "not ok on both sides, still broken (failed → timeout): new"


def test_skipped_on_both_sides_is_unchanged():
    skip = make_record(CASE, status="skipped", reason="no quantizable variant")
    (row,) = compare([skip], [skip])
    assert row.verdict == "unchanged" and row.reason == "skipped on both sides: no quantizable variant"


def test_comparisons_list_regressions_first():
    rows = compare([process(0.010), process(0.010, case=OTHER)], [process(0.010), process(0.020, case=OTHER)])
    assert rows[0].verdict == "regressed" and rows[0].case_id == OTHER.case_id
    assert [r.verdict for r in rows][-1] == "unchanged"


@pytest.mark.parametrize("m, n", [(1, 1), (1, 3), (3, 3), (5, 5)])
def test_the_process_noise_is_measured_whenever_a_side_has_two_processes(m, n):
    noise = Noise(0.5, 0.0, "test")
    result = significance([1.0 + i / 100 for i in range(m)], [1.5 + i / 100 for i in range(n)], noise)
    assert result.test == "t" and result.measured == (m + n > 2)
    assert result.significant == (m + n > 2)  # 0.5 assumed hides a 50% change; 1% measured does not


def test_detectable_is_the_change_found_with_the_stated_power():
    noise = Noise(0.05, 0.02, "test")
    result = significance([1.0], [1.0], noise)
    se = math.sqrt(2 * 0.05 ** 2 + 2 * 0.02 ** 2)
    assert result.standard_error == pytest.approx(se) and result.df == math.inf
    assert result.detectable == pytest.approx(math.expm1((2.5758293 + 1.6448536) * se), rel=1e-6)
    # A true change of exactly that size is significant with probability POWER (normal model, one tail).
    z = math.log1p(result.detectable) / se - 2.5758293
    assert 0.5 * (1 + math.erf(z / math.sqrt(2))) == pytest.approx(POWER, abs=1e-6)


def test_run_noise_bounds_the_error_even_when_the_processes_agree_exactly():
    result = significance([1.0] * 5, [1.02] * 5, Noise(0.1, 0.02, "test"))
    assert result.process_sd == 0 and result.standard_error == pytest.approx(0.02 * math.sqrt(2))
    assert result.significant is False


def test_no_test_without_positive_values():
    result = significance([0.0], [2.0], Noise(0.1, 0.0))
    assert result.significant is None and result.test == "none"


def test_student_t_quantile_inverts_the_p_value():
    assert student_t_quantile(0.995, 4) == pytest.approx(4.604, abs=1e-3)
    assert student_t_quantile(0.975, 10) == pytest.approx(2.228, abs=1e-3)
    assert student_t_quantile(0.95, math.inf) == pytest.approx(1.6449, abs=1e-4)


def test_clopper_pearson_matches_published_intervals():
    assert clopper_pearson(0, 100)[1] == pytest.approx(0.0362, abs=1e-4)
    low, high = clopper_pearson(1, 100)
    assert low == pytest.approx(0.000253, abs=1e-6) and high == pytest.approx(0.0545, abs=1e-4)
    low, high = clopper_pearson(5, 10)
    assert low == pytest.approx(0.1871, abs=1e-4) and high == pytest.approx(0.8129, abs=1e-4)


def test_student_t_matches_tables():
    assert student_t_p(4.604, 4) == pytest.approx(0.01, abs=1e-4)
    assert student_t_p(12.706, 1) == pytest.approx(0.05, abs=1e-4)
    assert student_t_p(2.571, 5) == pytest.approx(0.05, abs=1e-4)
    assert student_t_p(-3.169, 10) == pytest.approx(0.01, abs=1e-4)
    assert student_t_p(0.0, 7) == 1.0


def test_student_t_takes_welchs_fractional_degrees_of_freedom():
    assert student_t_p(3.0, 4) < student_t_p(3.0, 3.34) < student_t_p(3.0, 3)
    assert student_t_p(3.0, 3.34) == pytest.approx(0.0502944817, rel=1e-8)  # mpmath.betainc(1.67, 0.5, 0, x)
    assert student_t_p(2.0, 200) == pytest.approx(0.0468531862, rel=1e-8)


def test_environment_differences_name_torch_versions():
    base = [process()]
    cand = [process(environment={**ENVIRONMENT, "torch": "2.14.0.dev20261201+cpu"},
                    qbench={"version": "0.1.0", "commit": "d" * 40, "dirty": False})]
    fields = {d.field: (d.base, d.cand) for d in environment_differences(base, cand)}
    assert fields["torch"] == (("2.13.0+cpu",), ("2.14.0.dev20261201+cpu",))
    assert fields["qbench.commit"] == (("c" * 40,), ("d" * 40,))
    assert "python" not in fields


def test_environment_differences_name_isa_variables():
    base = [process(environment={**ENVIRONMENT, "variables": {"OMP_NUM_THREADS": "1"}})]
    cand = [process(environment={**ENVIRONMENT, "variables": {"OMP_NUM_THREADS": "1", "ONEDNN_MAX_CPU_ISA": "AVX2"}})]
    (difference,) = environment_differences(base, cand)
    assert (difference.field, difference.base, difference.cand) == ("variables.ONEDNN_MAX_CPU_ISA", ("unset",),
                                                                    ("AVX2",))


def report_with_everything():
    base = [process(0.010), process(0.010, case=OTHER), process(case=make_case(model="resnet50"))]
    cand = [process(0.020, environment={**ENVIRONMENT, "torch": "2.14.0"}),
            process(0.010, case=OTHER, environment={**ENVIRONMENT, "torch": "2.14.0"})]
    rows = compare(base, cand)
    return CompareReport("run aaaaaaaa (quick, cccccccc, 2026-11-22 10:00)",
                         "run bbbbbbbb (quick, dddddddd, 2026-11-22 11:00)", tuple(rows),
                         tuple(environment_differences(base, cand)), ("results/m/runs/x.jsonl:3: corrupt line",))


def test_markdown_names_both_sides_environment_and_puts_unchanged_in_details():
    text = render_markdown(report_with_everything())
    lines = text.splitlines()
    assert lines[0] == "### qbench compare"
    assert "**Base:** run aaaaaaaa (quick, cccccccc, 2026-11-22 10:00)  " in lines
    assert "**Candidate:** run bbbbbbbb (quick, dddddddd, 2026-11-22 11:00)" in lines
    assert "**1 regressed** · 0 improved · 0 incomparable · 1 missing · 1 undetectable · 4 unchanged" in lines
    assert "| torch | 2.13.0+cpu | 2.14.0 |" in lines
    assert "- `results/m/runs/x.jsonl:3: corrupt line`" in lines
    regressed = lines.index("#### Regressed (1)")
    assert lines[regressed + 2] == "| case | metric | base | candidate | ratio | why |"
    assert lines[regressed + 4].startswith(f"| `{CASE.case_id}` | latency | 10±0.1 ms | 20±0.2 ms | 2.000 | +100.0%")
    assert "#### Missing (1)" in lines
    details = lines.index("<details><summary>Unchanged (4)</summary>")
    assert lines.index("<details><summary>Undetectable (1)</summary>") > regressed
    assert lines.index("</details>") > regressed and details > regressed


def test_json_has_every_comparison_with_values_spread_and_test():
    document = json.loads(render_json(report_with_everything()))
    assert document["schema_version"] == 2 and document["regressed"] is True
    assert document["counts"] == {"regressed": 1, "improved": 0, "incomparable": 0, "missing": 1,
                                  "undetectable": 1, "unchanged": 4}
    assert document["environment_differences"] == [{"field": "torch", "base": ["2.13.0+cpu"],
                                                     "candidate": ["2.14.0"]}]
    first = document["comparisons"][0]
    assert set(first) == {"case_id", "machine_id", "metric", "unit", "verdict", "reason", "ratio", "base",
                          "candidate", "threshold", "test"}
    assert first["verdict"] == "regressed" and first["unit"] == "s" and first["ratio"] == pytest.approx(2.0)
    assert first["base"]["value"] == pytest.approx(0.010) and first["base"]["processes"] == 1
    assert first["base"]["q1"] < first["base"]["value"] < first["base"]["q3"]
    assert first["test"]["significant"] is True and first["test"]["process_sd_measured"] is False
    assert first["test"]["detectable"] > 0.5 and first["test"]["assumed_from"] == "default"
    assert first["test"]["processes"] == [1, 1] and first["test"]["df"] is None
    missing = next(c for c in document["comparisons"] if c["verdict"] == "missing")
    assert missing["base"] is None and missing["ratio"] is None and missing["test"] is None


def test_table_has_a_row_per_comparison_and_a_count_line():
    report = report_with_everything()
    text = render_table(report)
    assert text.splitlines()[0].startswith("base       run aaaaaaaa")
    assert "differs    torch: 2.13.0+cpu → 2.14.0" in text
    assert text.splitlines()[-1] == "1 regressed, 0 improved, 0 incomparable, 1 missing, 1 undetectable, 4 unchanged"
    assert len([line for line in text.splitlines() if CASE.case_id in line]) == 3
    changed_only = render_table(report, only_changed=True)
    assert "unchanged  " not in changed_only and "regressed  " in changed_only


def test_comparing_never_imports_torch():
    code = ("import sys, qbench.cli.compare, qbench.compare.pairwise, qbench.report.compare, qbench.history.sides, "
            "qbench.thresholds; "
            "print(sorted(m for m in ('torch', 'torchvision', 'pandas') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_sides_of_several_runs_divide_the_run_noise():
    one = significance([1.0], [1.0], Noise(0.01, 0.10, "test"))
    four = significance([1.0] * 4, [1.0] * 4, Noise(0.01, 0.10, "test"), runs=(4, 4))
    assert one.standard_error == pytest.approx(math.sqrt(2 * 0.01 ** 2 + 2 * 0.10 ** 2))
    assert four.process_sd == 0 and four.standard_error == pytest.approx(0.10 * math.sqrt(2 / 4))
    assert "over 4 vs 4 runs" in four.describe()


def test_compare_counts_the_runs_of_each_side():
    base = [process(0.010, run_id=f"{i}" * 32) for i in range(3)]
    cand = [process(0.010, run_id="9" * 32)]
    latency = by_metric(compare(base, cand))["latency"]
    assert latency.test.runs == (3, 1)


def test_an_unbounded_detectable_size_is_infinite_in_text_and_null_in_json():
    rows = compare(processes([1e-300, 1.0]), processes([1e-300, 1.0]))
    latency = by_metric(rows)["latency"]
    assert latency.test.detectable == math.inf and latency.verdict == "undetectable"
    assert "detectable ±∞% only" in latency.reason
    document = json.loads(render_json(CompareReport("a", "b", tuple(rows))))
    assert [c["test"]["detectable"] for c in document["comparisons"] if c["metric"] == "latency"] == [None]
