"""Shared torch helpers of the tests that build quantized models in-process (modes, qconfigs, QAT, PT2E): tiny
hand-written nets, fake ModelSources and seeded inputs. The torch half of tests/factories.py, kept apart so that
tests of the parent-side stages import no torch."""

import torch
import torch.ao.quantization as tq
from torch import nn

from qbench.errors import NotApplicable
from qbench.runner.registry.engines import use_engine
from tests.tiny_models import convnet

SIDE = 16


class TinyNet(nn.Module):
    """conv-bn-relu, conv-bn-relu, pool, linear-relu, linear. `hidden` sets how much the weights dominate."""

    def __init__(self, width=8, hidden=32, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1, self.relu1 = nn.BatchNorm2d(width), nn.ReLU()
        self.conv2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(2 * width), nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1, self.relu3, self.fc2 = nn.Linear(2 * width * 16, hidden), nn.ReLU(), nn.Linear(hidden, classes)

    def body(self, x):
        x = self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))
        return self.fc2(self.relu3(self.fc1(torch.flatten(self.pool(x), 1))))

    def forward(self, x):
        return self.body(x)


class QuantizableTinyNet(TinyNet):
    """TinyNet with stubs and fuse_model(is_qat), shaped like torchvision's Quantizable* models."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))

    def fuse_model(self, is_qat=None):
        groups = [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["fc1", "relu3"]]
        (tq.fuse_modules_qat if is_qat else tq.fuse_modules)(self, groups, inplace=True)


class BranchyNet(nn.Module):
    """Data-dependent control flow: not symbolically traceable."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * SIDE * SIDE, 4)

    def forward(self, x):
        x = torch.flatten(x, 1)
        return self.fc(x) if x.sum() > 0 else -self.fc(x)


def _randomize_batchnorm(model):
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.2, 0.2)
    return model


class TinySource:
    """A fake ModelSource. `switch_engine_to` imitates torchvision's quantize=True leaving another engine set."""

    quantizable = True
    input_size = SIDE

    def __init__(self, name="tiny", switch_engine_to=None, **sizes):
        self.name, self.switch_engine_to, self.sizes = name, switch_engine_to, sizes

    def _state(self):
        torch.manual_seed(0)
        return _randomize_batchnorm(TinyNet(**self.sizes)).state_dict()

    def float_model(self):
        model = TinyNet(**self.sizes)
        model.load_state_dict(self._state())
        return model.eval()

    def quantizable_model(self):
        model = QuantizableTinyNet(**self.sizes)
        model.load_state_dict(self._state())
        return model.eval()

    def prequantized_model(self, engine):
        weight = tq.default_weight_observer if engine == "qnnpack" else tq.default_per_channel_weight_observer
        with use_engine(engine):
            model = self.quantizable_model()
            model.qconfig = tq.QConfig(activation=tq.default_observer, weight=weight)
            model.fuse_model()
            tq.prepare(model, inplace=True)
            model(torch.rand(1, 3, SIDE, SIDE))
            tq.convert(model, inplace=True)
        torch.backends.quantized.engine = engine if self.switch_engine_to is None else self.switch_engine_to
        return model

    def weights_info(self):
        return {"kind": "random", "name": None, "file": None, "sha256": None}


class FloatOnlySource(TinySource):
    quantizable = False

    def __init__(self, net_class, **kwargs):
        super().__init__(**kwargs)
        self.net_class = net_class

    def float_model(self):
        torch.manual_seed(0)
        return self.net_class().eval()

    def quantizable_model(self):
        raise NotApplicable("no quantizable variant of this model")

    def prequantized_model(self, engine):
        raise NotApplicable("no pre-quantized weights for this model")


def _inputs(batches=2, batch_size=4):
    generator = torch.Generator().manual_seed(1)
    calibration = [torch.rand(batch_size, 3, SIDE, SIDE, generator=generator) for _ in range(batches)]
    return {"calibration": calibration, "example_input": calibration[0][:1]}


def _centred_cosine(a, b):
    """Cosine similarity of the input-dependent part of two batches of outputs. A random net's logits are mostly
    fc2's bias, so a plain cosine would be close to 1 even for a model that ignored its input."""
    a, b = a - a.mean(0), b - b.mean(0)
    return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


def _run(model, x):
    with torch.no_grad():
        return model(x)


class _TinySource:
    """A ModelSource stand-in for a custom 32 px model with random weights."""

    name, input_size, weights_kind = "tiny", 32, "random"


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return convnet().eval()
