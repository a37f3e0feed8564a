"""qbench.runner.probes.accuracy: the metrics (top-k, agreement, SQNR), and evaluate_case checked for right numbers, not just
present ones, on a model that has really learned its images (tests.learned)."""

import copy
import os

import pytest
import torch

from qbench.runner.probes.accuracy import SQNR_CAP_DB, agreement, evaluate_case, logits_of, sqnr_db, topk_correct
from qbench.errors import ConfigError
from qbench.records import AccuracySpec, CalibrationSpec
from qbench.runner.registry.data import calibration_batches, example_input, transform_for
from qbench.runner.registry.models import open_model
from qbench.runner.registry.modes import apply_mode
from qbench.runner.registry.weights import default_weights
from qbench.runner.registry.torchvision_compat import import_torchvision
from tests.learned import CLASS_INDICES, MODEL, WNIDS, learned  # noqa: F401  (learned is a fixture)
from tests.torch_factories import _TinySource, tiny_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

RECORD_KEYS = {"subset", "threads", "labelled", "top1", "top5", "reference", "delta_top1", "delta_top1_ci", "mcnemar_p",
               "agreement", "sqnr_db", "predictions", "reference_predictions", "labels"}
# A subset of the 48 held-out images keeps the slow (resnet18 at 224 px) tests affordable.
IMAGES = 24


# ---------------------------------------------------------------------------------------------- the metrics

def test_topk_correct():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.3], [0.2, 0.3, 0.5]])
    assert topk_correct(logits, [1, 2, 0], 1) == [True, False, False]
    assert topk_correct(logits, [1, 2, 0], 2) == [True, True, False]
    assert topk_correct(logits, [1, 2, 0], 5) == [True, True, True]  # k capped at the 3 classes


def test_agreement():
    assert agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    with pytest.raises(ValueError):
        agreement([1], [1, 2])


def test_sqnr_db():
    reference = torch.tensor([[3.0, 4.0]])  # signal 25
    assert sqnr_db(torch.tensor([[3.0, 4.5]]), reference) == pytest.approx(10 * torch.log10(torch.tensor(100.0)))
    assert sqnr_db(reference.clone(), reference) == SQNR_CAP_DB
    assert sqnr_db(torch.ones(1, 2), torch.zeros(1, 2)) == -SQNR_CAP_DB
    assert sqnr_db(reference * (1 + 1e-30), reference) <= SQNR_CAP_DB
    with pytest.raises(ValueError):
        sqnr_db(torch.zeros(2, 2), torch.zeros(1, 2))


# ---------------------------------------------------------------------------------------------- evaluate_case, tiny

def test_no_images_means_no_accuracy():
    assert evaluate_case(tiny_model(), None, AccuracySpec(images=0), _TinySource(), engine=None) is None


def test_fp32_case_without_labels():
    model = tiny_model()
    result = evaluate_case(model, None, AccuracySpec(images=10, batch_size=4), _TinySource(), engine=None)
    assert result.keys() == RECORD_KEYS
    assert result["labelled"] is False and result["subset"]["images"] == 10
    assert all(result[key] is None for key in RECORD_KEYS - {"subset", "threads", "labelled", "predictions"})
    from qbench.runner.registry.evalset import load_eval_set
    expected = logits_of(model, load_eval_set(AccuracySpec(images=10, batch_size=4), _TinySource()).batches())
    assert result["predictions"] == expected.argmax(1).tolist()


def test_label_free_comparison_with_the_parent():
    model, other = tiny_model(0), tiny_model(1)
    spec = AccuracySpec(images=12, batch_size=5)
    itself = evaluate_case(model, copy.deepcopy(model), spec, _TinySource(), engine=None)
    assert itself["agreement"] == 1.0 and itself["sqnr_db"] == SQNR_CAP_DB
    assert itself["predictions"] == itself["reference_predictions"]
    assert itself["delta_top1"] is None and itself["reference"] is None  # no labels, no accuracy delta
    different = evaluate_case(other, model, spec, _TinySource(), engine=None)
    assert different["agreement"] == agreement(different["predictions"], different["reference_predictions"])
    assert different["sqnr_db"] < 20


def test_the_evaluation_runs_on_every_core_of_the_affinity_and_gives_the_case_its_threads_back(monkeypatch):
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return x.mean(dim=(2, 3))

    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    torch.set_num_threads(1)
    try:
        single = evaluate_case(Probe(), None, AccuracySpec(images=4, batch_size=2), _TinySource(), engine=None)
        assert seen == [3, 3] and torch.get_num_threads() == 1 and single["threads"] == 3
        seen.clear()
        paired = evaluate_case(Probe(), Probe(), AccuracySpec(images=2), _TinySource(), engine=None)
        assert seen == [3, 3] and torch.get_num_threads() == 1 and paired["threads"] == 3
    finally:
        torch.set_num_threads(before)


def test_quantized_model_runs_under_its_engine():
    seen = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen.append(torch.backends.quantized.engine)
            return x.mean(dim=(2, 3))

    before = torch.backends.quantized.engine
    evaluate_case(Probe(), None, AccuracySpec(images=2), _TinySource(), engine="qnnpack")
    assert seen == ["qnnpack"] and torch.backends.quantized.engine == before


