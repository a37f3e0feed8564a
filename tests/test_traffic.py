"""qbench.runner.probes.traffic: bytes moved and MACs per forward, checked against hand counts and torchvision's _ops."""

import functools
import pytest
import torch
import torch.ao.quantization as tq
from torch import nn
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from qbench.runner.probes.traffic import METHOD, PT2E_NOTE, count_traffic, measured_traffic_support, tensor_bytes
from qbench.records import CalibrationSpec
from qbench.runner.registry.data import calibration_batches, example_input, transform_for
from qbench.runner.registry.engines import use_engine
from qbench.runner.registry.models import open_model
from qbench.runner.registry.modes import apply_mode

FP32, INT8 = 4, 1
# Per-channel int8 weights carry a float32 scale and an int32 zero point per output channel.
QPARAMS_PER_CHANNEL = 8


def _seeded(build):
    torch.manual_seed(0)
    return build().eval()


class LinearNet(nn.Module):
    """linear(8 -> 4) on a [2, 8] input."""

    def __init__(self, stubs=False):
        super().__init__()
        self.quant, self.dequant = (tq.QuantStub(), tq.DeQuantStub()) if stubs else (nn.Identity(), nn.Identity())
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        return self.dequant(self.fc(self.quant(x)))


class ConvNet(nn.Module):
    """conv(3 -> 4, 3x3) on [1, 3, 6, 6] -> [1, 4, 4, 4], relu (in place or not), flatten."""

    def __init__(self, inplace=False):
        super().__init__()
        self.conv, self.relu = nn.Conv2d(3, 4, 3), nn.ReLU(inplace=inplace)

    def forward(self, x):
        return torch.flatten(self.relu(self.conv(x)), 1)


LINEAR_IN, CONV_IN = torch.rand(2, 8), torch.rand(1, 3, 6, 6)
CONV_OUT = 4 * 4 * 4
CONV_MACS = CONV_OUT * 3 * 3 * 3


def test_float_linear_bytes_and_macs_by_hand():
    counted = count_traffic(_seeded(LinearNet), LINEAR_IN)
    assert counted["bytes_weights"] == (4 * 8 + 4) * FP32
    assert counted["bytes_activations_read"] == 2 * 8 * FP32
    assert counted["bytes_activations_written"] == 2 * 4 * FP32
    assert counted["bytes_total"] == (36 + 16 + 8) * FP32
    assert counted["macs"] == 2 * 4 * 8
    assert counted["method"] == METHOD


def test_float_conv_relu_counts_each_operator_and_views_are_free():
    counted = count_traffic(_seeded(ConvNet), CONV_IN)
    conv = 3 * 6 * 6 * FP32 + (4 * 27 + 4) * FP32 + CONV_OUT * FP32
    relu = 2 * CONV_OUT * FP32
    assert counted["by_op"] == {"aten.conv2d": conv, "aten.relu": relu}
    assert counted["bytes_total"] == conv + relu
    assert counted["macs"] == CONV_MACS
    assert counted["ops"] == 2


def test_inplace_operator_reads_and_writes_its_operand():
    counted = count_traffic(_seeded(lambda: ConvNet(inplace=True)), CONV_IN)
    assert counted["by_op"]["aten.relu_"] == 2 * CONV_OUT * FP32


def test_activation_bytes_and_macs_scale_with_the_batch_but_weights_do_not():
    model = _seeded(ConvNet)
    one, four = count_traffic(model, CONV_IN), count_traffic(model, CONV_IN.repeat(4, 1, 1, 1))
    assert four["bytes_weights"] == one["bytes_weights"]
    assert four["bytes_activations_read"] == 4 * one["bytes_activations_read"]
    assert four["bytes_activations_written"] == 4 * one["bytes_activations_written"]
    assert four["macs"] == 4 * one["macs"]


def _eager_linear(engine):
    model = _seeded(lambda: LinearNet(stubs=True))
    model.qconfig = tq.get_default_qconfig(engine)
    with use_engine(engine):
        tq.prepare(model, inplace=True)
        model(LINEAR_IN)
        tq.convert(model, inplace=True)
    return model


