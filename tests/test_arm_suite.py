"""The ARM suite and an aarch64 runner, planned on this x86 machine: a catalog whose engine probe failed the way
aarch64 wheels fail (x86 and fbgemm are listed by torch but cannot prepack), and a machine fingerprint parsed from
recorded aarch64 CPU descriptions. Nothing here may assume the machine it runs on is x86."""

import dataclasses
from pathlib import Path

import pytest

from qbench.launch import machine as qm
from qbench.plan.expand import Catalog, expand
from qbench.records import ENGINES
from qbench.runner.catalog import probe
from qbench.suite.load import load_suite

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "cpu"
GIB = 2**30
# What qbench.runner.registry.engines.probe_engine reports on an aarch64 wheel for the engines it cannot run.
ARM_FAILURE = "quantized linear: RuntimeError: unknown architecure"
ARM_ENGINES = {"qnnpack": None, "onednn": None, "x86": ARM_FAILURE, "fbgemm": ARM_FAILURE}
ARM_MODELS = {"mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "shufflenet_v2_x1_0", "mnasnet1_0",
              "squeezenet1_1", "efficientnet_b0", "resnet18", "resnet50"}


@pytest.fixture(scope="module")
def models() -> dict:
    """The live registry's models (names, quantizable, tags) as the catalog worker reports them."""
    return probe({"engines": ["qnnpack"]})["catalog"]["models"]


@pytest.fixture(scope="module")
def arm_catalog(models) -> Catalog:
    return Catalog(models=models, engines=ARM_ENGINES, environment={"torch": "2.13.0"})


def fixture_machine(name: str) -> dict:
    text = (FIXTURES / name).read_text()
    parsed = qm.parse_cpuinfo(text) if ".cpuinfo." in name else qm.parse_lscpu(text)
    fp = qm.fingerprint(parsed, 64 * GIB)
    return {**fp, "machine_id": qm.machine_id(fp)}


@pytest.fixture(scope="module", params=["aarch64-neoverse-v2-grace.lscpu.txt", "aarch64-kunpeng920.lscpu.txt",
                                        "aarch64-cavium-thunderx.cpuinfo.txt"])
def arm_machine(request) -> dict:
    return fixture_machine(request.param)


def plan(suite: str, catalog: Catalog, machine: dict, runners=None):
    spec = load_suite(str(ROOT / "suites" / f"{suite}.toml"))
    if runners:
        spec = dataclasses.replace(spec, matrices=tuple(dataclasses.replace(m, runners=runners)
                                                        for m in spec.matrices))
    return expand(spec, catalog, machine)


def by_engine(planned) -> dict:
    groups = {engine: [] for engine in (None, *ENGINES)}
    for item in planned:
        groups[item.case.engine].append(item)
    return groups


def test_arm_fixtures_describe_aarch64_machines(arm_machine):
    assert arm_machine["arch"] == "aarch64"
    assert arm_machine["machine_id"].startswith("aarch64-")
    assert "asimd" in arm_machine["isa"]
    assert not {"avx2", "avx512f", "sse4_2"} & set(arm_machine["isa"])


def test_int8_features_of_the_arm_fixtures_tell_the_runners_apart():
    grace = fixture_machine("aarch64-neoverse-v2-grace.lscpu.txt")["isa"]
    thunderx = fixture_machine("aarch64-cavium-thunderx.cpuinfo.txt")["isa"]
    assert {"asimddp", "i8mm", "sve", "sve2"} <= set(grace)
    assert thunderx == ["asimd"]


