"""qbench.runner.registry.evalset: ImageNet wnid order, label maps, the seeded subset and its identity, transforms, and
one-line errors for bad folders."""

import hashlib
import json
import os

import pytest
import torch
from PIL import Image

from qbench.errors import ConfigError
from qbench.records import AccuracySpec
from qbench.runner.registry.data import example_input
from qbench.runner.registry.evalset import IMAGENET_WNIDS, load_eval_set, read_label_map, wnid_index
from qbench.runner.registry.models import open_model
from qbench.runner.registry.torchvision_compat import import_torchvision
from tests.learned import CLASS_INDICES, WNIDS, write_image_folder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

SUBSET_KEYS = {"source", "images", "seed", "files_sha256", "labels", "transform"}


@pytest.fixture(scope="module")
def resnet():
    return open_model("resnet18", "random")


@pytest.fixture(scope="module")
def wnid_folder(tmp_path_factory):
    """Six ImageNet classes, three JPEGs each."""
    root = tmp_path_factory.mktemp("wnids")
    write_image_folder(str(root), per_class=3, seed=5)
    return root


def relative_files(root):
    return sorted(os.path.relpath(os.path.join(folder, name), root).replace(os.sep, "/")
                  for folder, _, names in os.walk(root) for name in names)


def spec(root, **fields):
    return AccuracySpec(**{"source": str(root), "images": 6, "batch_size": 4, **fields})


