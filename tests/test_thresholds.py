"""The threshold grammar, every one of its errors, the defaults, and which threshold applies to a case."""

import pytest

from qbench.errors import ConfigError
from qbench.metrics import METRICS, Metric, MetricValue
from qbench.thresholds import (DEFAULT_THRESHOLDS, Threshold, ThresholdPolicy, parse_threshold, parse_threshold_table,
                               parse_thresholds)

# Issue 4's accuracy metric as it will be: a fraction stored, percentage points displayed.
WITH_TOP1 = {**METRICS, "top1": Metric("top1", "fraction", "%", 100.0, "higher", "deterministic",
                                       lambda record: MetricValue(0.5), "top-1 accuracy")}


def test_relative_threshold_is_a_fraction():
    assert parse_threshold("latency:5%") == Threshold("latency", 0.05, True, "command line")
    assert parse_threshold(" size : 0.1 % ") == Threshold("size", 0.001, True, "command line")


def test_absolute_threshold_is_in_the_display_unit_and_stored_in_the_record_unit():
    latency = parse_threshold("latency:0.5")
    assert not latency.relative and latency.value == pytest.approx(0.0005)
    assert latency.describe() == "0.5 ms" and latency.spec() == "latency:0.5"
    size = parse_threshold("size:2")
    assert size.value == pytest.approx(2e6) and size.describe() == "2 MB"


def test_percentage_points_of_an_accuracy_metric():
    top1 = parse_threshold("top1:0.2", table=WITH_TOP1)
    assert top1.value == pytest.approx(0.002) and not top1.relative
    assert top1.exceeded(0.700, 0.6975) and not top1.exceeded(0.700, 0.6985)
    assert top1.describe(WITH_TOP1) == "0.2 %"


def test_several_thresholds_repeated_and_comma_separated():
    parsed = parse_thresholds(["latency:5%,size:0.1%", "memory:20"])
    assert [t.metric for t in parsed] == ["latency", "size", "memory"]
    assert parsed[2] == Threshold("memory", pytest.approx(20e6), False, "command line")
    assert parse_thresholds([]) == ()


@pytest.mark.parametrize("text, message", [
    ("latency5%", "threshold 'latency5%' must be metric:N% (relative) or metric:N (absolute, in the metric's display "
                  "unit); metrics: latency, throughput, memory, size"),
    (":5%", "must be metric:N%"),
    ("lat:5%", "threshold 'lat:5%': unknown metric 'lat'; allowed: latency, throughput, memory, size"),
    ("latency:", "threshold 'latency:': 'nothing' is not a non-negative number such as latency:5% or latency:0.5 (ms)"),
    ("latency:%", "'%' is not a non-negative number"),
    ("latency:-5%", "'-5%' is not a non-negative number"),
    ("latency:five%", "'five%' is not a non-negative number"),
    ("latency:nan", "'nan' is not a non-negative number"),
    ("latency:inf%", "'inf%' is not a non-negative number"),
    ("latency:1e3", "'1e3' is not a non-negative number"),
    ("size:5%%", "'5%%' is not a non-negative number such as size:5% or size:0.5 (MB)"),
])
def test_every_malformed_threshold_is_a_one_line_error(text, message):
    with pytest.raises(ConfigError) as error:
        parse_thresholds([text])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_metric_given_twice_is_an_error():
    with pytest.raises(ConfigError, match=r"threshold for latency given twice \('latency:10%' and '5%'\)"):
        parse_thresholds(["latency:5%", "latency:10%"])


def test_an_empty_part_is_an_error():
    with pytest.raises(ConfigError, match="has an empty part"):
        parse_thresholds(["latency:5%,"])


def test_threshold_is_exceeded_only_strictly_beyond_it():
    five = parse_threshold("latency:5%")
    assert not five.exceeded(1.0, 1.05) and five.exceeded(1.0, 1.0501)
    assert five.exceeded(1.0, 0.94)
    exact = parse_threshold("size:0%")
    assert exact.exceeded(1000, 1001) and not exact.exceeded(1000, 1000)
    absolute = parse_threshold("latency:0.5")
    assert absolute.exceeded(0.010, 0.0106) and not absolute.exceeded(0.010, 0.0104)
    assert absolute.allowed_fraction(0.010) == pytest.approx(0.05)