def test_labels_beyond_the_model_outputs_are_a_config_error(tmp_path):
    from tests.learned import write_image_folder

    write_image_folder(str(tmp_path), per_class=1, seed=0)  # labels up to 980; convnet has 10 outputs
    with pytest.raises(ConfigError, match="label 980 .* 10 outputs"):
        evaluate_case(tiny_model(), None, AccuracySpec(source=str(tmp_path), images=6), _TinySource(), engine=None)


# ---------------------------------------------------------------------------------------------- the learned model

def checkpoint_source(learned):
    return open_model(MODEL, f"checkpoint:{learned.checkpoint}")


def val_spec(learned, **fields):
    return AccuracySpec(**{"source": learned.val, "images": IMAGES, "batch_size": 12, "seed": 0, **fields})


def independent_top1(model, learned, files):
    """Top-1 computed without qbench: PIL, the weights' transform, argmax against the wnid's known index."""
    loader = import_torchvision().datasets.folder.default_loader
    transform = default_weights(MODEL).transforms()
    index = dict(zip(WNIDS, CLASS_INDICES))
    images = torch.stack([transform(loader(os.path.join(learned.val, name))) for name in files])
    labels = torch.tensor([index[name.split("/")[0]] for name in files])
    with torch.no_grad():
        return (model(images).argmax(1) == labels).float().mean().item()


@pytest.mark.slow
def test_fp32_top1_is_right_and_the_model_has_learned(learned):
    """Every held-out image, evaluated against an independent computation and against a copy of itself."""
    source = checkpoint_source(learned)
    model = source.float_model()
    files = sorted(f"{wnid}/{name}" for wnid in WNIDS for name in os.listdir(os.path.join(learned.val, wnid)))
    result = evaluate_case(model, copy.deepcopy(model), val_spec(learned, images=len(files)), source, engine=None)
    assert result["labelled"] and result["subset"]["labels"] == "wnid"
    assert result["labels"] == [dict(zip(WNIDS, CLASS_INDICES))[name.split("/")[0]] for name in files]
    assert result["top1"] == pytest.approx(independent_top1(model, learned, files))
    assert result["top1"] >= 0.9
    assert result["top5"] >= result["top1"]
    assert result["agreement"] == 1.0 and result["sqnr_db"] == SQNR_CAP_DB
    assert result["reference"] == {"top1": result["top1"], "top5": result["top5"]} and result["delta_top1"] == 0.0
    assert result["delta_top1_ci"] == [0.0, 0.0] and result["mcnemar_p"] == 1.0


@pytest.mark.slow
def test_pretrained_weights_load_from_torch_home(learned, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", learned.torch_home)
    source = open_model(MODEL, "pretrained")
    model = source.float_model()
    assert source.weights_info()["kind"] == "pretrained"
    assert source.weights_info()["file"].startswith(learned.torch_home)
    spec = val_spec(learned, images=12)
    pretrained = evaluate_case(model, None, spec, source, engine=None)
    from_checkpoint = evaluate_case(checkpoint_source(learned).float_model(), None, spec, source, engine=None)
    assert pretrained["predictions"] == from_checkpoint["predictions"]
    assert pretrained["subset"]["transform"] == " ".join(repr(default_weights(MODEL).transforms()).split())


@pytest.mark.slow
def test_int8_models_well_and_badly_calibrated(learned):
    """Calibrated on training images, int8 keeps the accuracy; calibrated on images dimmed to a tenth, its
    activation ranges are far too narrow and top-1 drops: visibly, significantly, with the right sign."""
    source = checkpoint_source(learned)
    reference = source.float_model()
    calibration, _ = calibration_batches(CalibrationSpec(source=learned.train, batches=2, batch_size=8),
                                         source.input_size, transform_for(source))

    def int8(batches):
        return apply_mode("static_fx", source, engine="x86", calibration=batches,
                          example_input=example_input(1, source.input_size)).model

    good = evaluate_case(int8(calibration), reference, val_spec(learned), source, engine="x86")
    bad = evaluate_case(int8([batch * 0.1 for batch in calibration]), reference, val_spec(learned), source,
                        engine="x86")
    for result in (good, bad):
        assert result["reference"]["top1"] >= 0.9
        assert result["delta_top1"] == pytest.approx(result["top1"] - result["reference"]["top1"])
        low, high = result["delta_top1_ci"]
        assert low <= result["delta_top1"] <= high
        assert result["subset"] == good["subset"]
        assert result["agreement"] == agreement(result["predictions"], result["reference_predictions"])
    assert good["agreement"] >= 0.9 and abs(good["delta_top1"]) <= 0.1 and good["sqnr_db"] > 25
    assert good["mcnemar_p"] > 0.05
    assert bad["delta_top1"] <= -0.3 and bad["delta_top1_ci"][1] < 0
    assert bad["mcnemar_p"] < 0.001 and bad["agreement"] < 0.7
    assert bad["sqnr_db"] < good["sqnr_db"]
