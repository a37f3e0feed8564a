"""Suite files: the shipped suites parse, and every kind of mistake is a one-line ConfigError naming the problem."""

import pytest

from qbench.errors import ConfigError
from qbench.records import CalibrationSpec, MeasureSpec
from qbench.suite.load import load_suite, parse_suite, resolve_suite_path

MINIMAL = {"suite": {"name": "t"}, "matrix": [{"models": ["resnet18"], "modes": ["fp32"]}]}


def with_matrix(**matrix):
    return {"suite": {"name": "t"}, "matrix": [{"models": ["resnet18"], "modes": ["fp32"], **matrix}]}


@pytest.mark.parametrize("name", ["quick", "smoke", "nightly"])
def test_shipped_suites_parse(name):
    spec = load_suite(name)
    assert spec.name == name
    assert spec.sha256 and len(spec.sha256) == 64
    assert spec.matrices


def test_smoke_suite_is_what_the_issue_asks():
    spec = load_suite("smoke")
    (matrix,) = spec.matrices
    assert matrix.modes == ("fp32", "dynamic", "static_eager", "static_fx", "prequantized")
    assert matrix.engines == ("x86", "qnnpack")
    assert matrix.tags == ("quantizable",) and matrix.batch_sizes == (1,) and matrix.weights == ("pretrained",)
    # issue 11: real accuracy every night, on Imagenette val, calibrated on its (disjoint) train split
    assert spec.accuracy.source == "data:imagenette2-160/val" and spec.accuracy.images == 500
    assert spec.calibration.source == "data:imagenette2-160/train"


def test_defaults_are_inherited_and_overridden():
    spec = parse_suite({"suite": {"name": "t"}, "defaults": {"engines": ["x86"], "batch_sizes": [1, 8]},
                        "matrix": [{"models": ["a"], "modes": ["static_fx"]},
                                   {"models": ["b"], "modes": ["dynamic"], "engines": ["qnnpack"]}]})
    first, second = spec.matrices
    assert first.engines == ("x86",) and first.batch_sizes == (1, 8)
    assert second.engines == ("qnnpack",) and second.batch_sizes == (1, 8)


def test_minimal_suite_gets_default_calibration_and_measure():
    spec = parse_suite(MINIMAL)
    assert spec.calibration == CalibrationSpec()
    assert spec.measure == MeasureSpec()
    assert spec.run.isolation == "fork"


@pytest.mark.parametrize("data, message", [
    ({**MINIMAL, "sutie": {}}, "unknown key 'sutie'"),
    ({"matrix": MINIMAL["matrix"]}, "missing [suite]"),
    ({"suite": {"name": "t"}}, "at least one [[matrix]]"),
    ({"suite": {"name": "t", "nmae": "x"}, "matrix": MINIMAL["matrix"]}, "unknown key 'nmae'"),
    (with_matrix(mdoes=["fp32"]), "unknown key 'mdoes'"),
    (with_matrix(modes=["static"]), "unknown mode 'static'; allowed: fp32, fp32_bf16, dynamic"),
    (with_matrix(modes=["dynamic"], engines=["x68"]), "unknown engine 'x68'; allowed: x86, fbgemm, onednn, qnnpack"),
    (with_matrix(modes=["dynamic"]), "quantized modes need 'engines'"),
    (with_matrix(batch_sizes=[0]), "'batch_sizes' must be a list of positive integers"),
    (with_matrix(threads=["2"]), "'threads' must be a list of positive integers"),
    (with_matrix(weights=["imagenet"]), "weights 'imagenet' must be one of random, pretrained, checkpoint:<path>"),
    (with_matrix(weights=["checkpoint:"]), "weights 'checkpoint:'"),
    (with_matrix(models=[]), "'models' must not be empty"),
    ({**MINIMAL, "measure": {"min_time": 1}}, "[measure]: unknown key 'min_time'"),
    ({**MINIMAL, "measure": {"min_rounds": 2.5}}, "'min_rounds' must be a int"),
    ({**MINIMAL, "calibration": {"batches": -1}}, "'batches' must not be negative"),
    ({**MINIMAL, "run": {"isolation": "thread"}}, "isolation 'thread' is not one of fork, spawn"),
])
def test_mistakes_are_one_line_errors(data, message):
    with pytest.raises(ConfigError) as info:
        parse_suite(data, where="s.toml")
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert str(info.value).startswith("s.toml")


def test_measure_accepts_integer_for_float_field():
    spec = parse_suite({**MINIMAL, "measure": {"min_time_s": 2}})
    assert spec.measure.min_time_s == 2.0


def test_invalid_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[suite\nname = 'x'\n")
    with pytest.raises(ConfigError, match=r"bad.toml: invalid TOML"):
        load_suite(str(path))


def test_unknown_suite_name_lists_known_ones():
    with pytest.raises(ConfigError, match=r"unknown suite 'smok'; known suites: .*smoke"):
        resolve_suite_path("smok")


def test_suite_path_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_suite_path(str(tmp_path / "none.toml"))


def test_suite_files_are_data_not_code(tmp_path):
    path = tmp_path / "evil.toml"
    path.write_text('[suite]\nname = "__import__(\'os\').system(\'false\')"\n[[matrix]]\nmodels=["a"]\nmodes=["fp32"]\n')
    spec = load_suite(str(path))
    assert spec.name == "__import__('os').system('false')"


def test_run_options_repeat():
    assert parse_suite({**MINIMAL, "run": {"repeat": 3}}).run.repeat == 3
    with pytest.raises(ConfigError, match="repeat must be a positive integer"):
        parse_suite({**MINIMAL, "run": {"repeat": 0}})