def test_every_metric_has_a_default():
    assert set(DEFAULT_THRESHOLDS) == set(METRICS)
    assert all(t.source == "default" for t in DEFAULT_THRESHOLDS.values())
    relative = {name for name, t in DEFAULT_THRESHOLDS.items() if t.relative}
    assert relative == {"latency", "throughput", "memory", "size", "bytes_moved", "bandwidth"}
    assert DEFAULT_THRESHOLDS["top1"].exceeded(0.760, 0.754) and not DEFAULT_THRESHOLDS["top1"].exceeded(0.760, 0.756)
    assert DEFAULT_THRESHOLDS["size"].value < DEFAULT_THRESHOLDS["memory"].value < DEFAULT_THRESHOLDS["latency"].value


def test_suite_table_parses_strictly():
    parsed = parse_threshold_table({"latency": "5%", "size": "0.5"}, "s.toml: [thresholds]", source="suite s")
    assert parsed == (Threshold("latency", 0.05, True, "suite s"), Threshold("size", pytest.approx(5e5), False,
                                                                             "suite s"))
    with pytest.raises(ConfigError, match=r"s.toml: \[thresholds\]: unknown metric 'latncy'; allowed: latency"):
        parse_threshold_table({"latncy": "5%"}, "s.toml: [thresholds]", source="suite s")
    with pytest.raises(ConfigError, match=r"latency must be a string such as \"5%\" .* got 5"):
        parse_threshold_table({"latency": 5}, "s.toml: [thresholds]", source="suite s")
    with pytest.raises(ConfigError, match=r"s.toml: \[thresholds\]: threshold 'latency:x%'"):
        parse_threshold_table({"latency": "x%"}, "s.toml: [thresholds]", source="suite s")


def test_policy_command_line_wins_over_suite_noise_and_default():
    policy = ThresholdPolicy(command_line=(parse_threshold("latency:3%"),),
                             suites={"sha": (Threshold("latency", 0.2, True, "suite q"),)},
                             noise={"m": {"a/b": {"latency": 0.5}}})
    chosen = policy.threshold_for("latency", 0.01, case_id="a/b", machine_id="m", suite="sha")
    assert chosen == Threshold("latency", 0.03, True, "command line")


def test_policy_suite_then_default_each_raised_to_the_noise_never_lowered():
    policy = ThresholdPolicy(suites={"sha": (Threshold("latency", 0.05, True, "suite q"),)},
                             noise={"m": {"noisy": {"latency": 0.12, "memory": 0.2}, "quiet": {"latency": 0.01}}})
    assert policy.threshold_for("latency", 0.01, case_id="noisy", machine_id="m", suite="sha") == \
        Threshold("latency", 0.12, True, "noise.json")
    assert policy.threshold_for("latency", 0.01, case_id="quiet", machine_id="m", suite="sha").source == "suite q"
    assert policy.threshold_for("latency", 0.01, case_id="quiet", machine_id="m", suite="other").source == "default"
    assert policy.threshold_for("memory", 1e8, case_id="noisy", machine_id="m").value == 0.2
    assert policy.threshold_for("memory", 1e8, case_id="noisy", machine_id="another").source == "default"


def test_policy_compares_an_absolute_threshold_with_the_noise_at_the_base_value():
    policy = ThresholdPolicy(suites={"s": (parse_threshold("latency:1", source="suite s"),)},
                             noise={"*": {"c": {"latency": 0.08}}})
    assert policy.threshold_for("latency", 0.010, case_id="c", suite="s").source == "suite s"  # 1 ms = 10%
    assert policy.threshold_for("latency", 0.020, case_id="c", suite="s").source == "noise.json"  # 1 ms = 5%