def one_line_error(call, match):
    with pytest.raises(ConfigError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
    return str(info.value)


# ---------------------------------------------------------------------------------------------- wnid order

def test_wnid_list_is_imagenet_1k_in_sorted_order():
    assert len(IMAGENET_WNIDS) == len(set(IMAGENET_WNIDS)) == 1000
    assert list(IMAGENET_WNIDS) == sorted(IMAGENET_WNIDS)
    assert all(len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit() for wnid in IMAGENET_WNIDS)
    assert wnid_index("n01440764") == 0 and wnid_index("n15075141") == 999 and wnid_index("n00000000") is None


def test_wnid_order_matches_torchvision_categories():
    """torchvision's Imagenette names its ten wnids; each one's index here must be that class in the categories
    of torchvision's pretrained weights (an independent check of the whole list's order, not just its start)."""
    tv = import_torchvision()
    categories = tv.models.get_model_weights("resnet18").DEFAULT.meta["categories"]
    named = tv.datasets.Imagenette._WNID_TO_CLASS
    assert len(named) == 10
    for wnid, names in named.items():
        assert categories[wnid_index(wnid)] == names[0]
    assert categories[wnid_index("n01440764")] == "tench"


def test_wnid_folders_map_to_imagenet_indices(wnid_folder, resnet):
    evalset = load_eval_set(spec(wnid_folder, images=18), resnet)
    expected = {wnid: index for wnid, index in zip(WNIDS, CLASS_INDICES)}
    files = relative_files(wnid_folder)
    assert evalset.labels == tuple(expected[name.split("/")[0]] for name in files)
    assert evalset.identity["labels"] == "wnid"
    assert set(evalset.labels) == {0, 1, 217, 491, 701, 980}


# ---------------------------------------------------------------------------------------------- the subset

def test_subset_identity_is_stable_and_tracks_the_seed(wnid_folder, resnet):
    first = load_eval_set(spec(wnid_folder, seed=3), resnet)
    again = load_eval_set(spec(wnid_folder, seed=3), resnet)
    other = load_eval_set(spec(wnid_folder, seed=4), resnet)
    assert first.identity.keys() == SUBSET_KEYS
    assert first.identity == again.identity and first.labels == again.labels
    assert other.identity["files_sha256"] != first.identity["files_sha256"]
    assert first.identity | {"files_sha256": None, "transform": None} == {
        "source": str(wnid_folder), "images": 6, "seed": 3, "files_sha256": None, "labels": "wnid",
        "transform": None}


def test_subset_hash_is_the_sha256_of_the_sorted_relative_paths(wnid_folder, resnet):
    whole = load_eval_set(spec(wnid_folder, images=18), resnet)
    expected = hashlib.sha256("\n".join(relative_files(wnid_folder)).encode()).hexdigest()
    assert whole.identity["files_sha256"] == expected
    # Asking for every image gives every image whatever the seed.
    assert load_eval_set(spec(wnid_folder, images=18, seed=9), resnet).identity["files_sha256"] == expected


def test_batches_are_transformed_lazily_and_identically(wnid_folder, resnet):
    evalset = load_eval_set(spec(wnid_folder, images=6, batch_size=4), resnet)
    first, again = list(evalset.batches()), list(evalset.batches())
    assert [tuple(batch.shape) for batch in first] == [(4, 3, 224, 224), (2, 3, 224, 224)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert evalset.images == 6


def test_transform_is_the_weights_own(resnet, tmp_path):
    write_image_folder(str(tmp_path), per_class=1, seed=0)
    inception = load_eval_set(spec(tmp_path, images=2), open_model("inception_v3", "pretrained"))
    assert [tuple(batch.shape) for batch in inception.batches()] == [(2, 3, 299, 299)]
    transform = inception.identity["transform"]
    assert "crop_size=[299]" in transform and "resize_size=[342]" in transform
    random_inception = load_eval_set(spec(tmp_path, images=1), open_model("inception_v3", "random"))
    assert next(random_inception.batches()).shape[-1] == 299
    assert "crop_size=[224]" in load_eval_set(spec(tmp_path, images=1), resnet).identity["transform"]


# ---------------------------------------------------------------------------------------------- label maps

def write_pngs(root, folders, per_folder=2):
    for index, folder in enumerate(folders):
        os.makedirs(root / folder, exist_ok=True)
        for number in range(per_folder):
            Image.new("RGB", (20, 16), (40 * index, 10 * number, 90)).save(root / folder / f"{number}.png")


def test_text_label_map(tmp_path, resnet):
    write_pngs(tmp_path / "images", ["cat", "big dog"])
    label_map = tmp_path / "labels.txt"
    label_map.write_text("# folder index\ncat\t281\n\nbig dog  207\nbird 10\n")
    evalset = load_eval_set(spec(tmp_path / "images", images=4, labels=str(label_map)), resnet)
    assert evalset.labels == (207, 207, 281, 281)  # "big dog/..." sorts before "cat/..."
    assert evalset.identity["labels"] == "map:" + hashlib.sha256(label_map.read_bytes()).hexdigest()


def test_json_label_map(tmp_path, resnet):
    write_pngs(tmp_path / "images", ["a", "b"])
    label_map = tmp_path / "labels.json"
    label_map.write_text(json.dumps({"a": 3, "b": 0}))
    assert read_label_map(str(label_map))[0] == {"a": 3, "b": 0}
    assert load_eval_set(spec(tmp_path / "images", images=4, labels=str(label_map)), resnet).labels == (3, 3, 0, 0)


def test_unlabelled_folders(tmp_path, resnet):
    write_pngs(tmp_path / "named", ["cat", "dog"])
    auto = load_eval_set(spec(tmp_path / "named", images=3), resnet)
    assert auto.labels is None and auto.identity["labels"] is None
    write_image_folder(str(tmp_path / "wnids"), per_class=1, seed=0)
    assert load_eval_set(spec(tmp_path / "wnids", images=2, labels="none"), resnet).labels is None
    flat = tmp_path / "flat"
    flat.mkdir()
    for number in range(3):
        Image.new("RGB", (10, 10), (number, 0, 0)).save(flat / f"{number}.jpg")
    evalset = load_eval_set(spec(flat, images=3), resnet)
    assert evalset.labels is None and len(list(evalset.batches())) == 1
    one_line_error(lambda: load_eval_set(spec(flat, images=3, labels="wnid"), resnet), "no class folders")


# ---------------------------------------------------------------------------------------------- synthetic

def test_synthetic_images_are_seeded_and_their_own_stream(resnet):
    evalset = load_eval_set(AccuracySpec(images=5, batch_size=2, seed=1), resnet)
    batches = list(evalset.batches())
    assert [tuple(batch.shape) for batch in batches] == [(2, 3, 224, 224), (2, 3, 224, 224), (1, 3, 224, 224)]
    assert evalset.labels is None and evalset.identity["labels"] is None
    assert evalset.identity["source"] == "synthetic" and evalset.identity["images"] == 5
    assert load_eval_set(AccuracySpec(images=5, batch_size=2, seed=1), resnet).identity == evalset.identity
    assert load_eval_set(AccuracySpec(images=5, batch_size=2, seed=2), resnet).identity["files_sha256"] != \
        evalset.identity["files_sha256"]
    assert not torch.equal(batches[0], example_input(2, 224, seed=1))
    # The batch size changes how images are grouped, not which images they are.
    regrouped = torch.cat(list(load_eval_set(AccuracySpec(images=5, batch_size=5, seed=1), resnet).batches()))
    assert torch.equal(regrouped, torch.cat(batches))


# ---------------------------------------------------------------------------------------------- bad input

def test_bad_input_is_a_one_line_config_error(tmp_path, resnet, wnid_folder):
    one_line_error(lambda: load_eval_set(spec(tmp_path / "missing"), resnet), "neither 'synthetic' nor")
    one_line_error(lambda: load_eval_set(spec(wnid_folder, images=19), resnet), "asks for 19 images but .* only 18")
    one_line_error(lambda: load_eval_set(spec(wnid_folder, images=0), resnet), "images >= 1")
    one_line_error(lambda: load_eval_set(AccuracySpec(labels="wnid"), resnet), "synthetic evaluation images")

    write_pngs(tmp_path / "empty", ["n01440764", "n01443537"])
    (tmp_path / "empty" / "n01484850").mkdir()
    message = one_line_error(lambda: load_eval_set(spec(tmp_path / "empty", images=2), resnet), "hold no images")
    assert "n01484850" in message and "n01440764" not in message

    write_pngs(tmp_path / "typo", ["n01440764", "n0144353"])
    one_line_error(lambda: load_eval_set(spec(tmp_path / "typo", images=2), resnet),
                   "n0144353 .* not ImageNet-1k WordNet ids")
    write_pngs(tmp_path / "named", ["cat", "dog"])
    one_line_error(lambda: load_eval_set(spec(tmp_path / "named", images=2, labels="wnid"), resnet),
                   "cat, dog .* not ImageNet-1k")

    partial = tmp_path / "partial.txt"
    partial.write_text("cat 1\n")
    one_line_error(lambda: load_eval_set(spec(tmp_path / "named", images=2, labels=str(partial)), resnet),
                   "no entry for class folder.* dog")
    one_line_error(lambda: load_eval_set(spec(tmp_path / "named", labels=str(tmp_path / "nope.txt")), resnet),
                   "label map .* does not exist")
    (tmp_path / "none").mkdir()
    one_line_error(lambda: load_eval_set(spec(tmp_path / "none"), resnet), "holds no images")


@pytest.mark.parametrize("text, match", [
    ("cat\n", "expected 'folder_name index'"),
    ("cat one\n", "must be an integer"),
    ("cat -1\n", "must be an integer"),
    ("cat 1\ncat 2\n", "mapped twice"),
    ("# nothing\n", "maps no folder"),
    ('{"cat": 1.5}', "must be an integer"),
    ('{"cat": true}', "must be an integer"),
    ("{not json", "not valid JSON"),
])
def test_malformed_label_maps(tmp_path, text, match):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    one_line_error(lambda: read_label_map(str(path)), match)


def test_an_unreadable_image_fails_when_loaded(tmp_path, resnet):
    write_pngs(tmp_path / "images", ["n01440764"], per_folder=1)
    (tmp_path / "images" / "n01440764" / "broken.JPEG").write_bytes(b"not a jpeg")
    evalset = load_eval_set(spec(tmp_path / "images", images=2), resnet)
    one_line_error(lambda: list(evalset.batches()), "broken.JPEG cannot be read")