def test_arm_suite_runs_qnnpack_and_skips_x86_engines_with_the_probe_reason(arm_catalog, arm_machine):
    planned = plan("arm", arm_catalog, arm_machine)
    groups = by_engine(planned)
    assert groups["qnnpack"] and all(p.skip_reason is None for p in groups["qnnpack"])
    assert {p.case.model for p in groups["qnnpack"]} >= ARM_MODELS
    assert {p.case.mode for p in groups["qnnpack"]} >= {"dynamic", "static_fx", "static_eager", "prequantized",
                                                        "qat", "pt2e"}
    assert groups[None] and all(p.skip_reason is None for p in groups[None] if p.case.mode == "fp32")
    for item in groups[None]:  # the bf16 fast-math baseline runs only where the ISA has bf16
        if item.case.mode == "fp32_bf16":
            assert (item.skip_reason is None) == ("bf16" in arm_machine["isa"]), item.skip_reason
    for engine in ("x86", "fbgemm"):
        assert groups[engine], f"arm.toml should record why {engine} does not apply"
        for item in groups[engine]:
            assert item.skip_reason == f"engine {engine} does not work here: {ARM_FAILURE}"
    assert all(p.skip_reason is None for p in groups["onednn"])


def test_arm_suite_cases_are_unique_and_every_quantized_case_has_its_fp32_parent(arm_catalog, arm_machine):
    planned = plan("arm", arm_catalog, arm_machine)
    ids = [p.case.case_id for p in planned]
    assert len(ids) == len(set(ids))
    parents = {p.case.model for p in planned if p.case.mode == "fp32"}
    assert {p.case.model for p in planned} == parents


def test_smoke_suite_on_arm_keeps_qnnpack_and_skips_x86(arm_catalog, arm_machine):
    groups = by_engine(plan("smoke", arm_catalog, arm_machine))
    assert groups["qnnpack"] and all(p.skip_reason is None for p in groups["qnnpack"])
    assert groups["x86"] and all(p.skip_reason == f"engine x86 does not work here: {ARM_FAILURE}"
                                 for p in groups["x86"])
    assert [p.case.case_id.replace("/qnnpack/", "/x86/") for p in groups["qnnpack"]] == \
        [p.case.case_id for p in groups["x86"]]


def test_avx2_runner_is_unavailable_on_arm_with_its_reason(arm_catalog, arm_machine):
    planned = plan("arm", arm_catalog, arm_machine, runners=("avx2",))
    assert planned and {p.case.runner for p in planned} == {"avx2"}
    assert {p.skip_reason for p in planned} == {"runner avx2 needs an x86_64 machine, this one is aarch64"}


def test_avx2_runner_plans_above_avx2_is_the_native_machine_on_avx2_and_skips_without_it(models):
    x86_catalog = Catalog(models=models, engines=dict.fromkeys(ENGINES), environment={})
    zen5 = fixture_machine("x86_64-epyc-zen5-avx512.lscpu.txt")
    planned = plan("arm", x86_catalog, zen5, runners=("avx2",))
    assert planned and all(p.skip_reason is None for p in planned if p.case.mode != "fp32_bf16")
    assert {p.case.case_id.rsplit("@", 1)[1] for p in planned} == {"avx2"}
    broadwell = fixture_machine("x86_64-xeon-broadwell-avx2.cpuinfo.txt")
    assert {p.skip_reason for p in plan("arm", x86_catalog, broadwell, runners=("avx2",))} == {
        "this machine has none of the features runner avx2 caps (avx512f, avx512_vnni, avx512_bf16, avx_vnni, "
        "amx_tile, amx_int8, amx_bf16): it is the native machine, measured once under runner native"}
    old = {**broadwell, "isa": [f for f in broadwell["isa"] if f not in ("avx2", "fma")]}
    assert {p.skip_reason for p in plan("arm", x86_catalog, old, runners=("avx2",))} == {
        "runner avx2 needs avx2, which this machine lacks"}


def test_the_same_arm_suite_plans_every_engine_on_an_x86_runner(models):
    zen5 = fixture_machine("x86_64-epyc-zen5-avx512.lscpu.txt")
    groups = by_engine(plan("arm", Catalog(models=models, engines=dict.fromkeys(ENGINES), environment={}), zen5))
    for engine in ("qnnpack", "x86", "fbgemm", "onednn"):
        assert groups[engine] and all(p.skip_reason is None for p in groups[engine])
