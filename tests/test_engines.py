"""qbench.runner.registry.engines: probing engines by running quantized ops, and switching engines safely."""

import platform

import pytest
import torch

from qbench import records
from qbench.errors import NotApplicable, RegistryError
from qbench.runner.registry import engines
from qbench.runner.registry.engines import ENGINES, probe_engine, probe_engines, use_engine


@pytest.fixture(autouse=True)
def restore_engine():
    before = torch.backends.quantized.engine
    yield
    torch.backends.quantized.engine = before


def test_engine_names_match_the_records_contract():
    assert ENGINES == ("x86", "fbgemm", "onednn", "qnnpack") == records.ENGINES


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="facts of an x86 machine")
def test_every_engine_works_on_this_x86_machine():
    assert probe_engines() == {name: None for name in ENGINES}


def test_probe_of_an_unknown_engine_is_a_registry_error_listing_the_allowed_names():
    with pytest.raises(RegistryError, match="unknown engine 'mkldnn'.*x86, fbgemm, onednn, qnnpack"):
        probe_engine("mkldnn")
    with pytest.raises(RegistryError):
        probe_engines(["x86", "bogus"])


def test_probe_restores_the_engine_it_found():
    torch.backends.quantized.engine = "qnnpack"
    assert probe_engine("x86") is None
    assert torch.backends.quantized.engine == "qnnpack"


def test_a_failing_op_is_reported_in_one_line_and_the_engine_restored(monkeypatch):
    def prepack_fails():
        raise RuntimeError("unknown architecure\nmore detail on a second line")

    monkeypatch.setattr(engines, "_run_quantized_conv2d", prepack_fails)
    torch.backends.quantized.engine = "onednn"
    assert probe_engine("fbgemm") == "quantized conv2d: RuntimeError: unknown architecure"
    assert torch.backends.quantized.engine == "onednn"


def test_an_engine_torch_does_not_list_is_reported_without_running_anything(monkeypatch):
    x86_only = [4]  # the id of "x86" in c10/core/QEngine.h
    monkeypatch.setattr(torch._C, "_supported_qengines", lambda: x86_only)
    assert probe_engine("qnnpack") == "not in supported_engines"
    with pytest.raises(NotApplicable, match="qnnpack"):
        with use_engine("qnnpack"):
            pass


def test_use_engine_sets_then_restores_even_on_error():
    torch.backends.quantized.engine = "x86"
    with use_engine("qnnpack"):
        assert torch.backends.quantized.engine == "qnnpack"
    assert torch.backends.quantized.engine == "x86"
    with pytest.raises(ValueError), use_engine("onednn"):
        raise ValueError("boom")
    assert torch.backends.quantized.engine == "x86"


def test_use_engine_rejects_unknown_names():
    with pytest.raises(RegistryError, match="allowed"):
        with use_engine("none"):
            pass
