"""PyTorch's INT8 claims: verdicts at and around every boundary, pairing rules, n/a with reasons, random weights
flagged, the rendered table's provenance, `qbench claims` end to end and the report's Claims section."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from qbench.compare.claims import (claim_rows, judge_accuracy, judge_bandwidth, judge_size, judge_speedup,
                                   speedup_interval)
from qbench.report.claims import claims_frame, render_claims
from qbench.report.document import write_report
from tests.factories import MACHINE, make_case, make_record, one_line_error, qbench, write_run

FP32 = make_case(mode="fp32", engine=None, weights="pretrained")
INT8 = make_case(mode="static_fx", engine="x86", weights="pretrained")
PEAKS = {"copy_gbps": 10.0, "triad_gbps": 11.0, "fp32_gmacs": 50.0, "int8_gmacs": 200.0, "threads": 1,
         "runner": "native", "torch": "2.13.0+cpu", "measured_at": "2026-11-22T10:00:00Z", "method": {}}


def labelled(delta, ci=None, agreement=0.98, sqnr=30.0):
    return {"subset": {"source": "/data/val", "images": 500, "seed": 0, "files_sha256": "ab", "labels": "wnid",
                       "transform": "ImageClassification"}, "labelled": True, "top1": 0.70 + delta, "top5": 0.9,
            "reference": {"top1": 0.70, "top5": 0.9}, "delta_top1": delta, "delta_top1_ci": ci,
            "mcnemar_p": 0.5, "agreement": agreement, "sqnr_db": sqnr, "predictions": [], "labels": []}


def label_free(agreement, sqnr=25.0):
    return {"subset": {"source": "synthetic", "images": 32, "seed": 0, "files_sha256": "cd", "labels": None,
                       "transform": "ImageClassification"}, "labelled": False, "top1": None, "top5": None,
            "reference": {"top1": None, "top5": None}, "delta_top1": None, "delta_top1_ci": None,
            "mcnemar_p": None, "agreement": agreement, "sqnr_db": sqnr, "predictions": [],
            "reference_predictions": [], "labels": None}


def record(case, *, samples=(0.010,) * 5, size=1000, bytes_total=None, accuracy=None, run_id="run1",
           machine=MACHINE, status="ok", started_at="2026-11-22T10:00:00.000000Z"):
    built = make_record(case, samples=samples, size=size, status=status, run_id=run_id, machine=machine,
                        started_at=started_at)
    if status == "ok":
        if bytes_total is not None:
            built.metrics["bandwidth"] = {"bytes_total": bytes_total, "bytes_weights": bytes_total // 2,
                                          "bytes_activations_read": bytes_total // 4,
                                          "bytes_activations_written": bytes_total // 4, "macs": 10 ** 9,
                                          "ops": 50, "method": "hooks", "by_op": {},
                                          "measured": {"available": False, "reason": "no PMU"}}
            built.details["peaks"] = PEAKS
        if accuracy is not None:
            built.metrics["accuracy"] = accuracy
    return built


def claims_of(row):
    return {name: claim["verdict"] for name, claim in row["claims"].items()}


# ---------------------------------------------------------------------------------------------- verdicts

@pytest.mark.parametrize("ratio, verdict", [(4.0, "holds"), (3.5, "holds"), (3.4999, "partly"), (2.0, "partly"),
                                            (1.9999, "fails"), (1.03, "fails")])
def test_size_verdicts_at_their_boundaries(ratio, verdict):
    assert judge_size(ratio).verdict == verdict


@pytest.mark.parametrize("ratio, verdict, flags", [(4.5, "holds", ("exceeds",)), (4.0, "holds", ()),
                                                   (2.0, "holds", ()), (1.9999, "partly", ()), (1.2, "partly", ()),
                                                   (1.1999, "fails", ())])
def test_bandwidth_verdicts_at_their_boundaries(ratio, verdict, flags):
    claim = judge_bandwidth(ratio)
    assert (claim.verdict, claim.flags) == (verdict, flags)


@pytest.mark.parametrize("ratio, low, verdict", [
    (2.5, 2.0, "holds"),      # the whole interval clears 2x
    (2.5, 1.99, "partly"),    # the estimate does, the interval does not
    (1.2, 1.01, "partly"),
    (1.2, 1.0, "fails"),      # not measurably faster
    (1.1999, 1.1, "fails"),
    (0.75, 0.6, "fails"),
])
def test_speedup_needs_its_interval_to_clear_the_bar(ratio, low, verdict):
    claim = judge_speedup(ratio, low, ratio * 1.1, "processes")
    assert claim.verdict == verdict
    if (ratio, low) == (2.5, 1.99):
        assert "reaches below 2x" in claim.reason
    if (ratio, low) == (1.2, 1.0):
        assert "not measurably faster" in claim.reason


def test_speedup_above_4x_still_holds_and_is_flagged():
    claim = judge_speedup(12.7, 11.9, 13.9, "samples")
    assert (claim.verdict, claim.flags) == ("holds", ("exceeds",))
    assert "one process" in claim.reason


@pytest.mark.parametrize("delta, ci, verdict", [
    (-0.010, [-0.020, 0.000], "holds"),    # 1 pt, interval within ±2 pt
    (0.004, [-0.010, 0.018], "holds"),
    (-0.005, [-0.030, 0.020], "partly"),   # small delta, interval too wide to tell
    (-0.005, None, "partly"),
    (-0.0101, [-0.015, -0.005], "partly"),
    (-0.030, [-0.040, -0.020], "partly"),
    (-0.0301, [-0.040, -0.020], "fails"),
    (0.050, [0.030, 0.070], "fails"),
])
def test_labelled_accuracy_verdicts_use_the_paired_delta_and_its_interval(delta, ci, verdict):
    claim = judge_accuracy(labelled(delta, ci), "pretrained")
    assert claim.verdict == verdict
    assert claim.value == pytest.approx(delta * 100)
    assert "500 labelled images" in claim.reason


@pytest.mark.parametrize("agreement, verdict", [(1.0, "holds"), (0.99, "holds"), (0.9899, "partly"),
                                                (0.95, "partly"), (0.9499, "fails")])
def test_label_free_accuracy_verdicts_use_agreement(agreement, verdict):
    assert judge_accuracy(label_free(agreement), "checkpoint").verdict == verdict


def test_accuracy_on_random_weights_is_na_and_says_why_with_the_figures():
    claim = judge_accuracy(label_free(0.94, sqnr=21.3), "random")
    assert claim.verdict == "n/a"
    assert "random-init weights" in claim.reason and "agreement 0.940" in claim.reason and "21.3 dB" in claim.reason
    assert judge_accuracy(None, "pretrained").reason == "not measured (no metrics.accuracy)"


def test_speedup_interval_uses_processes_when_both_sides_have_three():
    fp32 = [record(FP32, samples=[m] * 3) for m in (0.030, 0.031, 0.032)]
    int8 = [record(INT8, samples=[m] * 3) for m in (0.010, 0.0105, 0.011)]
    ratio, low, high, basis = speedup_interval(fp32, int8)
    assert basis == "processes"
    assert ratio == pytest.approx(0.031 / 0.0105)
    assert 0.030 / 0.011 - 1e-9 <= low <= ratio <= high <= 0.032 / 0.010 + 1e-9
    single = speedup_interval(fp32[:1], int8[:1])
    assert single[3] == "samples" and single[0] == pytest.approx(3.0)


# ---------------------------------------------------------------------------------------------- pairing

def test_known_ratios_give_the_expected_claims_and_derived_bandwidth():
    rows = claim_rows([
        record(FP32, samples=[0.030] * 5, size=4000, bytes_total=8_000_000),
        record(INT8, samples=[0.010] * 5, size=1000, bytes_total=2_000_000,
               accuracy=labelled(-0.004, [-0.012, 0.004])),
    ])
    (row,) = rows
    assert claims_of(row) == {"size": "holds", "bandwidth": "holds", "speedup": "holds", "accuracy": "holds"}
    assert row["claims"]["size"]["value"] == pytest.approx(4.0)
    assert row["claims"]["bandwidth"]["value"] == pytest.approx(4.0)
    speedup = row["claims"]["speedup"]
    assert (speedup["value"], speedup["low"], speedup["high"]) == pytest.approx((3.0, 3.0, 3.0))
    assert row["int8_bandwidth"]["gbps"] == pytest.approx(2_000_000 / 0.010 / 1e9)
    assert row["int8_bandwidth"]["pct_of_peak"] == pytest.approx(100 * 0.2 / 11.0)  # of the triad peak
    assert row["fp32_bandwidth"]["gbps"] == pytest.approx(8_000_000 / 0.030 / 1e9)
    assert row["random_weights"] is False


def test_a_parent_on_another_runner_batch_thread_count_weights_or_machine_never_pairs():
    other_machine = {**MACHINE, "machine_id": "aarch64-other-4c-8g-123456", "arch": "aarch64"}
    parents = [record(make_case(mode="fp32", engine=None, weights="pretrained", runner="avx2"), size=4000),
               record(make_case(mode="fp32", engine=None, weights="pretrained", batch_size=8), size=4000),
               record(make_case(mode="fp32", engine=None, weights="pretrained", threads=2), size=4000),
               record(make_case(mode="fp32", engine=None, weights="random"), size=4000),
               record(FP32, size=4000, machine=other_machine)]
    (row,) = claim_rows(parents + [record(INT8, size=1000)])
    for name in ("size", "bandwidth", "speedup"):
        assert row["claims"][name]["verdict"] == "n/a"
        assert row["claims"][name]["reason"].startswith("no fp32 parent (same model, batch, threads, weights, "
                                                        "runner, machine) in run run1")


def test_parents_come_from_the_same_run_unless_a_run_is_chosen():
    fp32 = record(FP32, size=4000, run_id="base")
    int8 = record(INT8, size=1000, run_id="cand")
    (alone,) = claim_rows([fp32, int8])
    assert alone["claims"]["size"]["verdict"] == "n/a"
    older = record(FP32, size=2000, run_id="older", started_at="2026-11-01T10:00:00.000000Z")
    (chosen,) = claim_rows([int8], parents=[older, fp32])
    assert chosen["claims"]["size"]["value"] == pytest.approx(4.0)
    assert chosen["fp32_run_id"] == "base"


def test_a_qat_case_pairs_with_its_fp32_parent():
    from qbench.records import QatSpec

    qat = make_case(mode="qat", engine="x86", weights="pretrained", qat=QatSpec())
    (row,) = claim_rows([record(FP32, size=4000), record(qat, size=1000)])
    assert row["claims"]["size"]["value"] == pytest.approx(4.0)


def test_failed_cases_and_failed_parents_are_na_with_their_reason():
    rows = claim_rows([record(FP32, status="failed"), record(INT8, size=1000),
                       record(make_case(mode="static_fx", engine="qnnpack", weights="pretrained"),
                              status="skipped")])
    by_engine = {row["engine"]: row for row in rows}
    assert by_engine["x86"]["claims"]["size"] == {"verdict": "n/a", "value": None, "low": None, "high": None,
                                                  "reason": "fp32 parent failed: because", "flags": []}
    assert by_engine["x86"]["claims"]["accuracy"]["reason"] == "not measured (no metrics.accuracy)"
    assert {c["reason"] for c in by_engine["qnnpack"]["claims"].values()} == {"case skipped: because"}


def test_sensitivity_runs_are_not_judged():
    analysis = make_record(INT8, suite={"name": "sensitivity"})
    assert claim_rows([record(FP32, size=4000), analysis]) == []


def test_repeats_count_once_by_their_median():
    rows = claim_rows([record(FP32, samples=[m] * 3, size=4000) for m in (0.030, 0.040, 0.050)]
                      + [record(INT8, samples=[m] * 3, size=1000) for m in (0.010, 0.020, 0.0125)])
    (row,) = rows
    assert row["processes"] == 3 and row["fp32_processes"] == 3
    assert row["claims"]["speedup"]["value"] == pytest.approx(0.040 / 0.0125)
    assert row["speedup_basis"] == "processes"


def test_random_weights_are_stated_on_every_row_and_in_the_header():
    fp32, int8 = make_case(mode="fp32", engine=None), make_case(mode="static_fx", engine="x86")
    rows = claim_rows([record(fp32, size=4000), record(int8, size=1000, accuracy=label_free(0.9))])
    assert rows[0]["random_weights"] is True
    assert rows[0]["claims"]["accuracy"]["verdict"] == "n/a"
    text = render_claims(rows, "table")
    assert "RANDOM-INIT WEIGHTS" in text
    assert "random-init weights: accuracy is not meaningful (agreement 0.900" in text


def test_rendered_tables_carry_provenance_and_json_round_trips():
    rows = claim_rows([record(FP32, samples=[0.030] * 5, size=4000, bytes_total=8_000_000),
                       record(INT8, samples=[0.010] * 5, size=1000, bytes_total=2_000_000,
                              accuracy=labelled(-0.004, [-0.012, 0.004]))])
    table = render_claims(rows, "table")
    for text in (f"machine {MACHINE['machine_id']}", "isa avx2 avx512f", "torch dispatches to AVX512",
                 "torch 2.13.0+cpu", "torchvision 0.28.0", "runners native", "weights pretrained",
                 "batch sizes 1", "threads 1", "4.00x holds", "3.00x [3.00–3.00] holds",
                 "Δtop1 -0.4 pt [-1.2, +0.4] holds",
                 "logits SQNR 30.0 dB"):
        assert text in table, text
    markdown = render_claims(rows, "markdown")
    assert "| resnet18/static_fx/x86/b1/t1/pretrained " in markdown
    data = json.loads(render_claims(rows, "json"))
    assert data["rows"][0]["claims"]["bandwidth"]["value"] == pytest.approx(4.0)
    assert data["criteria"]["size"] == {"holds": 3.5, "partly": 2.0}
    frame = claims_frame(rows)
    assert frame.loc[0, "speedup_verdict"] == "holds" and frame.loc[0, "size"] == pytest.approx(4.0)


# ---------------------------------------------------------------------------------------------- CLI and report

RUN_ID = "a1" * 16


def good_run(tmp_path):
    records = [record(FP32, samples=[0.030] * 5, size=4000, run_id=RUN_ID),
               record(INT8, samples=[0.010] * 5, size=1000, run_id=RUN_ID)]
    return write_run(tmp_path, records, run_id=RUN_ID)


def test_claims_cli_prints_every_format(tmp_path):
    good_run(tmp_path)
    table = qbench("claims", "--results", str(tmp_path))
    assert table.returncode == 0, table.stderr
    assert "claims of latest = run a1a1a1a1" in table.stdout and "4.00x holds" in table.stdout
    assert "bandwidth: not measured (no metrics.bandwidth)" in table.stdout
    markdown = qbench("claims", "--results", str(tmp_path), "--format", "markdown", "--run", RUN_ID[:8],
                      "--machine", MACHINE["machine_id"])
    assert markdown.returncode == 0 and "| resnet18/static_fx/x86/b1/t1/pretrained " in markdown.stdout
    done = qbench("claims", "--results", str(tmp_path), "--format", "json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["rows"][0]["claims"]["speedup"]["verdict"] == "holds"


def test_claims_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    empty = qbench("claims", "--results", str(tmp_path / "none"))
    assert empty.returncode == 2 and "no run files under" in one_line_error(empty)
    good_run(tmp_path)
    for args, text in ((("--run", "fedcba98"), "unknown run"), (("--machine", "nope"), "no runs of machine 'nope'"),
                       (("--format", "xml"), "invalid choice")):
        done = qbench("claims", "--results", str(tmp_path), *args)
        assert done.returncode == 2 and text in one_line_error(done), done.stderr
    fp32_only = tmp_path / "fp32"
    write_run(fp32_only, [record(FP32, run_id="b2" * 16)], run_id="b2" * 16)
    done = qbench("claims", "--results", str(fp32_only))
    assert done.returncode == 2 and "has no int8 cases to judge" in one_line_error(done)


def test_claims_cli_with_a_corrupt_file_prints_the_rest_and_exits_3(tmp_path):
    path = good_run(tmp_path)
    (path.parent / "20261130T000000Z_broken_00000000.jsonl").write_text("{not json\n")
    done = qbench("claims", "--results", str(tmp_path), "--run", RUN_ID[:8])
    assert done.returncode == 3
    assert "4.00x holds" in done.stdout and "corrupt line" in one_line_error(done)


def test_report_has_a_claims_section(tmp_path):
    from qbench.history.store import read_run_file

    run = read_run_file(good_run(tmp_path / "results"))
    md_path, _ = write_report(tmp_path / "report", [run])
    markdown = md_path.read_text()
    claims = markdown.split("## Claims", 1)[1].split("\n## ", 1)[0]
    assert "| resnet18/static_fx/x86/b1/t1/pretrained " in claims and "4.00x holds" in claims
    assert "3.00x [3.00–3.00] holds" in claims
    assert "criteria: size holds ≥3.5x" in claims


def test_judging_and_rendering_claims_never_import_numpy():
    code = ("import sys\n"
            "from tests.test_claims import record, FP32, INT8\n"
            "from qbench.compare.claims import claim_rows\n"
            "from qbench.report.claims import render_claims\n"
            "fp32 = [record(FP32, samples=[m] * 3) for m in (0.030, 0.031, 0.032)]\n"
            "int8 = [record(INT8, samples=[m] * 3) for m in (0.010, 0.0105, 0.011)]\n"
            "render_claims(claim_rows(fp32 + int8))\n"
            "print(sorted(m for m in ('numpy', 'pandas', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.strip() == "[]"
