"""qbench.runner.registry.modes: every mode on a tiny hand-written model, under x86 and qnnpack."""

import json

import pytest
import torch
import torch.ao.quantization as tq
from torch import nn

from qbench import records
from qbench.errors import ConfigError, NotApplicable, RegistryError
from qbench.runner.probes.size import measure_size
from qbench.runner.registry import Prepared
from qbench.runner.registry.describe import describe_qconfig
from qbench.runner.registry.modes import MODES, apply_mode, register_mode, registered_modes
from tests.torch_factories import SIDE, BranchyNet, FloatOnlySource, TinySource, _centred_cosine, _inputs, _run

# prepare() builds observers with reduce_range, which torch 2.13 warns about on every call.
pytestmark = pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning")

QUANTIZED_MODES = ("dynamic", "static_eager", "static_fx", "prequantized")
TEST_ENGINES = ("x86", "qnnpack")
class ConvOnlyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))

    def forward(self, x):
        return self.features(x).mean((2, 3))


@pytest.fixture(autouse=True)
def restore_engine():
    before = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = before


def _apply(mode, source=None, engine=None, **overrides):
    return apply_mode(mode, source or TinySource(), engine=engine, **{**_inputs(), **overrides})


# --------------------------------------------------------------------------- the registry


def test_registered_modes_are_the_record_contract_modes():
    assert registered_modes() == MODES == records.MODES


def test_registering_a_mode_twice_is_refused():
    with pytest.raises(RegistryError, match="already registered"):
        register_mode("fp32")(lambda inputs, clock: None)


def test_unknown_mode_is_a_registry_error_listing_the_modes():
    with pytest.raises(RegistryError, match="'int4'; allowed: fp32, fp32_bf16, dynamic, static_eager, static_fx, prequantized"):
        _apply("int4", engine="x86")


@pytest.mark.parametrize("mode", QUANTIZED_MODES)
def test_unknown_engine_is_a_registry_error(mode):
    with pytest.raises(RegistryError, match="unknown engine 'mkldnn'"):
        _apply(mode, engine="mkldnn")


def test_fp32_takes_no_engine_and_quantized_modes_need_one():
    with pytest.raises(RegistryError, match="takes no engine"):
        _apply("fp32", engine="x86")
    with pytest.raises(RegistryError, match="needs an engine"):
        _apply("static_eager", engine=None)


# --------------------------------------------------------------------------- fp32


def test_fp32_is_the_float_model_untouched_and_leaves_the_engine_alone():
    torch.backends.quantized.engine = "onednn"
    prepared = _apply("fp32")
    assert isinstance(prepared, Prepared) and prepared.qconfig is None
    assert set(prepared.phases) == {"build"}
    assert measure_size(prepared.model)["modules_quantized"] == 0
    assert torch.backends.quantized.engine == "onednn"


# --------------------------------------------------------------------------- every quantized mode, both engines

EXPECTED_PHASES = {
    "dynamic": ["build", "convert"],
    "static_eager": ["build", "fuse", "prepare", "calibrate", "convert"],
    "static_fx": ["build", "prepare", "calibrate", "convert"],
    "prequantized": ["build"],
}


