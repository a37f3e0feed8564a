"""qbench.compare.accuracy_gate: limits, ISA classes, the three checks on hand-built records, and the parent check on
the learned resnet18 of tests/learned.py calibrated well (passes) and badly (fails)."""

import dataclasses

import pytest

from qbench.compare.accuracy_gate import (gate, history_findings, isa_class, isa_findings, max_drop_for,
                                          parent_findings, parse_max_drop, render_findings)
from qbench.errors import ConfigError
from tests.factories import MACHINE, make_case, make_record
from tests.learned import learned  # noqa: F401  (a session fixture)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

VNNI = {**MACHINE, "isa": ["avx2", "avx512f", "avx512_vnni"]}
AVX2_HOST = {**MACHINE, "machine_id": "x86_64-old-2c-8g-123456", "isa": ["avx2", "fma"]}


def accuracy(correct: list[bool], reference_top1: float | None = None, max_drop: str = "") -> dict:
    labels = list(range(len(correct)))
    result = {"labelled": True, "top1": sum(correct) / len(correct), "labels": labels,
              "predictions": [label if ok else label + 1 for label, ok in zip(labels, correct)],
              "subset": {"images": len(correct), "files_sha256": "f" * 64, "labels": "wnid", "transform": "t"},
              "reference": None if reference_top1 is None else {"top1": reference_top1},
              "mcnemar_p": None}
    if max_drop:
        result["max_drop"] = max_drop
    return result


def record(correct, *, model="resnet18", mode="static_fx", run_id="run1", started="2026-11-22T10:00:00Z",
           machine=VNNI, reference_top1=0.9, runner="native", max_drop="", weights="pretrained"):
    case = make_case(model=model, mode=mode, engine=None if mode == "fp32" else "x86", runner=runner, weights=weights)
    metrics = {"accuracy": accuracy(correct, None if mode == "fp32" else reference_top1, max_drop)}
    return make_record(case, run_id=run_id, started_at=started, machine=machine, metrics=metrics,
                       details={"weights": {"sha256": "w" * 64}})


def test_max_drop_grammar_and_defaults():
    assert parse_max_drop("") == ()
    assert parse_max_drop("2%, shufflenet*=4%") == (("shufflenet*", 0.04), ("*", 0.02))
    assert max_drop_for("resnet18") == (0.01, "default")
    assert max_drop_for("mobilenet_v3_large") == (0.03, "default for mobilenet_v3*")
    assert max_drop_for("shufflenet_v2_x0_5") == (0.05, "default for shufflenet_v2*")
    assert max_drop_for("resnet18", "2%") == (0.02, "suite")
    assert max_drop_for("shufflenet_v2_x1_0", "2%") == (0.05, "default for shufflenet_v2*")
    assert max_drop_for("shufflenet_v2_x1_0", "2%, shufflenet*=4%") == (0.04, "suite (shufflenet*)")
    for bad in ("1", "x%", "1%, 2%", "=1%"):
        with pytest.raises(ConfigError):
            parse_max_drop(bad)


def test_isa_classes():
    assert isa_class(record([True])) == "x86_64/vnni"
    assert isa_class(record([True], machine=AVX2_HOST)) == "x86_64/avx2"
    assert isa_class(record([True], runner="avx2")) == "x86_64/avx2"
    assert isa_class(record([True], machine={**VNNI, "isa": ["amx_int8", "avx512_vnni"]})) == "x86_64/amx"
    arm = {**MACHINE, "arch": "aarch64", "isa": ["asimd", "asimddp", "i8mm"]}
    assert isa_class(record([True], machine=arm)) == "aarch64/i8mm"


def test_parent_check_uses_the_family_limit():
    fine = record([True] * 99 + [False], reference_top1=1.0)                        # -1.0%: at the limit
    worse = record([True] * 98 + [False] * 2, reference_top1=1.0, run_id="run3")    # -2.0%
    mobile = record([True] * 98 + [False] * 2, model="mobilenet_v3_large", reference_top1=1.0)
    suite = record([True] * 98 + [False] * 2, reference_top1=1.0, max_drop="3%")
    random = record([False] * 100, reference_top1=1.0, weights="random")            # never gated
    fp32 = record([True] * 50 + [False] * 50, mode="fp32")
    verdicts = [(f.case_id.split("/")[0], f.verdict, f.limit) for f in
                parent_findings([fine, worse, mobile, dataclasses.replace(suite, run_id="run2"), random, fp32])]
    assert verdicts == [("resnet18", "passes", 0.01), ("resnet18", "fails", 0.01),
                        ("mobilenet_v3_large", "passes", 0.03), ("resnet18", "passes", 0.03)]


