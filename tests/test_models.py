"""qbench.runner.registry.models: the catalog against the live torchvision, custom factories, and the built variants."""

import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
import torch

from qbench.errors import ConfigError, NotApplicable, RegistryError
from qbench.runner.registry.models import ModelInfo, list_models, model_info, open_model
from qbench.runner.registry.torchvision_compat import import_torchvision

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

tv = import_torchvision()
REPO = Path(__file__).resolve().parents[1]


def state_hash(model) -> str:
    import hashlib
    digest = hashlib.sha256()
    for key, value in model.state_dict().items():
        if isinstance(value, torch.Tensor):
            digest.update(key.encode())
            digest.update((value.dequantize() if value.is_quantized else value).contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_catalog_matches_torchvision():
    float_names = tv.models.list_models(module=tv.models)
    quantized = tv.models.list_models(module=tv.models.quantization)
    assert list_models() == sorted(float_names)
    assert list_models(tags="quantizable") == sorted(name.removeprefix("quantized_") for name in quantized)
    assert (len(list_models()), len(list_models(tags=("quantizable",)))) == (80, 12)
    assert all(model_info(name).quantizable == (f"quantized_{name}" in quantized) for name in float_names)


def test_globs_exclude_and_tags():
    assert list_models("resnet*") == ["resnet101", "resnet152", "resnet18", "resnet34", "resnet50"]
    assert list_models(("vit_b_*", "swin_t"), exclude="vit_b_32") == ["swin_t", "vit_b_16"]
    assert list_models(tags=("quantizable", "resnet")) == ["resnet18", "resnet50", "resnext101_32x8d",
                                                            "resnext101_64x4d"]
    assert list_models("mobilenet*", tags="quantizable") == ["mobilenet_v2", "mobilenet_v3_large"]
    assert list_models("nothing*") == []


def test_model_info_fields_and_tags():
    assert model_info("resnet18") == ModelInfo(name="resnet18", tags=("float", "quantizable", "resnet"),
                                               quantizable=True, input_size=224,
                                               builder="torchvision.models.resnet:resnet18")
    assert model_info("vit_b_16").tags == ("float", "vision_transformer")
    assert "mobilenetv2" in model_info("mobilenet_v2").tags
    assert model_info("inception_v3").input_size == 299
    assert model_info("vit_h_14").input_size == 518
    assert model_info("efficientnet_b3").input_size == 300


@pytest.mark.parametrize("name, suggestion", [("resnet19", "resnet18"), ("quantized_resnet18", "resnet18"),
                                              ("mobilenetv2", "mobilenet_v2")])
def test_unknown_name_suggests_close_matches(name, suggestion):
    with pytest.raises(RegistryError) as caught:
        model_info(name)
    assert suggestion in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(RegistryError):
        open_model(name)


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module of the user's, importable by a unique name; returns that name."""
    name = f"qbench_user_models_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent("""
        import torch
        INPUT_SIZE = 64

        def tiny():
            return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                       torch.nn.Linear(4, 10))

        def not_a_model():
            return 42

        def sized():
            return tiny()
        sized.input_size = 32
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_custom_factory(user_module, tmp_path):
    name = f"{user_module}:tiny"
    assert model_info(name) == ModelInfo(name=name, tags=("float", "custom"), quantizable=False, input_size=64,
                                         builder=name)
    assert model_info(f"{user_module}:sized").input_size == 32
    source = open_model(name, seed=1)
    first, second = source.float_model(), open_model(name, seed=1).float_model()
    assert state_hash(first) == state_hash(second) != state_hash(open_model(name, seed=2).float_model())
    assert not first.training
    with pytest.raises(NotApplicable, match="has no quantizable variant"):
        source.quantizable_model()
    with pytest.raises(NotApplicable, match="has no quantizable variant"):
        source.prequantized_model("x86")
    with pytest.raises(ConfigError, match="no pretrained weights"):
        open_model(name, "pretrained")
    path = tmp_path / "tiny.pt"
    torch.save({"state_dict": first.state_dict()}, path)
    assert state_hash(open_model(name, f"checkpoint:{path}", seed=9).float_model()) == state_hash(first)


def test_custom_factory_errors(user_module):
    with pytest.raises(RegistryError, match="cannot import") as caught:
        model_info("no_such_package_qbench.models:make")
    assert "\n" not in str(caught.value)
    with pytest.raises(RegistryError, match="no attribute"):
        model_info(f"{user_module}:missing")
    with pytest.raises(ConfigError, match="not a torch.nn.Module"):
        open_model(f"{user_module}:not_a_model").float_model()


def test_random_weights_are_seeded_and_leave_global_rng_alone():
    torch.manual_seed(11)
    expected_next = torch.rand(1)
    torch.manual_seed(11)
    first = open_model("resnet18", seed=3).float_model()
    assert torch.equal(torch.rand(1), expected_next)
    assert state_hash(first) == state_hash(open_model("resnet18", seed=3).float_model())
    assert state_hash(first) != state_hash(open_model("resnet18", seed=4).float_model())
    assert not first.training
    assert open_model("resnet18").weights_info() == {"kind": "random", "name": None, "file": None, "sha256": None}


