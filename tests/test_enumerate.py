"""Expanding a suite against a catalog: the grid, de-duplication, filters and every static skip reason."""

import pytest

from qbench.plan.expand import Catalog, custom_model_names, expand
from qbench.errors import ConfigError
from qbench.suite.load import parse_suite

CATALOG = Catalog(
    models={
        "resnet18": {"quantizable": True, "input_size": 224, "tags": ["float", "quantizable", "resnet"]},
        "resnet50": {"quantizable": True, "input_size": 224, "tags": ["float", "quantizable", "resnet"]},
        "vit_b_16": {"quantizable": False, "input_size": 224, "tags": ["float", "vision_transformer"]},
        "mypkg.nets:tiny": {"quantizable": False, "input_size": 32, "tags": ["custom"]},
    },
    engines={"x86": None, "fbgemm": None, "onednn": None, "qnnpack": "prepack failed: unknown architecure"},
    environment={"torch": "2.13.0"},
)


def suite(*matrices, **defaults):
    return parse_suite({"suite": {"name": "t"}, "defaults": defaults, "matrix": list(matrices)})


def ids(planned):
    return [p.case.case_id for p in planned]


def test_grid_is_the_cartesian_product_with_fp32_once_per_model():
    planned = expand(suite({"models": ["resnet18"], "modes": ["fp32", "static_fx"], "engines": ["x86", "fbgemm"],
                            "batch_sizes": [1, 8]}), CATALOG)
    assert ids(planned) == [
        "resnet18/fp32/-/b1/t1/random", "resnet18/fp32/-/b8/t1/random",
        "resnet18/static_fx/x86/b1/t1/random", "resnet18/static_fx/x86/b8/t1/random",
        "resnet18/static_fx/fbgemm/b1/t1/random", "resnet18/static_fx/fbgemm/b8/t1/random",
    ]
    assert all(p.skip_reason is None for p in planned)


def test_globs_tags_exclude_and_deduplication_across_matrices():
    planned = expand(suite({"models": ["*"], "modes": ["fp32"]},
                           {"models": ["resnet*"], "exclude": ["resnet50"], "modes": ["fp32", "static_eager"],
                            "tags": ["quantizable"]}, engines=["x86"]), CATALOG)
    assert ids(planned) == ["resnet18/fp32/-/b1/t1/random", "resnet18/static_eager/x86/b1/t1/random",
                            "resnet50/fp32/-/b1/t1/random", "vit_b_16/fp32/-/b1/t1/random"]


def test_skip_reasons_for_engines_and_non_quantizable_models():
    planned = {p.case.case_id: p.skip_reason for p in expand(
        suite({"models": ["vit_b_16", "resnet18"], "modes": ["dynamic", "static_eager", "prequantized"],
               "engines": ["x86", "qnnpack"]}), CATALOG)}
    assert planned["resnet18/static_eager/x86/b1/t1/random"] is None
    assert planned["resnet18/dynamic/qnnpack/b1/t1/random"] == \
        "engine qnnpack does not work here: prepack failed: unknown architecure"
    assert planned["vit_b_16/static_eager/x86/b1/t1/random"] == \
        "vit_b_16 has no quantizable variant in torchvision.models.quantization"
    assert planned["vit_b_16/prequantized/x86/b1/t1/random"].startswith("vit_b_16 has no quantizable")
    assert planned["vit_b_16/dynamic/x86/b1/t1/random"] is None


def test_unknown_model_suggests_close_names():
    with pytest.raises(ConfigError, match=r"\[\[matrix\]\] 1: model 'resnet81' matches no model; did you mean resnet18"):
        expand(suite({"models": ["resnet81"], "modes": ["fp32"]}), CATALOG)


def test_custom_factories_are_resolved_by_the_catalog():
    spec = suite({"models": ["mypkg.nets:tiny"], "modes": ["fp32"]})
    assert custom_model_names(spec) == ["mypkg.nets:tiny"]
    assert ids(expand(spec, CATALOG)) == ["mypkg.nets:tiny/fp32/-/b1/t1/random"]