def test_history_check_is_mcnemar_on_the_same_images_per_isa_class():
    before = record([True] * 100, run_id="a", started="2026-11-20T00:00:00Z")
    slightly = record([True] * 99 + [False], run_id="b", started="2026-11-21T00:00:00Z")
    much = record([True] * 85 + [False] * 15, run_id="c", started="2026-11-22T00:00:00Z")
    other_isa = record([True] * 50 + [False] * 50, run_id="d", started="2026-11-23T00:00:00Z", machine=AVX2_HOST)
    history = [before, slightly, much, other_isa]
    found = {f.run_id: f for f in history_findings([slightly, much, other_isa], history)}
    assert found["b"].verdict == "passes" and found["b"].p_value == 1.0
    assert found["c"].verdict == "fails" and found["c"].p_value < 0.001 and found["c"].reference == 0.99
    assert "d" not in found  # the first record of its ISA class has no reference yet


def test_isa_effect_flagged_across_machines():
    vnni = record([True] * 95 + [False] * 5, run_id="a")
    avx2 = record([True] * 89 + [False] * 11, run_id="b", machine=AVX2_HOST)
    close = record([True] * 94 + [False] * 6, run_id="c", machine={**AVX2_HOST, "machine_id": "other"})
    found = isa_findings([avx2, close], [vnni, avx2, close])
    # b is 6 pt below the VNNI host and 5 pt below c; c is within 1 pt of the VNNI host: flagged only against b
    assert [(f.run_id, f.verdict) for f in found] == [("b", "flagged"), ("b", "flagged"), ("c", "flagged")]
    assert AVX2_HOST["machine_id"] in found[2].detail
    assert "ISA effect" in found[0].detail and not any(f.failing for f in found)
    # the same case under the avx2 runner profile on the VNNI host is another ISA class: compared, flagged
    capped = record([True] * 90 + [False] * 10, run_id="e", runner="avx2")
    (flag,) = isa_findings([capped], [vnni, capped])
    assert flag.isa_class == "x86_64/avx2" and "resnet18/static_fx/x86/b1/t1/pretrained on" in flag.detail


def test_render_lists_regressions_for_ci():
    text = render_findings(gate([record([True] * 90 + [False] * 10, reference_top1=1.0)], []))
    assert "REGRESSION accuracy top-1 below fp32 parent  resnet18/static_fx/x86/b1/t1/pretrained" in text
    assert text.splitlines()[-1] == "verdict   accuracy gate: 1 failing, 0 ISA effect(s) flagged, 0 passing"


@pytest.mark.slow
def test_gate_fails_a_badly_calibrated_model_and_passes_a_good_one(learned):
    from qbench.records import AccuracySpec, CalibrationSpec
    from qbench.runner.probes.accuracy import evaluate_case
    from qbench.runner.registry.data import calibration_batches, example_input, transform_for
    from qbench.runner.registry.models import open_model
    from qbench.runner.registry.modes import apply_mode

    source = open_model("resnet18", f"checkpoint:{learned.checkpoint}")
    reference = source.float_model()
    calibration, _ = calibration_batches(CalibrationSpec(source=learned.train, batches=2, batch_size=8),
                                         source.input_size, transform_for(source))
    spec = AccuracySpec(source=learned.val, images=48, batch_size=12)

    def gated(batches):
        model = apply_mode("static_fx", source, engine="x86", calibration=batches,
                           example_input=example_input(1, source.input_size)).model
        result = evaluate_case(model, reference, spec, source, engine="x86")
        case = make_case(weights=f"checkpoint:{learned.checkpoint}")
        return parent_findings([make_record(case, metrics={"accuracy": result})])[0]

    good, bad = gated(calibration), gated([batch * 0.1 for batch in calibration])
    assert good.verdict == "passes" and good.reference >= 0.9, good
    assert bad.verdict == "fails" and bad.top1 < good.top1, bad


def test_merge_fail_on_regression_and_history_exit_1_on_the_gate(tmp_path):
    from pathlib import Path

    from qbench.history.store import RunFile
    from tests.factories import qbench
    from tests.factories import write_history

    def run(run_id, correct, started):
        records = [record(correct, run_id=run_id, started=started, machine=MACHINE, reference_top1=1.0)]
        header = {"kind": "run", "run_id": run_id, "started_at": started, "machine": MACHINE,
                  "qbench": {"commit": "c" * 40}, "suite": {"name": "t"}}
        return RunFile(path=Path(f"/history/{run_id}.jsonl"), header=header, records=records, footer={})

    write_history(tmp_path / "good", [run("a" * 32, [True] * 100, "2026-11-20T03:00:00.000000Z")])
    write_history(tmp_path / "bad", [run("b" * 32, [True] * 80 + [False] * 20, "2026-11-21T03:00:00.000000Z")])
    into = tmp_path / "history"
    good = qbench("merge", str(tmp_path / "good"), "--into", str(into), "--fail-on-regression")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "verdict   accuracy gate: 0 failing, 0 ISA effect(s) flagged, 1 passing" in good.stdout
    bad = qbench("merge", str(tmp_path / "bad"), "--into", str(into), "--fail-on-regression")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "REGRESSION accuracy top-1 below fp32 parent  resnet18/static_fx/x86/b1/t1/pretrained" in bad.stdout
    assert "REGRESSION accuracy top-1 down against history" in bad.stdout
    assert qbench("history", "--results", str(into)).returncode == 1
