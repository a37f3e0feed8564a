"""qbench.runner.probes.size: bytes per dtype with packed weights unpacked, parameter and module counts."""

import io
import json

import pytest
import torch
import torch.ao.quantization as tq
from torch import nn
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from qbench.runner.probes.size import classify_module, measure_size
from qbench.runner.registry.engines import use_engine

pytestmark = [pytest.mark.filterwarnings("ignore:Please use quant_min and quant_max:UserWarning"),
              pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")]


class ConvLinear(nn.Module):
    """conv(3->8, 3x3) + relu, then linear(8*6*6 -> 16): 216 + 4608 weights, 8 + 16 biases."""

    def __init__(self, stubs=False):
        super().__init__()
        self.quant, self.dequant = (tq.QuantStub(), tq.DeQuantStub()) if stubs else (nn.Identity(), nn.Identity())
        self.conv, self.relu, self.fc = nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Linear(8 * 6 * 6, 16)

    def forward(self, x):
        return self.dequant(self.fc(torch.flatten(self.relu(self.conv(self.quant(x))), 1)))


WEIGHTS, BIASES, OUT_CHANNELS = 216 + 4608, 8 + 16, 8 + 16


def _example():
    return torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def _eager_static(engine):
    torch.manual_seed(0)
    model = ConvLinear(stubs=True).eval()
    tq.fuse_modules(model, [["conv", "relu"]], inplace=True)
    model.qconfig = tq.get_default_qconfig(engine)
    with use_engine(engine):
        tq.prepare(model, inplace=True)
        model(_example())
        return tq.convert(model, inplace=True)


def _fx_static(engine):
    torch.manual_seed(0)
    with use_engine(engine):
        model = prepare_fx(ConvLinear().eval(), tq.get_default_qconfig_mapping(engine), (_example(),))
        model(_example())
        return convert_fx(model)


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.gru, self.head = nn.LSTM(4, 8, num_layers=2), nn.GRU(8, 8), nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.gru(self.lstm(x)[0])[0])


def _serialized(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return len(buffer.getvalue())


def test_float_model_sizes_every_tensor_of_its_state_dict():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    size = measure_size(model)
    float_elements = 216 + 8 + 4 * 8 + 16 + 2  # conv, BN weight/bias/mean/var, linear
    assert size["bytes_by_dtype"] == {"torch.float32": 4 * float_elements, "torch.int64": 8}
    assert size["parameters"] == sum(p.numel() for p in model.parameters()) == float_elements - 16
    assert (size["modules_quantized"], size["modules_float"]) == (0, 2)
    assert size["modules_by_type"] == {"Conv2d": 1, "Linear": 1}
    assert size["state_dict_bytes"] == _serialized(model.state_dict())
    assert size["unsized_entries"] == []


@pytest.mark.parametrize("build", [_eager_static, _fx_static], ids=["eager", "fx"])
def test_static_x86_weights_count_as_qint8_with_their_per_channel_qparams(build):
    size = measure_size(build("x86"))
    assert size["bytes_by_dtype"]["torch.qint8"] == WEIGHTS
    assert size["bytes_by_dtype"]["torch.float64"] == 8 * OUT_CHANNELS  # per-channel scales
    assert size["bytes_by_dtype"]["torch.float32"] >= 4 * BIASES
    assert size["parameters"] == WEIGHTS + BIASES
    assert (size["modules_quantized"], size["modules_float"]) == (2, 0)
    assert size["modules_by_type"] == {"intrinsic.quantized.ConvReLU2d": 1, "quantized.Linear": 1}
    json.dumps(size)


def test_qnnpack_per_tensor_weights_carry_no_per_channel_qparams():
    size = measure_size(_eager_static("qnnpack"))
    assert size["bytes_by_dtype"]["torch.qint8"] == WEIGHTS
    assert "torch.float64" not in size["bytes_by_dtype"]


def test_dynamic_lstm_gru_and_linear_weights_are_unpacked_from_their_packed_objects():
    torch.manual_seed(0)
    model = Recurrent().eval()
    weights = sum(p.numel() for name, p in model.named_parameters() if "weight" in name)
    parameters = sum(p.numel() for p in model.parameters())
    quantized = tq.quantize_dynamic(model, {nn.Linear, nn.LSTM, nn.GRU}, dtype=torch.qint8)
    size = measure_size(quantized)
    assert size["unsized_entries"] == []
    assert size["bytes_by_dtype"]["torch.qint8"] == weights
    assert size["parameters"] == parameters
    assert size["modules_by_type"] == {"quantized.dynamic.GRU": 1, "quantized.dynamic.LSTM": 1,
                                       "quantized.dynamic.Linear": 1}
    assert (size["modules_quantized"], size["modules_float"]) == (3, 0)
    assert size["state_dict_bytes"] == _serialized(quantized.state_dict())


def test_int8_model_is_about_a_quarter_of_float_when_weights_dominate():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512)).eval()
    quantized = tq.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    ratio = measure_size(model)["state_dict_bytes"] / measure_size(quantized)["state_dict_bytes"]
    assert 3.8 < ratio < 4.0  # 4 bytes -> 1 byte per weight, plus float biases and pickle framing


def test_a_partly_quantized_model_counts_both_kinds():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)).eval()
    size = measure_size(tq.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8))
    assert (size["modules_quantized"], size["modules_float"]) == (1, 1)
    assert size["modules_by_type"] == {"Conv2d": 1, "quantized.dynamic.Linear": 1}


def test_tied_weights_are_counted_once():
    first, second = nn.Linear(8, 8, bias=False), nn.Linear(8, 8, bias=False)
    second.weight = first.weight
    size = measure_size(nn.Sequential(first, second))
    assert size["bytes_by_dtype"] == {"torch.float32": 4 * 64}
    assert size["parameters"] == 64


def test_packed_objects_that_cannot_be_opened_are_listed_not_fatal():
    class Opaque(nn.Module):
        def __init__(self):
            super().__init__()
            self.scripted = torch.jit.script(nn.Linear(2, 2))._c  # a ScriptObject without __getstate__

        def _save_to_state_dict(self, destination, prefix, keep_vars):
            destination[prefix + "opaque"] = self.scripted

    size = measure_size(nn.Sequential(Opaque(), nn.Linear(2, 2)))
    assert size["unsized_entries"] == ["0.opaque"]
    assert size["state_dict_bytes"] is None  # torch.save cannot serialize it either
    assert size["bytes_by_dtype"] == {"torch.float32": 4 * 6}


def test_compute_module_classes():
    assert classify_module(nn.Conv2d(1, 1, 1)) == "float"
    assert classify_module(nn.LSTM(2, 2)) == "float"
    assert classify_module(nn.Embedding(4, 2)) == "float"
    assert classify_module(nn.ReLU()) is None
    assert classify_module(nn.BatchNorm2d(2)) is None
    assert classify_module(torch.ao.nn.quantized.Linear(2, 2)) == "quantized"
    assert classify_module(torch.ao.nn.quantized.dynamic.LSTM(2, 2)) == "quantized"
    assert classify_module(torch.ao.nn.quantized.Embedding(4, 2)) == "quantized"
    assert classify_module(torch.ao.nn.quantized.Quantize(1.0, 0, torch.quint8)) is None