def test_calibration_of_the_suite_is_part_of_every_case():
    spec = parse_suite({"suite": {"name": "t"}, "calibration": {"batches": 7},
                        "matrix": [{"models": ["resnet18"], "modes": ["static_fx"], "engines": ["x86"]}]})
    (plan,) = expand(spec, CATALOG)
    assert plan.case.calibration.batches == 7


def test_qconfig_axis_multiplies_quantized_cases_but_not_their_fp32_parent():
    planned = expand(suite({"models": ["resnet18"], "modes": ["fp32", "static_fx", "dynamic"], "engines": ["x86"],
                            "qconfigs": ["default", "histogram/per_channel/symmetric", "default@fbgemm"]}), CATALOG)
    by_id = {p.case.case_id: p for p in planned}
    assert [i for i in by_id if i.startswith("resnet18/fp32")] == ["resnet18/fp32/-/b1/t1/random"]
    sweep = by_id["resnet18/static_fx/x86/b1/t1/random#histogram/per_channel/symmetric"]
    assert sweep.case.qconfig == "histogram/per_channel/symmetric" and sweep.skip_reason is None
    assert by_id["resnet18/static_fx/x86/b1/t1/random#default@fbgemm"].skip_reason is None
    assert "dynamic" in by_id["resnet18/dynamic/x86/b1/t1/random#default@fbgemm"].skip_reason
    assert by_id["resnet18/dynamic/x86/b1/t1/random"].skip_reason is None


def test_a_misspelt_qconfig_is_a_one_line_error_naming_the_matrix():
    with pytest.raises(ConfigError, match=r"\[\[matrix\]\] 1.*histogramm") as caught:
        suite({"models": ["resnet18"], "modes": ["static_fx"], "engines": ["x86"], "qconfigs": ["histogramm"]})
    assert "\n" not in str(caught.value)


def test_qat_cases_carry_the_suites_qat_spec_and_other_modes_none():
    spec = parse_suite({"suite": {"name": "t"}, "qat": {"steps": 7, "lr": 0.001, "schedule": "constant"},
                        "matrix": [{"models": ["resnet18"], "modes": ["static_fx", "qat"], "engines": ["x86"]}]})
    cases = {p.case.mode: p.case for p in expand(spec, CATALOG)}
    assert cases["qat"].qat.steps == 7 and cases["qat"].qat.schedule == "constant"
    assert cases["static_fx"].qat is None


def test_qat_schedule_and_accuracy_tables_are_checked():
    base = {"suite": {"name": "t"}, "matrix": [{"models": ["resnet18"], "modes": ["fp32"]}]}
    with pytest.raises(ConfigError, match="schedule 'linear'"):
        parse_suite({**base, "qat": {"schedule": "linear"}})
    with pytest.raises(ConfigError, match=r"\[accuracy\].*'imagez'"):
        parse_suite({**base, "accuracy": {"imagez": 5}})
    assert parse_suite({**base, "accuracy": {"images": 0}}).accuracy.images == 0


def test_a_mode_the_catalog_says_cannot_be_built_under_an_engine_is_planned_as_skipped_with_its_reason():
    """`qbench list` must say what the worker will do: pt2e under an engine without a torchao quantizer is skipped
    in the plan with the worker's own reason, and the same mode under another engine still runs."""
    catalog = Catalog(models=CATALOG.models, engines=CATALOG.engines, environment={},
                      modes={"pt2e": {"x86": None, "fbgemm": "no pt2e quantizer lowers to FBGEMM"}})
    planned = {p.case.case_id: p.skip_reason for p in expand(
        suite({"models": ["resnet18"], "modes": ["static_fx", "pt2e"], "engines": ["x86", "fbgemm"]}), catalog)}
    assert planned["resnet18/pt2e/fbgemm/b1/t1/random"] == "no pt2e quantizer lowers to FBGEMM"
    assert planned["resnet18/pt2e/x86/b1/t1/random"] is None
    assert planned["resnet18/static_fx/fbgemm/b1/t1/random"] is None
