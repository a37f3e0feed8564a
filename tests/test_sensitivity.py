"""Per-layer sensitivity: SQNR arithmetic, a model with one deliberately sensitive layer ranked first, the fast
swap method agreeing with PyTorch's QConfigMapping recipe, and `qbench sensitivity` storing its ranking as history
that load_sensitivity reads back (a crashing worker is a failed record)."""

import math
import os

import pytest
import torch
from torch import nn

from qbench.errors import ConfigError
from qbench.history.sensitivity import load_sensitivity
from qbench.runner.probes.accuracy import SQNR_CAP_DB, logits_agreement, sqnr_db
from qbench.runner.sensitivity import analyze, quantized_layers
from qbench.history.store import iter_records
from tests.factories import one_line_error, qbench

INPUT_SIZE = 16
MODEL = "tests.test_sensitivity:outlier_net"


class OutlierNet(nn.Module):
    """conv2's output holds one channel near -1000 that the clamp after it removes: quantizing conv2's output
    per tensor spends the whole int8 range on that channel and crushes the others, so conv2 alone is sensitive."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)
        with torch.no_grad():
            self.conv2.bias[0] = -1000.0

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = self.conv2(x).clamp(min=0)
        x = torch.relu(self.conv3(x))
        return self.fc(self.pool(x).flatten(1))


def outlier_net() -> nn.Module:
    return OutlierNet()


def crashing_net() -> nn.Module:
    os.abort()


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    calibration = [torch.randn(8, 3, INPUT_SIZE, INPUT_SIZE, generator=generator) for _ in range(2)]
    images = torch.randn(16, 3, INPUT_SIZE, INPUT_SIZE, generator=generator)
    torch.manual_seed(0)
    return OutlierNet().eval(), calibration, images


@pytest.fixture(scope="module")
def swap(data):
    model, calibration, images = data
    return analyze(model, "x86", calibration, images)


def test_sqnr_and_agreement_arithmetic():
    reference = torch.ones(100)
    assert sqnr_db(reference + 0.1, reference) == pytest.approx(20.0)
    assert sqnr_db(reference, reference) == SQNR_CAP_DB  # the one definition: identical tensors hit the cap
    quantized = torch.quantize_per_tensor(reference * 0.5, 0.5, 0, torch.quint8)
    assert sqnr_db(quantized, reference) == pytest.approx(10 * math.log10(100 / 25))
    logits = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.0, 1.0], [5.0, 4.0]])
    assert logits_agreement(logits.flip(1), logits) == 0.0
    assert logits_agreement(logits * 2, logits) == 1.0


def test_the_outlier_layer_ranks_first_and_every_sqnr_is_finite(swap):
    assert swap["ranking"][0] == "conv2"
    assert sorted(swap["ranking"]) == ["conv1", "conv2", "conv3", "fc"]
    by_layer = {entry["layer"]: entry for entry in swap["per_layer"]}
    assert by_layer["conv2"]["rank"] == 1
    only = {name: entry["only_this_quantized"]["sqnr_db"] for name, entry in by_layer.items()}
    assert only["conv2"] < min(only["conv1"], only["conv3"], only["fc"]) - 10
    for entry in swap["per_layer"]:
        for value in (entry["sqnr_db"], entry["only_this_quantized"]["sqnr_db"], entry["all_but_this"]["sqnr_db"]):
            assert isinstance(value, float) and math.isfinite(value)
        assert 0.0 <= entry["only_this_quantized"]["agreement"] <= 1.0
    assert by_layer["fc"]["sqnr_db"] == pytest.approx(swap["full"]["sqnr_db"])  # fc's output is the logits
    assert swap["layers_total"] == 4 and swap["method"] == "swap"


def test_swap_matches_pytorchs_qconfig_mapping_recipe_for_only_this_layer(data, swap):
    model, calibration, images = data
    exact = analyze(model, "x86", calibration, images, method="mapping")
    assert exact["ranking"][0] == "conv2"
    fast = {entry["layer"]: entry for entry in swap["per_layer"]}
    for entry in exact["per_layer"]:
        assert fast[entry["layer"]]["only_this_quantized"]["sqnr_db"] == pytest.approx(
            entry["only_this_quantized"]["sqnr_db"], rel=1e-6)
        assert fast[entry["layer"]]["sqnr_db"] == pytest.approx(entry["sqnr_db"], rel=1e-9)
    assert fast["conv2"]["all_but_this"]["sqnr_db"] == pytest.approx(
        exact["per_layer"][1]["all_but_this"]["sqnr_db"], rel=1e-6)


def test_layers_glob_limits_the_pass_and_a_glob_matching_nothing_is_bad_input(data):
    model, calibration, images = data
    limited = analyze(model, "x86", calibration, images[:8], layers="conv[23]")
    assert [entry["layer"] for entry in limited["per_layer"]] == ["conv2", "conv3"]
    assert limited["layers_total"] == 4 and limited["ranking"][0] == "conv2"
    from qbench.runner.registry.engines import use_engine
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with use_engine("x86"):
        prepared = prepare_fx(OutlierNet().eval(), get_default_qconfig_mapping("x86"), (images[:1],))
        prepared(images)
        converted = convert_fx(prepared)
    with pytest.raises(ConfigError, match="matches none of the 4 quantized layers"):
        quantized_layers(converted, "layer4.*")


def test_sensitivity_cli_stores_the_ranking_as_history(tmp_path):
    done = qbench("sensitivity", MODEL, "--engine", "x86", "--images", "8", "--threads", "1", "--top", "2",
                  "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    table = done.stdout.split("rank ", 1)[1].splitlines()
    assert table[2].split()[:2] == ["1", "conv2"] and len(table) >= 4
    assert "RANDOM-INIT" in done.stdout and "8 synthetic images" in done.stdout
    ((run, record),) = list(iter_records(tmp_path))
    assert run.header["suite"]["name"] == "sensitivity" and run.complete
    assert (record.case.model, record.case.mode, record.case.engine) == (MODEL, "static_fx", "x86")
    assert record.metrics["sensitivity"]["images"]["count"] == 8
    frame = load_sensitivity(tmp_path)
    assert len(frame) == 4 and list(frame["rank"]) == [1, 2, 3, 4]
    assert frame.iloc[0]["layer"] == "conv2" and frame.iloc[0]["run_id"] == record.run_id
    assert frame["sqnr_db"].map(math.isfinite).all()


def test_sensitivity_cli_bad_input_exits_2_and_a_crash_is_a_failed_record(tmp_path):
    done = qbench("sensitivity", "resnet181", "--engine", "x86", "--results", str(tmp_path))
    assert done.returncode == 2 and "unknown model 'resnet181'; did you mean resnet18" in one_line_error(done)
    done = qbench("sensitivity", MODEL, "--engine", "x86", "--images", "4", "--threads", "1", "--layers", "nope*",
                  "--results", str(tmp_path))
    assert done.returncode == 2 and "--layers 'nope*' matches none of the 4" in one_line_error(done)
    assert not list(iter_records(tmp_path))
    done = qbench("sensitivity", "tests.test_sensitivity:crashing_net", "--engine", "x86", "--images", "4",
                  "--threads", "1", "--results", str(tmp_path), "--fail-on-error")
    assert done.returncode == 3 and "died of signal SIGABRT" in done.stderr and "SIGABRT" not in done.stdout
    ((_, record),) = list(iter_records(tmp_path))
    assert record.status == "failed" and "SIGABRT" in record.reason
    assert load_sensitivity(tmp_path).empty