def test_eager_quantized_linear_counts_int8_weights_from_packed_params():
    with use_engine("x86"):
        counted = count_traffic(_eager_linear("x86"), LINEAR_IN)
    weights = 4 * 8 * INT8 + 4 * QPARAMS_PER_CHANNEL + 4 * FP32
    assert counted["by_op"]["quantized.linear"] == 2 * 8 * INT8 + weights + 2 * 4 * INT8
    assert counted["by_op"]["aten.quantize_per_tensor"] == 2 * 8 * FP32 + 2 * 8 * INT8
    assert counted["by_op"]["aten.dequantize"] == 2 * 4 * INT8 + 2 * 4 * FP32
    assert counted["macs"] == 2 * 4 * 8


def test_fx_quantized_conv_relu_is_one_fused_quantized_operator():
    model = _seeded(ConvNet)
    with use_engine("x86"):
        prepared = prepare_fx(model, tq.get_default_qconfig_mapping("x86"), (CONV_IN,))
        prepared(CONV_IN)
        quantized = convert_fx(prepared)
        counted = count_traffic(quantized, CONV_IN)
    weights = 4 * 27 * INT8 + 4 * QPARAMS_PER_CHANNEL + 4 * FP32
    assert counted["by_op"]["quantized.conv2d_relu"] == 3 * 6 * 6 * INT8 + weights + CONV_OUT * INT8
    assert "aten.relu" not in counted["by_op"]
    # The int8 kernel writes channels-last, so flatten is a real copy here (a view in the float model).
    assert counted["by_op"]["aten.flatten"] == CONV_OUT * INT8 * 2
    assert counted["bytes_weights"] == weights + 4 + 8  # + the input's scale and zero point buffers
    assert counted["macs"] == CONV_MACS


def test_dynamic_quantized_linear_reads_float_activations_and_int8_weights():
    model = tq.quantize_dynamic(_seeded(LinearNet), {nn.Linear}, dtype=torch.qint8)
    with use_engine("x86"):
        counted = count_traffic(model, LINEAR_IN)
    per_tensor_qparams = 8
    assert counted["by_op"]["quantized.linear_dynamic"] == (2 * 8 * FP32 + 4 * 8 * INT8 + per_tensor_qparams
                                                           + 4 * FP32 + 2 * 4 * FP32)
    assert counted["macs"] == 2 * 4 * 8


def test_tensor_bytes_of_quantized_and_sub_byte_dtypes():
    values = torch.rand(10)
    assert tensor_bytes(values) == 40
    assert tensor_bytes(torch.quantize_per_tensor(values, 0.1, 0, torch.quint8)) == 10
    assert tensor_bytes(torch.quantize_per_tensor(values, 0.1, 0, torch.qint32)) == 40
    assert tensor_bytes(torch.quantize_per_tensor(values, 0.1, 0, torch.quint4x2)) == 5


@functools.cache
def _counted(name, mode, engine):
    """count_traffic of a torchvision model at batch 1 (each built once per test session)."""
    source = open_model(name)
    example = example_input(1, source.input_size)
    calibration = []
    if mode == "static_fx":
        spec = CalibrationSpec(batches=1, batch_size=1)
        calibration = calibration_batches(spec, source.input_size, transform_for(source))[0]
    model = apply_mode(mode, source, engine=engine, calibration=calibration, example_input=example).model
    return count_traffic(model, example)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_macs_match_torchvision_published_ops(name):
    """torchvision's _ops are GMACs despite the "GFLOPS" label: conv and linear multiply-adds only."""
    macs = _counted(name, "fp32", None)["macs"]
    from torchvision.models import get_model_weights  # after open_model, which imports torchvision safely

    published = get_model_weights(name).DEFAULT.meta["_ops"]
    assert macs / 1e9 == pytest.approx(published, rel=0.01)


@pytest.mark.filterwarnings("ignore:must run observer before calling calculate_qparams:UserWarning")
@pytest.mark.parametrize("name, mode, engine", [("resnet18", "static_fx", "x86"),
                                                ("mobilenet_v2", "prequantized", "qnnpack")])
def test_int8_model_has_its_parents_macs_and_a_quarter_of_its_weight_bytes(name, mode, engine):
    fp32, int8 = _counted(name, "fp32", None), _counted(name, mode, engine)
    assert int8["macs"] == fp32["macs"]
    assert int8["bytes_weights"] / fp32["bytes_weights"] == pytest.approx(0.25, rel=0.05)
    assert any(op.startswith("quantized.conv2d") for op in int8["by_op"])
    assert int8["bytes_total"] < fp32["bytes_total"] / 2