@pytest.mark.parametrize("engine", TEST_ENGINES)
@pytest.mark.parametrize("mode", QUANTIZED_MODES)
def test_mode_output_tracks_fp32_and_the_case_engine_is_left_set(mode, engine):
    other = "onednn"
    torch.backends.quantized.engine = other
    prepared = _apply(mode, engine=engine)
    assert torch.backends.quantized.engine == engine

    x = torch.rand(8, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    expected, got = _run(TinySource().float_model(), x), _run(prepared.model, x)
    assert got.shape == expected.shape
    assert got.dtype == torch.float32
    assert _centred_cosine(got, expected) > (0.98 if mode == "dynamic" else 0.9)
    assert not torch.equal(got, expected)  # it really is quantized

    assert list(prepared.phases) == EXPECTED_PHASES[mode]
    assert all(seconds >= 0 for seconds in prepared.phases.values())
    json.dumps({"qconfig": prepared.qconfig, "notes": prepared.notes})


@pytest.mark.parametrize("engine", TEST_ENGINES)
def test_prequantized_pins_the_engine_even_when_the_builder_switched_it(engine):
    source = TinySource(switch_engine_to="fbgemm")
    _apply("prequantized", source, engine=engine)
    assert torch.backends.quantized.engine == engine


# --------------------------------------------------------------------------- size and module counts

# Big enough that fc1's 1024x256 weight dominates every per-tensor and per-module overhead.
BIG = {"width": 32, "hidden": 256}
CONV_WEIGHTS = 3 * 32 * 9 + 32 * 64 * 9
LINEAR_WEIGHTS = 64 * 16 * 256 + 256 * 10
BN_CHANNELS = 32 + 64  # fusing folds each BN's weight and bias into one conv bias


@pytest.fixture(scope="module")
def fp32_size():
    return measure_size(TinySource(**BIG).float_model())


@pytest.mark.parametrize("engine", TEST_ENGINES)
@pytest.mark.parametrize("mode", ["static_eager", "static_fx", "prequantized"])
def test_static_modes_quantize_every_compute_module_to_about_a_quarter(mode, engine, fp32_size):
    size = measure_size(_apply(mode, TinySource(**BIG), engine=engine).model)
    assert (size["modules_quantized"], size["modules_float"]) == (4, 0)
    assert size["bytes_by_dtype"]["torch.qint8"] == CONV_WEIGHTS + LINEAR_WEIGHTS
    assert size["parameters"] == fp32_size["parameters"] - BN_CHANNELS
    assert 3.5 < fp32_size["state_dict_bytes"] / size["state_dict_bytes"] < 4.2


@pytest.mark.parametrize("engine", TEST_ENGINES)
def test_dynamic_quantizes_only_the_linears(engine, fp32_size):
    prepared = _apply("dynamic", TinySource(**BIG), engine=engine)
    size = measure_size(prepared.model)
    assert (size["modules_quantized"], size["modules_float"]) == (2, 2)
    assert size["modules_by_type"] == {"Conv2d": 2, "quantized.dynamic.Linear": 2}
    assert prepared.notes == {"converted_modules": 2, "converted_by_type": {"Linear": 2}}
    assert size["bytes_by_dtype"]["torch.qint8"] == LINEAR_WEIGHTS
    assert size["parameters"] == fp32_size["parameters"]
    # Conv and BatchNorm stay float, so the gain is a little below 4x.
    assert 3.0 < fp32_size["state_dict_bytes"] / size["state_dict_bytes"] < 3.9


def test_fp32_model_counts_float_modules_only(fp32_size):
    assert (fp32_size["modules_quantized"], fp32_size["modules_float"]) == (0, 4)
    assert "torch.qint8" not in fp32_size["bytes_by_dtype"]


# --------------------------------------------------------------------------- not applicable


def test_dynamic_on_a_model_without_linear_is_not_applicable():
    with pytest.raises(NotApplicable, match="no Linear/LSTM/GRU module to quantize dynamically"):
        _apply("dynamic", FloatOnlySource(ConvOnlyNet), engine="x86")


@pytest.mark.parametrize("mode", ["static_eager", "prequantized"])
def test_a_source_without_a_quantizable_variant_propagates_not_applicable(mode):
    with pytest.raises(NotApplicable, match="no (quantizable variant|pre-quantized weights)"):
        _apply(mode, FloatOnlySource(ConvOnlyNet), engine="x86")


def test_static_fx_works_on_a_float_model_without_quantizable_variant():
    prepared = _apply("static_fx", FloatOnlySource(ConvOnlyNet), engine="x86")
    assert measure_size(prepared.model)["modules_quantized"] == 2


def test_static_fx_on_an_untraceable_model_is_not_applicable():
    with pytest.raises(NotApplicable, match="not symbolically traceable"):
        _apply("static_fx", FloatOnlySource(BranchyNet), engine="x86")


@pytest.mark.parametrize("mode", ["static_eager", "static_fx"])
def test_static_modes_refuse_to_run_without_calibration(mode):
    with pytest.raises(ConfigError, match="calibration"):
        _apply(mode, engine="x86", calibration=[])


def test_an_engine_that_fails_its_probe_is_not_applicable(monkeypatch):
    from qbench.runner.registry import modes

    monkeypatch.setattr(modes, "probe_engine", lambda name: "quantized linear: RuntimeError: unknown architecure")
    with pytest.raises(NotApplicable, match="engine fbgemm does not work here: quantized linear"):
        _apply("static_eager", engine="fbgemm")


# --------------------------------------------------------------------------- qconfig descriptions


def test_x86_default_qconfig_is_reduce_range_with_per_channel_symmetric_weights():
    described = describe_qconfig(tq.get_default_qconfig("x86"))
    assert described["activation"] == {
        "observer": "HistogramObserver", "dtype": "torch.quint8", "qscheme": "torch.per_tensor_affine",
        "quant_min": 0, "quant_max": 127, "reduce_range": True, "per_channel": False, "symmetric": False}
    assert described["weight"] == {
        "observer": "PerChannelMinMaxObserver", "dtype": "torch.qint8", "qscheme": "torch.per_channel_symmetric",
        "quant_min": -128, "quant_max": 127, "reduce_range": False, "per_channel": True, "symmetric": True,
        "ch_axis": 0}
    assert describe_qconfig(tq.get_default_qconfig("fbgemm")) == described


def test_qnnpack_default_qconfig_is_full_range_with_per_tensor_weights():
    described = describe_qconfig(tq.get_default_qconfig("qnnpack"))
    assert described["activation"]["reduce_range"] is False
    assert described["activation"]["quant_max"] == 255
    assert described["weight"]["observer"] == "MinMaxObserver"
    assert described["weight"]["qscheme"] == "torch.per_tensor_symmetric"
    assert described["weight"]["per_channel"] is False and "ch_axis" not in described["weight"]


def test_onednn_default_qconfig_is_full_range_with_per_channel_weights():
    described = describe_qconfig(tq.get_default_qconfig("onednn"))
    assert described["activation"]["reduce_range"] is False
    assert described["weight"]["per_channel"] is True


@pytest.mark.parametrize("engine", TEST_ENGINES)
def test_a_qconfig_mapping_is_described_by_its_global_qconfig_and_override_count(engine):
    described = describe_qconfig(tq.get_default_qconfig_mapping(engine))
    plain = describe_qconfig(tq.get_default_qconfig(engine))
    assert described["kind"] == "qconfig_mapping"
    assert (described["activation"], described["weight"]) == (plain["activation"], plain["weight"])
    assert described["object_type_overrides"] > 0
    assert described["module_name_overrides"] == 0
    json.dumps(described)


def test_dynamic_and_fake_quantize_qconfigs_are_described():
    dynamic = describe_qconfig(tq.default_dynamic_qconfig)
    assert dynamic["activation"]["observer"] == "PlaceholderObserver" and dynamic["activation"]["is_dynamic"]
    qat = describe_qconfig(tq.get_default_qat_qconfig("x86"))
    assert qat["weight"]["fake_quantize"] == "FusedMovingAvgObsFakeQuantize"
    assert qat["weight"]["observer"] == "MovingAveragePerChannelMinMaxObserver"
    assert describe_qconfig(None) is None


@pytest.mark.parametrize("engine", TEST_ENGINES)
def test_static_modes_record_the_qconfig_they_used(engine):
    eager = _apply("static_eager", engine=engine).qconfig
    fx = _apply("static_fx", engine=engine).qconfig
    assert eager["origin"] == f"get_default_qconfig({engine!r})"
    assert fx["origin"] == f"get_default_qconfig_mapping({engine!r})"
    assert eager["activation"]["reduce_range"] is (engine == "x86")
    assert eager["weight"] == fx["weight"]


@pytest.mark.parametrize("engine,per_channel", [("x86", True), ("qnnpack", False)])
def test_prequantized_qconfig_is_read_from_the_converted_modules(engine, per_channel):
    qconfig = _apply("prequantized", engine=engine).qconfig
    assert qconfig["origin"] == "torchvision quantize=True"
    assert qconfig["kind"] == "converted" and qconfig["quantized_modules"] == 4
    assert qconfig["weight"]["dtype"] == "torch.qint8"
    assert qconfig["weight"]["per_channel"] is per_channel
    assert qconfig["weight"]["symmetric"] is True
    assert qconfig["activation"] == {"dtype": "torch.quint8", "modules_with_scale": 4}
    json.dumps(qconfig)


@pytest.mark.parametrize("mode", QUANTIZED_MODES)
def test_every_quantized_mode_names_its_qconfig(mode):
    assert _apply(mode, engine="x86").qconfig["name"] == "default"
