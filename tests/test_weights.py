"""qbench.runner.registry.weights and the weights paths of open_model: a fake TORCH_HOME, checkpoints written here."""

import hashlib
import os
import re

import pytest
import torch

from qbench.errors import ConfigError, NotApplicable, WeightsNotFound
from qbench.runner.registry import weights as weights_module
from qbench.runner.registry.models import open_model
from qbench.runner.registry.weights import cache_path, default_weights, load_checkpoint, parse_weights, safe_load
from qbench.runner.registry.torchvision_compat import import_torchvision

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

tv = import_torchvision()
SMALL = "shufflenet_v2_x0_5"


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, offline (no test here may reach the network); returns the folder torch.hub caches
    checkpoints in."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("QBENCH_OFFLINE", "1")
    folder = tmp_path / "torch_home" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def seeded_state(builder, seed=123, **kwargs) -> dict:
    torch.manual_seed(seed)
    return builder(weights=None, **kwargs).state_dict()


def assert_same_tensors(model, expected: dict):
    actual = model.state_dict()
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_cache_path_follows_torch_home(torch_home):
    weights = default_weights(SMALL)
    assert cache_path(weights) == str(torch_home / os.path.basename(weights.url))


def test_pretrained_float_weights_come_from_the_cache(torch_home):
    weights = default_weights(SMALL)
    state = seeded_state(tv.models.shufflenet_v2_x0_5)
    torch.save(state, cache_path(weights))
    source = open_model(SMALL, "pretrained")
    assert_same_tensors(source.float_model(), state)
    info = source.weights_info()
    assert info == {"kind": "pretrained", "name": "ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1",
                    "file": cache_path(weights), "sha256": sha256(cache_path(weights)), "verified": info["verified"]}
    # a seeded stand-in under the published name: loaded as before, but the provenance says it is not that file
    assert info["verified"]["by"] == "file-name sha256 prefix" and info["verified"]["matches"] is False


def test_pretrained_not_cached_names_file_and_url(torch_home):
    weights = default_weights(SMALL)
    with pytest.raises(WeightsNotFound) as caught:
        open_model(SMALL, "pretrained").float_model()
    message = str(caught.value)
    assert "\n" not in message
    assert str(weights) in message and cache_path(weights) in message and weights.url in message
    assert not os.path.exists(cache_path(weights))


def test_pretrained_googlenet_file_with_aux_heads_loads(torch_home):
    """torchvision's googlenet checkpoint holds the auxiliary heads; qbench's model has none."""
    state = seeded_state(tv.models.googlenet, aux_logits=True, transform_input=True, init_weights=False)
    assert any(key.startswith("aux1.") for key in state)
    torch.save(state, cache_path(default_weights("googlenet")))
    model = open_model("googlenet", "pretrained").float_model()
    assert model.aux1 is None and model.transform_input
    assert_same_tensors(model, {key: value for key, value in state.items() if not key.startswith(("aux1.", "aux2."))})


def test_pretrained_densenet_legacy_key_names(torch_home):
    """Old torchvision files name layers "norm.1" and predate num_batches_tracked."""
    state = seeded_state(tv.models.densenet121)
    legacy = {re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", key): value
              for key, value in state.items() if not (".denselayer" in key and key.endswith("num_batches_tracked"))}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, cache_path(default_weights("densenet121")))
    assert_same_tensors(open_model("densenet121", "pretrained").float_model(), state)


def test_pretrained_quantized_weights_repack_for_the_case_engine(torch_home):
    qweights = default_weights("quantized_" + SMALL)
    torch.manual_seed(5)
    saved = tv.models.quantization.shufflenet_v2_x0_5(weights=None, quantize=True, backend="fbgemm").state_dict()
    torch.save(saved, cache_path(qweights))
    torch.backends.quantized.engine = "fbgemm"
    source = open_model(SMALL, "pretrained")
    model = source.prequantized_model("x86")
    assert torch.backends.quantized.engine == "x86"
    loaded = model.state_dict()
    for key, value in saved.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(loaded[key].dequantize() if value.is_quantized else loaded[key],
                               value.dequantize() if value.is_quantized else value), key
    info = source.weights_info()
    assert info["kind"] == "pretrained" and info["name"] == str(qweights) and info["backend"] == "fbgemm"
    assert info["sha256"] == sha256(cache_path(qweights))


@pytest.mark.parametrize("wrap", [None, "model", "state_dict"])
def test_checkpoint_raw_or_wrapped(tmp_path, wrap):
    state = seeded_state(tv.models.squeezenet1_1, seed=wrap is None)
    path = tmp_path / "weights.pt"
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, path)
    source = open_model("squeezenet1_1", f"checkpoint:{path}")
    assert_same_tensors(source.float_model(), state)
    assert source.weights_info() == {"kind": "checkpoint", "name": None, "file": str(path), "sha256": sha256(path)}


def test_checkpoint_missing_or_corrupt_is_one_line_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist") as caught:
        open_model("squeezenet1_1", f"checkpoint:{tmp_path / 'nope.pt'}").float_model()
    assert "\n" not in str(caught.value)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be loaded") as caught:
        load_checkpoint(str(corrupt))
    assert "\n" not in str(caught.value)


def test_checkpoint_of_another_model_does_not_fit(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(seeded_state(tv.models.squeezenet1_1), path)
    with pytest.raises(ConfigError, match="does not fit shufflenet_v2_x0_5") as caught:
        open_model(SMALL, f"checkpoint:{path}").float_model()
    assert "\n" not in str(caught.value)


class Payload:
    """Unpickling this would create a file: proof of code execution."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_object_is_refused_not_executed(tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"fc.weight": torch.zeros(1)}, "hook": Payload(str(marker))}, path)
    with pytest.raises(ConfigError, match="weights_only=True"):
        load_checkpoint(str(path))
    assert not marker.exists()


def test_every_load_is_weights_only_on_cpu(tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    path = tmp_path / "w.pt"
    torch.save(seeded_state(tv.models.squeezenet1_1), path)
    open_model("squeezenet1_1", f"checkpoint:{path}").float_model()
    safe_load(str(path))
    assert calls and all(call.get("weights_only") is True and call.get("map_location") == "cpu" for call in calls)


def test_float_checkpoint_is_not_applicable_to_prequantized(tmp_path):
    path = tmp_path / "float.pt"
    torch.save(seeded_state(tv.models.shufflenet_v2_x0_5), path)
    with pytest.raises(NotApplicable, match="float weights"):
        open_model(SMALL, f"checkpoint:{path}").prequantized_model("x86")


@pytest.mark.parametrize("spec", ["", "imagenet", "checkpoint:", "checkpoints:/x.pt"])
def test_bad_weights_spec(spec):
    with pytest.raises(ConfigError, match="random"):
        parse_weights(spec)


def test_sha256_is_computed_once_per_unchanged_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert weights_module.file_sha256(str(path)) == hashlib.sha256(b"abc").hexdigest()
    path.write_bytes(b"abcd")
    assert weights_module.file_sha256(str(path)) == hashlib.sha256(b"abcd").hexdigest()