def test_no_memory_controller_pmu_is_reported_with_what_is_there(tmp_path):
    (tmp_path / "software").mkdir()
    support = measured_traffic_support(str(tmp_path), str(tmp_path / "paranoid"))
    assert support["available"] is False
    assert "no memory-controller PMU" in support["reason"] and "software" in support["reason"]


def test_memory_controller_pmu_needs_perf_and_permission(tmp_path, monkeypatch):
    (tmp_path / "uncore_imc_0").mkdir()
    paranoid = tmp_path / "paranoid"
    paranoid.write_text("2\n")
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert "no perf binary" in measured_traffic_support(str(tmp_path), str(paranoid))["reason"]
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/perf")
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    denied = measured_traffic_support(str(tmp_path), str(paranoid))
    assert denied["available"] is False and "perf_event_paranoid" in denied["reason"]
    paranoid.write_text("-1\n")
    allowed = measured_traffic_support(str(tmp_path), str(paranoid))
    assert allowed == {"available": True, "reason": "perf with uncore_imc_0", "pmus": ["uncore_imc_0"]}


class Pt2eReference(nn.Module):
    """What convert_pt2e makes of conv(3 -> 16) + relu + flatten + linear: float operators between
    quantize/dequantize pairs, int8 weights dequantized per channel (float32 scales, int64 zero points)."""

    def __init__(self):
        super().__init__()
        import torch.ao.quantization.fx._decomposed  # noqa: F401 - registers quantized_decomposed ops

        torch.manual_seed(0)
        conv_w, linear_w = torch.randn(16, 3, 3, 3), torch.randn(10, 16 * 4 * 4)
        for name, weight in (("conv", conv_w), ("linear", linear_w)):
            self.register_buffer(f"{name}_w", torch.randint(-128, 128, weight.shape, dtype=torch.int8))
            self.register_buffer(f"{name}_scale", torch.rand(weight.shape[0]))
            self.register_buffer(f"{name}_zp", torch.zeros(weight.shape[0], dtype=torch.int64))
        self.conv_b, self.linear_b = nn.Parameter(torch.zeros(16)), nn.Parameter(torch.zeros(10))

    def forward(self, x):
        ops = torch.ops.quantized_decomposed
        q = lambda t: ops.quantize_per_tensor.default(t, 0.02, 0, 0, 255, torch.uint8)  # noqa: E731
        dq = lambda t: ops.dequantize_per_tensor.default(t, 0.02, 0, 0, 255, torch.uint8)  # noqa: E731

        def weight(name):
            return ops.dequantize_per_channel.default(getattr(self, f"{name}_w"), getattr(self, f"{name}_scale"),
                                                      getattr(self, f"{name}_zp"), 0, -127, 127, torch.int8)

        y = torch.relu(torch.nn.functional.conv2d(dq(q(x)), weight("conv"), self.conv_b))
        y = torch.flatten(dq(q(y)), 1)
        return torch.nn.functional.linear(dq(q(y)), weight("linear"), self.linear_b)


def test_pt2e_reference_graph_is_counted_as_its_lowered_int8_kernels():
    x = torch.rand(1, 3, 6, 6)
    counted = count_traffic(Pt2eReference().eval(), x)
    qparams = 4 + 8  # a float32 scale and an int64 zero point per channel, as the graph stores them
    conv_weights, linear_weights = 16 * 27 * INT8 + 16 * qparams + 16 * FP32, 10 * 256 * INT8 + 10 * qparams + 40
    assert counted["bytes_weights"] == conv_weights + linear_weights
    # Kernels: quantize the input (fp32 -> uint8); conv+relu writing uint8; linear reading uint8, writing fp32.
    assert counted["by_op"] == {
        "quantized_decomposed.quantize_per_tensor": 108 * FP32 + 108 * INT8,
        "aten.conv2d": 108 * INT8 + conv_weights + 256 * INT8,
        "aten.linear": 256 * INT8 + linear_weights + 10 * FP32,
    }
    assert counted["macs"] == 256 * 27 + 10 * 256
    assert counted["method"].endswith(PT2E_NOTE)
