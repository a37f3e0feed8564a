"""qbench.runner.registry.data: synthetic inputs, calibration sets (synthetic and ImageFolder) and their identity."""

import pytest
import torch
from PIL import Image

from qbench.errors import ConfigError
from qbench.records import CalibrationSpec
from qbench.runner.registry.data import calibration_batches, default_transform, example_input, transform_for
from qbench.runner.registry.models import open_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

IDENTITY_KEYS = {"source", "batches", "batch_size", "seed", "images", "sha256"}


def test_example_input_is_seeded_and_image_like():
    batch = example_input(3, 40, seed=1)
    assert batch.shape == (3, 3, 40, 40) and batch.dtype == torch.float32
    assert torch.equal(batch, example_input(3, 40, seed=1))
    assert not torch.equal(batch, example_input(3, 40, seed=2))
    assert -2.2 < batch.min() < -1.9 and 2.4 < batch.max() < 2.7
    assert abs(batch.mean().item()) < 0.3


def test_synthetic_calibration():
    spec = CalibrationSpec(source="synthetic", batches=3, batch_size=2, seed=4)
    batches, identity = calibration_batches(spec, 32)
    assert [tuple(batch.shape) for batch in batches] == [(2, 3, 32, 32)] * 3
    assert identity.keys() == IDENTITY_KEYS
    assert identity | {"sha256": None} == {"source": "synthetic", "batches": 3, "batch_size": 2, "seed": 4,
                                           "images": 6, "sha256": None}
    again, same = calibration_batches(spec, 32)
    assert same == identity and all(torch.equal(a, b) for a, b in zip(batches, again))
    assert calibration_batches(CalibrationSpec(batches=3, batch_size=2, seed=5), 32)[1]["sha256"] != identity["sha256"]
    assert not torch.equal(batches[0], example_input(2, 32, seed=4))


@pytest.mark.parametrize("batches, batch_size", [(0, 2), (2, 0)])
def test_calibration_needs_a_positive_count(batches, batch_size):
    with pytest.raises(ConfigError, match="batches >= 1"):
        calibration_batches(CalibrationSpec(batches=batches, batch_size=batch_size), 32)


def write_png(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (48, 40), colour).save(path)


@pytest.fixture
def image_folder(tmp_path):
    """Two classes, three PNGs each."""
    root = tmp_path / "images"
    for label, base in (("cat", 10), ("dog", 120)):
        for index in range(3):
            write_png(root / label / f"{index}.png", (base + 20 * index, 60, 200 - 30 * index))
    return root


def test_folder_calibration_hash_is_stable_and_tracks_content(image_folder):
    spec = CalibrationSpec(source=str(image_folder), batches=3, batch_size=2, seed=0)
    batches, identity = calibration_batches(spec, 32)
    assert [tuple(batch.shape) for batch in batches] == [(2, 3, 32, 32)] * 3
    assert identity | {"sha256": None} == {"source": str(image_folder), "batches": 3, "batch_size": 2, "seed": 0,
                                           "images": 6, "sha256": None}
    assert calibration_batches(spec, 32)[1] == identity
    write_png(image_folder / "dog" / "1.png", (0, 0, 0))
    assert calibration_batches(spec, 32)[1]["sha256"] != identity["sha256"]


def test_folder_calibration_draws_a_seeded_subset(image_folder):
    def identity(seed):
        return calibration_batches(CalibrationSpec(source=str(image_folder), batches=2, batch_size=2, seed=seed),
                                   32)[1]

    assert identity(0) == identity(0)
    assert identity(0)["images"] == 4
    assert len({identity(seed)["sha256"] for seed in range(4)}) > 1


def test_folder_smaller_than_requested_gives_every_image(image_folder):
    batches, identity = calibration_batches(CalibrationSpec(source=str(image_folder), batches=4, batch_size=4), 24)
    assert [len(batch) for batch in batches] == [4, 2]
    assert identity["images"] == 6 and identity["batches"] == 2


def test_folder_uses_the_given_transform(image_folder):
    transform = default_transform(16)
    batches, _ = calibration_batches(CalibrationSpec(source=str(image_folder), batches=1, batch_size=2), 224,
                                     transform)
    assert batches[0].shape == (2, 3, 16, 16)


def test_missing_or_empty_folder_is_one_line_config_error(tmp_path):
    for source in (tmp_path / "absent", tmp_path):
        with pytest.raises(ConfigError) as caught:
            calibration_batches(CalibrationSpec(source=str(source)), 32)
        assert str(source) in str(caught.value) and "\n" not in str(caught.value)


def test_default_transform_preset():
    transform = default_transform(299)
    assert (transform.crop_size, transform.resize_size) == ([299], [341])


def test_transform_for_follows_the_weights():
    random_resnet50 = transform_for(open_model("resnet50"))
    assert (random_resnet50.crop_size, random_resnet50.resize_size) == ([224], [256])
    pretrained = transform_for(open_model("resnet50", "pretrained"))
    assert (pretrained.crop_size, pretrained.resize_size) == ([224], [232])
    inception = transform_for(open_model("inception_v3", "pretrained"), variant="prequantized")
    assert (inception.crop_size, inception.resize_size) == ([299], [342])
    assert transform_for(open_model("mobilenet_v2", "pretrained"), variant="prequantized").resize_size == [256]
