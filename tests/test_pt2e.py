"""The pt2e mode: torchao's X86InductorQuantizer through torch.export, compiled by inductor with freezing."""

import json

import pytest
import torch
from torch import nn

from qbench.errors import ConfigError, NotApplicable
from qbench.runner.probes.size import measure_size
from qbench.runner.registry import pt2e
from qbench.runner.registry.modes import apply_mode
from tests import tiny_models
from tests.torch_factories import _centred_cosine, _run

SIDE = tiny_models.INPUT_SIZE
PHASES = ["build", "export", "calibrate", "convert", "compile"]


class ConvSource:
    """tests.tiny_models.convnet as a ModelSource (float only, like a user's own model)."""

    name, quantizable, input_size = "convnet", False, SIDE

    def float_model(self):
        torch.manual_seed(0)
        return tiny_models.convnet().eval()

    def weights_info(self):
        return {"kind": "random", "name": None, "file": None, "sha256": None}


class Exploding(ConvSource):
    def float_model(self):
        raise AssertionError("the model was built although the engine rules pt2e out")


def _inputs(side=SIDE, batches=2, batch_size=4):
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.rand(batch_size, 3, side, side, generator=generator) for _ in range(batches)]
    return {"calibration": calibration, "example_input": calibration[0][:1]}


@pytest.fixture(scope="module", autouse=True)
def fresh_compiler_state():
    """pt2e leaves inductor's freezing on for the process (as a worker needs); this module puts it back."""
    freezing, engine = torch._inductor.config.freezing, torch.backends.quantized.engine
    yield
    torch._inductor.config.freezing = freezing
    torch.backends.quantized.engine = engine
    torch._dynamo.reset()


@pytest.fixture(scope="module")
def tiny_pt2e():
    return apply_mode("pt2e", ConvSource(), engine="x86", **_inputs())


def test_pt2e_runs_every_phase_and_records_the_compile_time_apart(tiny_pt2e):
    assert list(tiny_pt2e.phases) == PHASES
    assert tiny_pt2e.phases["compile"] > 0
    notes = tiny_pt2e.notes
    assert (notes["export_path"], notes["export_failures"]) == ("strict", {})
    assert notes["compiler"] == "torch.compile(inductor, freezing=True)"
    assert notes["uncompiled_forward_s"] > 0 and notes["compiled_forward_s"] > 0
    assert notes["speedup_vs_uncompiled"] == pytest.approx(notes["uncompiled_forward_s"] / notes["compiled_forward_s"])
    assert (notes["calibration_batches"], notes["calibration_samples"]) == (2, 8)
    assert torch._inductor.config.freezing is True
    assert torch.backends.quantized.engine == "x86"


def test_the_compiled_model_tracks_fp32_at_any_batch_size(tiny_pt2e):
    reference = ConvSource().float_model()
    for batch in (1, 8):
        x = torch.rand(batch, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(batch))
        with torch.inference_mode():
            got = tiny_pt2e.model(x)
        expected = _run(reference, x)
        assert got.shape == expected.shape and torch.isfinite(got).all()
        assert not torch.equal(got, expected)  # quantized, not the float model
        if batch > 1:
            assert _centred_cosine(got, expected) > 0.9


def test_the_qconfig_is_the_quantizers_configuration_as_data(tiny_pt2e):
    qconfig = tiny_pt2e.qconfig
    assert (qconfig["quantizer"], qconfig["name"], qconfig["engine"]) == ("X86InductorQuantizer", "default", "x86")
    assert qconfig["activation"]["observer"] == "HistogramObserver"
    assert (qconfig["activation"]["dtype"], qconfig["activation"]["quant_max"]) == ("torch.uint8", 255)
    assert qconfig["weight"]["qscheme"] == "torch.per_channel_symmetric" and qconfig["weight"]["ch_axis"] == 0
    json.dumps({"qconfig": qconfig, "notes": tiny_pt2e.notes}, allow_nan=False)


def test_the_converted_graph_holds_int8_weights_before_compiling():
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    quantizer, _ = pt2e.pt2e_quantizer("x86")
    prepared, path, _ = pt2e.export_and_prepare(ConvSource().float_model(), quantizer, _inputs()["example_input"])
    prepared(_inputs()["calibration"][0])
    converted = convert_pt2e(prepared)
    targets = {str(node.target) for node in converted.graph.nodes if node.op == "call_function"}
    assert any("quantize_per_tensor" in t for t in targets) and any("dequantize_per_channel" in t for t in targets)
    assert measure_size(converted)["bytes_by_dtype"].get("torch.int8", 0) > 0
    assert path == "strict"


@pytest.mark.parametrize("engine,reason", [
    ("fbgemm", "no pt2e quantizer lowers to FBGEMM"),
    ("onednn", "records under engine x86"),
])
def test_engines_without_a_pt2e_path_are_not_applicable_before_building(engine, reason):
    with pytest.raises(NotApplicable, match=reason):
        apply_mode("pt2e", Exploding(), engine=engine, **_inputs())


