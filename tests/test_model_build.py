"""Building a model whose weights are then loaded skips torch.nn.init's initializers (drawing weights only to
overwrite them), and the model is the same as one built with them: the strict load overwrites every tensor."""

import pytest
import torch

from qbench.runner.registry import models
from qbench.runner.registry.models import open_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["tests.tiny_models:convnet", "mobilenet_v2"])
def test_a_loaded_model_is_built_without_initializers_and_equals_the_checkpoint(tmp_path, monkeypatch, name):
    seeded = _state(open_model(name, "random", seed=3).float_model())
    path = tmp_path / "weights.pt"
    torch.save(seeded, path)
    drawn = []
    original = torch.nn.init.kaiming_uniform_

    def counting(tensor, *args, **kwargs):
        drawn.append(tuple(tensor.shape))
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", counting)
    loaded = open_model(name, f"checkpoint:{path}", seed=3).float_model()
    assert drawn == []  # nothing was drawn to be overwritten
    assert loaded.state_dict().keys() == seeded.keys()
    assert all(torch.equal(loaded.state_dict()[k], seeded[k]) for k in seeded)
    assert torch.nn.init.kaiming_uniform_ is counting  # put back after the build
    random = open_model(name, "random", seed=3).float_model()
    assert drawn  # a random-weights build still draws its weights
    assert all(torch.equal(random.state_dict()[k], seeded[k]) for k in seeded)


def test_the_quantizable_variant_of_loaded_weights_equals_the_float_weights(tmp_path):
    seeded = _state(open_model("mobilenet_v2", "random", seed=1).float_model())
    path = tmp_path / "weights.pt"
    torch.save(seeded, path)
    quantizable = open_model("mobilenet_v2", f"checkpoint:{path}", seed=1).quantizable_model().state_dict()
    assert all(torch.equal(quantizable[k], seeded[k]) for k in seeded)


def test_the_initializers_come_back_when_the_build_fails():
    before = {name: getattr(torch.nn.init, name) for name in models._INITIALIZERS}
    with pytest.raises(RuntimeError, match="broken"):
        with models._initializers_skipped():
            tensor = torch.zeros(3)
            assert torch.nn.init.normal_(tensor) is tensor and torch.equal(tensor, torch.zeros(3))
            raise RuntimeError("broken")
    assert {name: getattr(torch.nn.init, name) for name in models._INITIALIZERS} == before