IDENTITY_CODE = """
import hashlib, torch
from qbench.records import CalibrationSpec
from qbench.runner.registry.data import calibration_batches, example_input
from qbench.runner.registry.models import open_model
digest = hashlib.sha256()
for key, value in open_model("squeezenet1_1", seed=7).float_model().state_dict().items():
    digest.update(key.encode()); digest.update(value.numpy().tobytes())
result = {"weights": digest.hexdigest(),
          "example": hashlib.sha256(example_input(2, 32, 5).numpy().tobytes()).hexdigest(),
          "calibration": calibration_batches(CalibrationSpec(seed=5), 32)[1]}
"""


def test_identical_weights_and_inputs_across_processes():
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    run = subprocess.run([sys.executable, "-c", IDENTITY_CODE + "import json; print(json.dumps(result))"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    here = {}
    exec(IDENTITY_CODE, here)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == json.loads(json.dumps(here["result"]))


def test_quantizable_model_carries_the_float_weights():
    source = open_model("mobilenet_v2", seed=2)
    float_state, quantizable = source.float_model().state_dict(), source.quantizable_model()
    assert type(quantizable).__name__ == "QuantizableMobileNetV2" and hasattr(quantizable, "fuse_model")
    assert not quantizable.training
    state = quantizable.state_dict()
    assert state.keys() == float_state.keys()
    assert all(torch.equal(state[key], value) for key, value in float_state.items())


def test_not_quantizable_models_say_so():
    source = open_model("squeezenet1_1")
    assert source.quantizable is False
    for build in (source.quantizable_model, lambda: source.prequantized_model("x86")):
        with pytest.raises(NotApplicable) as caught:
            build()
        assert str(caught.value) == "squeezenet1_1 has no quantizable variant in torchvision.models.quantization"


@pytest.mark.parametrize("name, engine", [("resnet18", "qnnpack"), ("resnet18", "x86"), ("mobilenet_v2", "x86"),
                                          ("mobilenet_v2", "onednn")])
def test_prequantized_ends_on_the_case_engine(name, engine):
    torch.backends.quantized.engine = "fbgemm"
    model = open_model(name).prequantized_model(engine)
    assert torch.backends.quantized.engine == engine
    assert any(value.is_quantized for value in model.state_dict().values() if isinstance(value, torch.Tensor))
    assert not model.training
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)


def test_prequantized_random_weights_are_seeded():
    first = state_hash(open_model("shufflenet_v2_x0_5", seed=1).prequantized_model("x86"))
    assert first == state_hash(open_model("shufflenet_v2_x0_5", seed=1).prequantized_model("qnnpack"))
    assert first != state_hash(open_model("shufflenet_v2_x0_5", seed=2).prequantized_model("x86"))


def test_prequantized_unsupported_engine_is_not_applicable():
    torch.backends.quantized.engine = "x86"
    with pytest.raises(NotApplicable, match="engine bogus"):
        open_model("resnet18").prequantized_model("bogus")
    assert torch.backends.quantized.engine == "x86"


def test_inception_v3_builds_for_its_input_size():
    source = open_model("inception_v3")
    model = source.float_model()
    assert model.AuxLogits is None and model.transform_input
    with torch.inference_mode():
        assert model(torch.zeros(1, 3, source.input_size, source.input_size)).shape == (1, 1000)


@pytest.mark.slow
def test_prequantized_builds_for_an_engine_that_packs_where_the_weights_backend_cannot(monkeypatch):
    """On aarch64, fbgemm (the backend of torchvision's released ResNet/ShuffleNet/GoogLeNet/Inception weights)
    cannot prepack; the skeleton is then built for qnnpack and the released (per-channel) weights load into it."""
    from qbench.runner.registry import engines, models

    x = torch.rand(2, 3, 224, 224)
    monkeypatch.setattr(torch.backends.quantized, "engine", torch.backends.quantized.engine)  # restored afterwards
    source = open_model("shufflenet_v2_x0_5")
    reference = source.prequantized_model("qnnpack")  # built for fbgemm, repacked for qnnpack (x86 can do both)
    released = reference.state_dict()
    with torch.inference_mode():
        expected = reference(x)
    real_probe = engines.probe_engine
    monkeypatch.setattr(engines, "probe_engine",
                        lambda name: "quantized linear: RuntimeError: unknown architecure" if name == "fbgemm"
                        else real_probe(name))
    monkeypatch.setattr(models.TorchvisionModel, "_prequantized_weights",
                        lambda self, qweights: (released, {"name": "released", "backend": "fbgemm"}))
    rebuilt_source = open_model("shufflenet_v2_x0_5")
    rebuilt = rebuilt_source.prequantized_model("qnnpack")
    assert torch.backends.quantized.engine == "qnnpack"
    provenance = rebuilt_source.weights_info()
    assert provenance["built_for"] == "qnnpack" and "unknown architecure" in provenance["built_for_why"]
    with torch.inference_mode():
        assert torch.equal(rebuilt(x), expected)
