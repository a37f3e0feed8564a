"""The qconfig axis: the name grammar (qbench.suite.qconfig_names), the QConfigs built from names
(qbench.runner.registry.qconfigs), and what a sweep really produces in the converted models (qbench.runner.registry.modes)."""

import json
import subprocess
import sys

import pytest
import torch
import torch.ao.nn.quantized as nnq
import torch.ao.quantization as tq
from torch.ao.quantization.quantize_fx import prepare_fx

from qbench.errors import ConfigError, NotApplicable
from qbench.suite.qconfig_names import (GRANULARITIES, OBSERVERS, QCONFIG_EXAMPLES, SYMMETRIES, QconfigName, canonical_name,
                                  parse_qconfig_name, qconfig_skip_reason)
from qbench.records import MODES
from qbench.runner.registry.modes import apply_mode
from qbench.runner.registry.qconfigs import build_qconfig, build_qconfig_mapping, calibration_engine, qconfig_origin
from tests.torch_factories import SIDE, TinySource, _centred_cosine, _inputs, _run

NAMED = [f"{o}/{g}/{s}" for o in OBSERVERS for g in GRANULARITIES for s in SYMMETRIES]
OBSERVER_CLASSES = {"minmax": "MinMaxObserver", "moving_average": "MovingAverageMinMaxObserver",
                    "histogram": "HistogramObserver"}


@pytest.fixture(autouse=True)
def restore_engine_and_threads():
    engine, threads = torch.backends.quantized.engine, torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine runs these tiny models far faster on one thread
    yield
    torch.backends.quantized.engine = engine
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------- the grammar (stdlib)


@pytest.mark.parametrize("name", QCONFIG_EXAMPLES + tuple(NAMED))
def test_every_example_and_combination_is_its_own_canonical_name(name):
    assert canonical_name(name) == name
    assert parse_qconfig_name(name).name == name


def test_a_name_parses_into_its_parts():
    assert parse_qconfig_name("histogram/per_channel/symmetric/reduce_range@fbgemm") == QconfigName(
        observer="histogram", granularity="per_channel", symmetry="symmetric", reduce_range=True,
        calibrated_for="fbgemm")
    default = parse_qconfig_name("default@qnnpack")
    assert default.is_default and default.calibrated_for == "qnnpack" and default.base == "default"
    plain = parse_qconfig_name("minmax/per_tensor/affine")
    assert not plain.is_default and not plain.per_channel and not plain.symmetric and not plain.reduce_range


