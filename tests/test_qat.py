"""The qat mode: prepare_qat_fx, a short distillation fine-tune on the calibration batches, convert."""

import json
import math

import pytest
import torch
from torch import nn

from qbench.errors import ConfigError, NotApplicable
from qbench.runner.probes.size import measure_size
from qbench.records import QatSpec
from qbench.runner.registry.modes import apply_mode
from qbench.runner.registry.qat import QAT_LOSS
from tests.torch_factories import (SIDE, BranchyNet, FloatOnlySource, TinyNet, TinySource, _centred_cosine,
                                   _inputs, _randomize_batchnorm, _run)

# Small enough to move the weights without diverging; BN frozen from the start, so the student normalizes with
# the same running statistics as its fp32 teacher.
FAST = QatSpec(steps=12, lr=1e-3, momentum=0.9, schedule="cosine", freeze_observers_after=6, freeze_bn_after=0)


class OutlierSource(TinySource):
    """TinyNet with one conv1 channel 30x larger than the others and large logits: per-tensor weights quantize
    the other channels coarsely, so there is a real quantization error for QAT to reduce."""

    def float_model(self):
        torch.manual_seed(0)
        model = _randomize_batchnorm(TinyNet(width=8, hidden=32))
        with torch.no_grad():
            model.conv1.weight[0] *= 30
            model.fc2.weight.mul_(20)
        return model.eval()


@pytest.fixture(autouse=True)
def restore_engine_and_threads():
    """One thread: training steps on a shared 2-core machine are many times slower with two."""
    engine, threads = torch.backends.quantized.engine, torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.backends.quantized.engine = engine
    torch.set_num_threads(threads)