def test_qnnpack_needs_an_importable_xnnpack_quantizer(monkeypatch):
    monkeypatch.setattr(pt2e, "XNNPACK_MODULES", ("qbench_no_such.xnnpack_quantizer",))
    with pytest.raises(NotApplicable, match="needs XNNPACKQuantizer, which is not importable here .*qbench_no_such"):
        apply_mode("pt2e", Exploding(), engine="qnnpack", **_inputs())


def test_pt2e_without_calibration_is_a_config_error():
    with pytest.raises(ConfigError, match="pt2e needs at least one calibration batch"):
        apply_mode("pt2e", ConvSource(), engine="x86", calibration=[], example_input=_inputs()["example_input"])


def _failing_export(fail_strict: bool, fail_non_strict: bool):
    real = torch.export.export

    def export(model, args, *, strict, **kwargs):
        if (strict and fail_strict) or (not strict and fail_non_strict):
            raise RuntimeError(f"{'strict' if strict else 'non-strict'} broke\nsecond line")
        return real(model, args, strict=strict, **kwargs)
    return export


def test_a_failing_strict_export_falls_back_to_non_strict_and_records_why(monkeypatch):
    monkeypatch.setattr(torch.export, "export", _failing_export(True, False))
    quantizer, _ = pt2e.pt2e_quantizer("x86")
    _, path, failures = pt2e.export_and_prepare(ConvSource().float_model(), quantizer, _inputs()["example_input"])
    assert (path, failures) == ("non-strict", {"strict": "RuntimeError: strict broke"})


def test_a_model_no_export_path_handles_is_not_applicable_with_both_reasons(monkeypatch):
    monkeypatch.setattr(torch.export, "export", _failing_export(True, True))
    with pytest.raises(NotApplicable, match="pt2e: no export path works: strict export: RuntimeError: strict broke; "
                                            "non-strict export: RuntimeError: non-strict broke$"):
        apply_mode("pt2e", ConvSource(), engine="x86", **_inputs())


class Untraceable(nn.Module):
    def forward(self, x):
        return x.mean() if x.sum().item() > 0 else x.max()


def test_a_really_unexportable_model_is_not_applicable():
    class Source(ConvSource):
        def float_model(self):
            return Untraceable()

    with pytest.raises(NotApplicable, match="pt2e: no export path works: strict export: .*non-strict export: "):
        apply_mode("pt2e", Source(), engine="x86", **_inputs())


# --------------------------------------------------------------------------- resnet18: the known quantizer bug


@pytest.fixture(scope="module")
def resnet18():
    from qbench.runner.registry.models import open_model

    return open_model("resnet18", "random")


@pytest.mark.slow
def test_resnet18_non_strict_export_hits_the_known_quantizer_bug(resnet18):
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    quantizer, _ = pt2e.pt2e_quantizer("x86")
    exported = torch.export.export(resnet18.float_model(), (torch.rand(2, 3, 64, 64),), strict=False)
    with pytest.raises(ValueError, match="Input partition has more than one output node"):
        prepare_pt2e(exported.module(), quantizer)


@pytest.mark.slow
def test_resnet18_quantizes_through_strict_export_and_compiles(resnet18):
    prepared = apply_mode("pt2e", resnet18, engine="x86", **_inputs(side=64, batches=1, batch_size=2))
    assert prepared.notes["export_path"] == "strict" and prepared.notes["export_failures"] == {}
    assert list(prepared.phases) == PHASES and prepared.phases["compile"] > 0
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        got = prepared.model(x)
    assert got.shape == (2, 1000) and torch.isfinite(got).all()


def test_on_aarch64_onednn_takes_torchaos_arm_inductor_quantizer(monkeypatch):
    import platform

    from qbench.runner.registry.pt2e import pt2e_quantizer

    with pytest.raises(NotApplicable, match="onednn would measure the same kernels twice"):
        pt2e_quantizer("onednn")
    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    quantizer, description = pt2e_quantizer("onednn")
    assert type(quantizer).__name__ == "ArmInductorQuantizer"
    assert description["quantizer"] == "ArmInductorQuantizer"
    assert description["activation"]["dtype"] == "torch.int8"  # signed activations, unlike x86's uint8
    assert description["weight"]["qscheme"] == "torch.per_tensor_symmetric"


def test_the_catalog_asks_pt2e_for_a_quantizer_under_each_working_engine_and_keeps_the_workers_reason():
    from qbench.runner.catalog import probe_modes

    found = probe_modes(["fp32", "pt2e"], ["x86", "fbgemm", "qnnpack"])
    assert set(found) == {"pt2e"}
    assert found["pt2e"]["x86"] is None
    assert found["pt2e"]["fbgemm"].startswith("no pt2e quantizer lowers to FBGEMM")
    try:  # qnnpack's XNNPACKQuantizer is there only with executorch
        pt2e.pt2e_quantizer("qnnpack")
    except NotApplicable as exc:
        assert found["pt2e"]["qnnpack"] == str(exc)
    else:
        assert found["pt2e"]["qnnpack"] is None
    assert probe_modes(["fp32", "static_fx"], ["x86"]) == {}