@pytest.mark.parametrize("name,message", [
    ("histo/per_tensor/affine", "unknown observer 'histo'; allowed: minmax, moving_average, histogram"),
    ("minmax/per_layer/affine", "unknown granularity 'per_layer'; allowed: per_tensor, per_channel"),
    ("minmax/per_tensor/asymmetric", "unknown symmetry 'asymmetric'; allowed: affine, symmetric"),
    ("minmax/per_tensor/affine/reduced", "unknown fourth part 'reduced'; allowed: reduce_range"),
    ("minmax/per_tensor", "expected 'default' or <observer>/<granularity>/<symmetry>"),
    ("minmax/per_tensor/affine/reduce_range/x", "expected 'default' or"),
    ("default@arm", "unknown engine 'arm'; allowed: x86, fbgemm, onednn, qnnpack"),
    ("Default", "expected 'default' or"),
    ("", "non-empty string"),
])
def test_a_typo_is_a_one_line_config_error_naming_the_allowed_values(name, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")) as caught:
        parse_qconfig_name(name)
    assert "\n" not in str(caught.value)


def test_every_mode_takes_default_and_fixed_modes_skip_the_others_with_a_reason():
    for mode in MODES:
        assert qconfig_skip_reason(mode, "default") is None
    for mode in ("static_eager", "static_fx", "qat"):
        assert qconfig_skip_reason(mode, "minmax/per_tensor/affine") is None
        assert qconfig_skip_reason(mode, "default@qnnpack") is None
    for mode in ("fp32", "prequantized", "dynamic", "pt2e"):
        reason = qconfig_skip_reason(mode, "default@qnnpack")
        assert reason.startswith(mode) and "only the qconfig 'default'" in reason
    with pytest.raises(ConfigError):
        qconfig_skip_reason("static_fx", "minmax")


def test_the_grammar_module_does_not_import_torch():
    code = "import sys, qbench.suite.qconfig_names as q; q.canonical_name('default@qnnpack'); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------- building QConfigs


@pytest.mark.parametrize("name", NAMED)
def test_a_named_qconfig_has_the_named_activation_observer_and_weight_scheme(name):
    from qbench.runner.registry.describe import describe_qconfig

    parsed = parse_qconfig_name(name)
    described = describe_qconfig(build_qconfig(name, "x86"))
    activation, weight = described["activation"], described["weight"]
    assert activation["observer"] == OBSERVER_CLASSES[parsed.observer]
    assert (activation["dtype"], activation["qscheme"]) == ("torch.quint8", "torch.per_tensor_affine")
    assert (activation["quant_max"], activation["reduce_range"]) == (255, False)
    assert weight["observer"] == ("PerChannelMinMaxObserver" if parsed.per_channel else "MinMaxObserver")
    assert weight["qscheme"] == f"torch.{parsed.granularity}_{parsed.symmetry}"
    assert (weight["per_channel"], weight["symmetric"]) == (parsed.per_channel, parsed.symmetric)
    assert weight["dtype"] == "torch.qint8"


def test_reduce_range_halves_the_activation_range():
    from qbench.runner.registry.describe import describe_qconfig

    described = describe_qconfig(build_qconfig("histogram/per_tensor/affine/reduce_range", "qnnpack"))
    assert (described["activation"]["quant_max"], described["activation"]["reduce_range"]) == (127, True)


def test_qat_qconfigs_wrap_the_named_observers_in_fake_quantize():
    from qbench.runner.registry.describe import describe_qconfig

    described = describe_qconfig(build_qconfig("histogram/per_channel/symmetric", "x86", qat=True))
    assert described["activation"]["fake_quantize"] == "FakeQuantize"
    assert described["activation"]["observer"] == "HistogramObserver"
    assert described["weight"]["observer"] == "MovingAveragePerChannelMinMaxObserver"
    assert described["weight"]["qscheme"] == "torch.per_channel_symmetric"


@pytest.mark.parametrize("engine", ["x86", "qnnpack"])
def test_default_is_torchs_default_of_the_calibration_engine(engine):
    from qbench.runner.registry.describe import describe_qconfig

    assert describe_qconfig(build_qconfig("default", engine)) == describe_qconfig(tq.get_default_qconfig(engine))
    assert describe_qconfig(build_qconfig("default@qnnpack", engine)) == \
        describe_qconfig(tq.get_default_qconfig("qnnpack"))
    assert describe_qconfig(build_qconfig("default", engine, qat=True)) == \
        describe_qconfig(tq.get_default_qat_qconfig(engine))
    assert calibration_engine("default@qnnpack", engine) == "qnnpack"
    assert calibration_engine("minmax/per_tensor/affine", engine) == engine


def test_a_named_mapping_replaces_the_default_but_keeps_torchs_special_cases():
    name = "minmax/per_channel/affine"
    mapping, default = build_qconfig_mapping(name, "x86"), tq.get_default_qconfig_mapping("x86")
    named = build_qconfig("minmax/per_channel/affine", "x86")
    assert repr(mapping.global_qconfig) == repr(named)
    assert set(mapping.object_type_qconfigs) == set(default.object_type_qconfigs)
    # Fixed-qparams ops keep their fixed observers; reshape keeps reusing its input's qparams.
    for kept in (torch.nn.Sigmoid, "reshape", torch.nn.PReLU):
        assert repr(mapping.object_type_qconfigs[kept]) == repr(default.object_type_qconfigs[kept])
    assert "FixedQParamsObserver" in repr(mapping.object_type_qconfigs[torch.nn.Sigmoid])
    # ConvTranspose on x86 keeps torch's per-tensor weights (no per-channel kernel) but takes the named activation.
    transpose = mapping.object_type_qconfigs[torch.nn.ConvTranspose2d]
    assert repr(transpose.weight) == repr(default.object_type_qconfigs[torch.nn.ConvTranspose2d].weight)
    assert "per_tensor" in repr(transpose.weight)
    assert repr(transpose.activation) == repr(named.activation)


def test_origin_says_where_a_cross_engine_qconfig_was_calibrated_and_converted():
    assert qconfig_origin("default", "x86", mapping=True) == "get_default_qconfig_mapping('x86')"
    assert qconfig_origin("default@qnnpack", "x86", qat=True) == \
        "get_default_qat_qconfig('qnnpack'), prepared and calibrated under qnnpack, converted and run under x86"
    assert qconfig_origin("minmax/per_tensor/affine", "fbgemm").startswith("named 'minmax/per_tensor/affine'")


@pytest.mark.parametrize("observer", OBSERVERS)
def test_prepare_fx_inserts_the_named_observer_class(observer):
    mapping = build_qconfig_mapping(f"{observer}/per_channel/symmetric", "x86")
    prepared = prepare_fx(TinySource().float_model(), mapping, (torch.rand(4, 3, SIDE, SIDE),))
    classes = {type(m).__name__ for name, m in prepared.named_modules() if "activation_post_process" in name}
    assert classes == {OBSERVER_CLASSES[observer]}


# --------------------------------------------------------------------------- a sweep, read back from converted models


def _quantized_weights(model):
    return [m.weight() for m in model.modules() if isinstance(m, (nnq.Conv2d, nnq.Linear))]


@pytest.mark.parametrize("mode", ["static_eager", "static_fx"])
@pytest.mark.parametrize("name", ["minmax/per_tensor/affine", "minmax/per_channel/symmetric",
                                  "histogram/per_tensor/symmetric/reduce_range", "moving_average/per_channel/affine"])
def test_the_converted_weights_carry_the_named_scheme(mode, name):
    parsed = parse_qconfig_name(name)
    prepared = apply_mode(mode, TinySource(), engine="x86", qconfig=name, **_inputs())
    weights = [m.weight() for m in prepared.model.modules() if hasattr(m, "weight") and callable(m.weight)]
    weights = [w for w in weights if w.is_quantized]
    assert len(weights) == 4  # conv1, conv2 (fused with their BN and ReLU), fc1, fc2
    for weight in weights:
        # A quantized tensor's own qscheme is affine either way; symmetry shows as zero points of 0.
        assert weight.qscheme() == (torch.per_channel_affine if parsed.per_channel else torch.per_tensor_affine)
        if parsed.per_channel:
            assert len(weight.q_per_channel_scales()) == weight.shape[0] > 1
            zero_points, ints = weight.q_per_channel_zero_points(), weight.int_repr().int().flatten(1)
        else:
            zero_points, ints = torch.tensor([weight.q_zero_point()]), weight.int_repr().int().flatten()[None]
        low, high = ints.min(1).values, ints.max(1).values
        if parsed.symmetric:  # zero point 0: only the larger side of each range reaches the end of int8
            assert bool((zero_points == 0).all())
            assert bool((torch.maximum(-low, high) >= 126).all())
        else:  # min and max map to both ends of int8
            assert bool(((low <= -127) & (high >= 126)).all())
    assert prepared.qconfig["name"] == name
    assert prepared.qconfig["activation"]["observer"] == OBSERVER_CLASSES[parsed.observer]
    assert prepared.qconfig["activation"]["reduce_range"] is parsed.reduce_range
    x = torch.rand(8, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    assert _centred_cosine(_run(prepared.model, x), _run(TinySource().float_model(), x)) > 0.9
    json.dumps(prepared.qconfig)


def _spy_engines(monkeypatch, module, names):
    """Wrap functions of `module` to record the quantized engine each was called under."""
    seen = {}
    for name in names:
        original = getattr(module, name)

        def spy(*args, _name=name, _original=original, **kwargs):
            seen[_name] = torch.backends.quantized.engine
            return _original(*args, **kwargs)
        monkeypatch.setattr(module, name, spy)
    return seen


def test_cross_engine_fx_calibrates_under_qnnpack_and_packs_under_the_case_engine(monkeypatch):
    import torch.ao.quantization.quantize_fx as quantize_fx

    seen = _spy_engines(monkeypatch, quantize_fx, ["prepare_fx", "convert_fx"])
    torch.backends.quantized.engine = "onednn"
    prepared = apply_mode("static_fx", TinySource(), engine="x86", qconfig="default@qnnpack", **_inputs())
    assert seen == {"prepare_fx": "qnnpack", "convert_fx": "x86"}
    assert torch.backends.quantized.engine == "x86"
    assert (prepared.qconfig["calibrated_for"], prepared.qconfig["engine"]) == ("qnnpack", "x86")
    assert prepared.qconfig["name"] == "default@qnnpack"
    # qnnpack's default: full-range activations, per-tensor symmetric weights (x86's own would be per-channel).
    assert prepared.qconfig["activation"]["reduce_range"] is False
    assert {w.qscheme() for w in _quantized_weights(prepared.model)} == {torch.per_tensor_affine}
    own = apply_mode("static_fx", TinySource(), engine="x86", **_inputs())
    assert {w.qscheme() for w in _quantized_weights(own.model)} == {torch.per_channel_affine}
    x = torch.rand(8, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(2))
    assert torch.isfinite(_run(prepared.model, x)).all()


def test_cross_engine_eager_converts_under_the_case_engine(monkeypatch):
    seen = _spy_engines(monkeypatch, tq, ["prepare", "convert"])
    prepared = apply_mode("static_eager", TinySource(), engine="qnnpack", qconfig="default@x86", **_inputs())
    assert seen == {"prepare": "x86", "convert": "qnnpack"}
    assert prepared.qconfig["origin"] == \
        "get_default_qconfig('x86'), prepared and calibrated under x86, converted and run under qnnpack"
    assert prepared.qconfig["activation"]["reduce_range"] is True


def test_an_engine_that_cannot_pack_a_named_scheme_is_not_applicable():
    with pytest.raises(NotApplicable, match="engine onednn cannot pack qconfig minmax/per_channel/affine: .*symmetric"):
        apply_mode("static_fx", TinySource(), engine="onednn", qconfig="minmax/per_channel/affine", **_inputs())


@pytest.mark.parametrize("mode,engine", [("fp32", None), ("dynamic", "x86"), ("prequantized", "x86"),
                                         ("pt2e", "x86")])
def test_modes_with_fixed_quantization_refuse_a_named_qconfig(mode, engine):
    with pytest.raises(NotApplicable, match="only the qconfig 'default'"):
        apply_mode(mode, TinySource(), engine=engine, qconfig="minmax/per_tensor/affine", **_inputs())


def test_a_malformed_name_is_a_config_error_before_anything_is_built():
    class Exploding(TinySource):
        def float_model(self):
            raise AssertionError("built before the name was checked")

    with pytest.raises(ConfigError, match="unknown observer"):
        apply_mode("static_fx", Exploding(), engine="x86", qconfig="minmux/per_tensor/affine", **_inputs())


def test_the_old_keywords_still_work_and_mean_default():
    prepared = apply_mode("static_fx", TinySource(), engine="qnnpack", calibration=_inputs()["calibration"],
                          example_input=_inputs()["example_input"])
    assert prepared.qconfig["name"] == "default"
    assert prepared.qconfig["origin"] == "get_default_qconfig_mapping('qnnpack')"