def _mse(model, teacher, batches):
    return sum(nn.functional.mse_loss(_run(model, b), _run(teacher, b)).item() for b in batches) / len(batches)


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_qat_end_to_end_gives_a_quantized_model_tracking_fp32(engine):
    torch.backends.quantized.engine = "onednn"
    prepared = apply_mode("qat", TinySource(), engine=engine, qat=FAST, **_inputs())
    assert torch.backends.quantized.engine == engine
    assert list(prepared.phases) == ["build", "prepare", "train", "convert"]
    assert all(seconds >= 0 for seconds in prepared.phases.values())
    size = measure_size(prepared.model)
    assert (size["modules_quantized"], size["modules_float"]) == (4, 0)
    x = torch.rand(8, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    got, expected = _run(prepared.model, x), _run(TinySource().float_model(), x)
    assert torch.isfinite(got).all() and got.shape == expected.shape
    assert _centred_cosine(got, expected) > 0.9
    assert not prepared.model.training

    notes = prepared.notes
    assert notes["qat_path"] == "prepare_qat_fx" and notes["loss"] == QAT_LOSS
    assert (notes["steps"], notes["schedule"], notes["calibration_batches"]) == (12, "cosine", 2)
    assert all(math.isfinite(notes[k]) for k in ("loss_start", "loss_end", "loss_first_step", "loss_last_step"))
    qconfig = prepared.qconfig
    assert qconfig["origin"] == f"get_default_qat_qconfig_mapping({engine!r})"
    assert qconfig["weight"]["fake_quantize"] == "FusedMovingAvgObsFakeQuantize"
    assert (qconfig["name"], qconfig["engine"], qconfig["calibrated_for"]) == ("default", engine, engine)
    json.dumps({"qconfig": qconfig, "notes": notes}, allow_nan=False)


@pytest.mark.parametrize("qconfig", ["minmax/per_tensor/affine", "default"])
def test_qat_reduces_its_distillation_loss(qconfig):
    inputs = _inputs(batches=4, batch_size=8)
    prepared = apply_mode("qat", OutlierSource(), engine="x86", qconfig=qconfig, qat=FAST, **inputs)
    notes = prepared.notes
    assert notes["loss_end"] < 0.9 * notes["loss_start"]
    # The converted int8 model keeps what the fake-quantized one learnt.
    teacher, batches = OutlierSource().float_model(), inputs["calibration"]
    assert _mse(prepared.model, teacher, batches) < 0.9 * notes["loss_start"]


def test_qat_beats_post_training_quantization_with_the_same_observers():
    inputs, qconfig = _inputs(batches=4, batch_size=8), "minmax/per_tensor/affine"
    qat = apply_mode("qat", OutlierSource(), engine="x86", qconfig=qconfig, qat=FAST, **inputs)
    ptq = apply_mode("static_fx", OutlierSource(), engine="x86", qconfig=qconfig, **inputs)
    teacher, batches = OutlierSource().float_model(), inputs["calibration"]
    assert _mse(qat.model, teacher, batches) < 0.9 * _mse(ptq.model, teacher, batches)


def test_the_learning_rate_follows_the_schedule():
    cosine = apply_mode("qat", TinySource(), engine="x86", qat=FAST, **_inputs()).notes
    constant = apply_mode("qat", TinySource(), engine="x86", qat=QatSpec(**{**FAST.to_dict(), "schedule": "constant"}),
                          **_inputs()).notes
    assert cosine["lr_first_step"] == constant["lr_first_step"] == constant["lr_last_step"] == FAST.lr
    expected_last = FAST.lr * (1 + math.cos(math.pi * (FAST.steps - 1) / FAST.steps)) / 2
    assert cosine["lr_last_step"] == pytest.approx(expected_last)


def _output_scales(freeze_observers_after, lr):
    spec = QatSpec(**{**FAST.to_dict(), "freeze_observers_after": freeze_observers_after, "lr": lr})
    model = apply_mode("qat", TinySource(), engine="x86", qat=spec, **_inputs()).model
    return [model.get_submodule(name).scale for name in ("conv1", "conv2", "fc1", "fc2")]


def test_observers_are_frozen_after_the_configured_step():
    # Frozen before the first step, the activation ranges are those of the first (evaluation) pass, whatever the
    # weights then learn; left running, they follow the weights, which move differently under another lr.
    assert _output_scales(0, 1e-3) == _output_scales(0, 5e-3)
    assert _output_scales(FAST.steps, 1e-3) != _output_scales(FAST.steps, 5e-3)


def test_a_cross_engine_qat_qconfig_trains_under_one_engine_and_converts_under_the_other():
    prepared = apply_mode("qat", TinySource(), engine="x86", qconfig="default@qnnpack", qat=FAST, **_inputs())
    assert (prepared.qconfig["calibrated_for"], prepared.qconfig["engine"]) == ("qnnpack", "x86")
    assert prepared.qconfig["origin"].endswith("prepared and calibrated under qnnpack, converted and run under x86")
    assert torch.backends.quantized.engine == "x86"


@pytest.mark.parametrize("change,message", [
    ({"schedule": "linear"}, "qat schedule 'linear' is unknown; allowed: constant, cosine"),
    ({"steps": -1}, "qat needs steps >= 0"),
    ({"lr": 0.0}, "qat needs steps >= 0, lr > 0"),
])
def test_a_bad_qat_spec_is_a_config_error(change, message):
    with pytest.raises(ConfigError, match=message):
        apply_mode("qat", TinySource(), engine="x86", qat=QatSpec(**{**FAST.to_dict(), **change}), **_inputs())


def test_qat_without_calibration_batches_is_a_config_error():
    with pytest.raises(ConfigError, match="qat needs at least one calibration batch"):
        apply_mode("qat", TinySource(), engine="x86", qat=FAST, calibration=[],
                   example_input=_inputs()["example_input"])


def test_a_diverging_fine_tune_fails_with_its_reason_instead_of_recording_nan():
    with pytest.raises(RuntimeError, match="qat diverged: loss (nan|inf)"):
        apply_mode("qat", OutlierSource(), engine="x86", qat=QatSpec(**{**FAST.to_dict(), "lr": 1e6}), **_inputs())


def test_qat_on_an_untraceable_model_is_not_applicable():
    with pytest.raises(NotApplicable, match="not symbolically traceable"):
        apply_mode("qat", FloatOnlySource(BranchyNet), engine="x86", qat=FAST, **_inputs())


def test_qat_without_a_spec_uses_the_defaults():
    prepared = apply_mode("qat", TinySource(), engine="qnnpack", **_inputs())
    assert prepared.notes["steps"] == QatSpec().steps
    assert prepared.notes["lr_first_step"] == QatSpec().lr


def test_zero_steps_prepares_observes_once_and_converts_without_training():
    prepared = apply_mode("qat", TinySource(), engine="x86", qat=QatSpec(**{**FAST.to_dict(), "steps": 0}),
                          **_inputs())
    assert prepared.notes["steps"] == 0 and prepared.notes["loss_first_step"] is None
    assert prepared.notes["loss_end"] == pytest.approx(prepared.notes["loss_start"], rel=0.5)
    assert measure_size(prepared.model)["modules_quantized"] == 4
