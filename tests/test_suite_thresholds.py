"""A suite file's optional [thresholds] table: parsed with the threshold grammar, strict, and absent by default."""

import pytest

from qbench.errors import ConfigError
from qbench.suite.load import load_suite, parse_suite
from qbench.thresholds import Threshold

MINIMAL = {"suite": {"name": "t"}, "matrix": [{"models": ["resnet18"], "modes": ["fp32"]}]}


def test_thresholds_are_optional():
    assert parse_suite(MINIMAL).thresholds == ()


def test_thresholds_table_is_parsed_with_the_grammar_and_names_the_suite():
    spec = parse_suite({**MINIMAL, "thresholds": {"latency": "5%", "size": "0.1%", "memory": "50"}})
    assert spec.thresholds == (Threshold("latency", 0.05, True, "suite t"), Threshold("size", 0.001, True, "suite t"),
                               Threshold("memory", pytest.approx(50e6), False, "suite t"))


@pytest.mark.parametrize("table, message", [
    ({"latncy": "5%"}, "<suite>: [thresholds]: unknown metric 'latncy'; allowed: latency, throughput, memory, size"),
    ({"latency": 0.05}, "<suite>: [thresholds]: latency must be a string such as \"5%\""),
    ({"latency": "5 percent"}, "<suite>: [thresholds]: threshold 'latency:5 percent'"),
    ({"latency": "-5%"}, "is not a non-negative number"),
])
def test_bad_thresholds_are_one_line_errors(table, message):
    with pytest.raises(ConfigError) as error:
        parse_suite({**MINIMAL, "thresholds": table})
    assert message in str(error.value) and "\n" not in str(error.value)


def test_thresholds_must_be_a_table():
    with pytest.raises(ConfigError, match="'thresholds' must be a table"):
        parse_suite({**MINIMAL, "thresholds": "latency:5%"})


def test_suite_file_with_thresholds_loads(tmp_path):
    path = tmp_path / "gate.toml"
    path.write_text('[suite]\nname = "gate"\n[[matrix]]\nmodels = ["resnet18"]\nmodes = ["fp32"]\n'
                    '[thresholds]\nlatency = "15%"\n')
    spec = load_suite(str(path))
    assert spec.thresholds == (Threshold("latency", 0.15, True, "suite gate"),)


@pytest.mark.parametrize("name", ["quick", "smoke", "nightly"])
def test_shipped_suites_still_parse(name):
    assert load_suite(name).name == name
