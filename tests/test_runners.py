"""Runner profiles: the AVX2 cap really applies in workers and says so, a cap that did not apply fails the case,
machines that cannot emulate a profile skip it, and kernel provenance is read from oneDNN's own words."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qbench.plan.expand import Catalog, expand
from qbench.errors import ConfigError
from qbench.launch.machine import fingerprint, parse_lscpu
from qbench.runner.probes.kernels import _parse
from qbench.runner.worker import verify_runner
from qbench.suite.profiles import profile, unavailable_reason
from qbench.suite.load import parse_suite
from tests.factories import make_case

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "cpu"


def machine_from(name: str) -> dict:
    return fingerprint(parse_lscpu((FIXTURES / name).read_text()), 16 * 2**30)


def test_runner_is_part_of_the_identity():
    native, capped = make_case(), make_case(runner="avx2")
    assert capped.case_id == native.case_id + "@avx2"
    assert capped.case_version != native.case_version


def test_unknown_runner_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown runner 'avx3'; allowed: native, avx2"):
        profile("avx3")
    with pytest.raises(ConfigError, match="unknown runner 'avx3'"):
        parse_suite({"suite": {"name": "t"}, "matrix": [{"models": ["m"], "modes": ["fp32"], "runners": ["avx3"]}]})


def test_arm_machines_skip_the_avx2_profile_but_run_native():
    grace = machine_from("aarch64-neoverse-v2-grace.lscpu.txt")
    assert unavailable_reason("avx2", grace) == "runner avx2 needs an x86_64 machine, this one is aarch64"
    assert unavailable_reason("native", grace) is None
    zen5 = machine_from("x86_64-epyc-zen5-avx512.lscpu.txt")
    assert unavailable_reason("avx2", zen5) is None
    spec = parse_suite({"suite": {"name": "t"}, "matrix": [{"models": ["m"], "modes": ["fp32"],
                                                            "runners": ["native", "avx2"]}]})
    catalog = Catalog({"m": {"quantizable": False, "input_size": 8, "tags": []}}, {}, {})
    reasons = {p.case.case_id: p.skip_reason for p in expand(spec, catalog, grace)}
    assert reasons == {"m/fp32/-/b1/t1/random": None,
                       "m/fp32/-/b1/t1/random@avx2": "runner avx2 needs an x86_64 machine, this one is aarch64"}


def test_a_cap_that_did_not_apply_fails_the_case():
    native = {"cpu_capability": "AVX512", "onednn_isa": "Intel AVX-512 with Intel DL Boost"}
    with pytest.raises(RuntimeError, match="torch dispatches to AVX512, not AVX2; the ISA cap did not take effect"):
        verify_runner("avx2", native)
    with pytest.raises(RuntimeError, match="oneDNN runs at Intel AVX-512"):
        verify_runner("avx2", {**native, "cpu_capability": "AVX2"})
    verify_runner("avx2", {"cpu_capability": "AVX2", "onednn_isa": "Intel AVX2"})
    verify_runner("native", native)


def test_kernel_provenance_is_parsed_from_onednn_verbose():
    text = "\n".join([
        "onednn_verbose,v1,info,cpu,isa:Intel AVX2",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,jit:avx2,forward_training,src:f32::blocked:abcd::f0,x",
        "onednn_verbose,v1,primitive,exec,cpu,reorder,jit:uni,undef,src:s8:p:blocked:AcdB16a4b::f8",
        "onednn_verbose,v1,primitive,exec,cpu,convolution,jit_uni_int8:avx2,forward_inference,src:u8::blocked:acdb",
        "unrelated output"])
    assert _parse(text) == ("Intel AVX2", {"fp32": "jit:avx2", "int8": "jit_uni_int8:avx2"})


def test_avx2_profile_caps_a_real_worker(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "t"\n[[matrix]]\nmodels = ["tests.tiny_models:convnet"]\n'
                     'modes = ["fp32", "static_fx"]\nengines = ["x86"]\nrunners = ["native", "avx2"]\n'
                     '[measure]\nwarmup_rounds = 0\nmin_time_s = 0.0\nmin_rounds = 2\n')
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "qbench", "run", "--suite", str(suite), "--results",
                           str(tmp_path / "r"), "--no-progress"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    (path,) = (tmp_path / "r").rglob("*.jsonl")
    records = {c["case_id"]: c for c in map(json.loads, path.read_text().splitlines()) if c["kind"] == "case"}
    capped = records["tests.tiny_models:convnet/static_fx/x86/b1/t1/random@avx2"]
    native = records["tests.tiny_models:convnet/static_fx/x86/b1/t1/random"]
    assert native["status"] == "ok"
    reason = unavailable_reason("avx2", native["machine"])
    if reason:  # an ARM runner: the profile is skipped with its reason, never run natively
        assert capped["status"] == "skipped" and capped["reason"] == reason
        return
    assert capped["status"] == "ok"
    assert capped["details"]["kernels"]["cpu_capability"] == "AVX2"
    assert capped["details"]["kernels"]["onednn_isa"] == "Intel AVX2"
    assert capped["environment"]["variables"]["FBGEMM_ENABLE_INSTRUCTIONS"] == "AVX2"
    if "avx512f" in native["machine"]["isa"]:
        assert native["details"]["kernels"]["cpu_capability"] != "AVX2"
    assert "FBGEMM_ENABLE_INSTRUCTIONS" not in native["environment"]["variables"]
    real_host = real_avx2_host_kernels()
    assert real_host[("static_fx", "x86")] == {"fbgemm"}  # what GitHub's AVX2-only EPYC runners run
    assert capped["details"]["kernels"]["int8_conv"] == "fbgemm"
    substituted = capped["details"]["kernels"].get("engine_substitution")
    if "avx512_vnni" in native["machine"]["isa"]:  # torch's x86 engine picks oneDNN here from CPUID
        assert native["details"]["kernels"]["int8_conv"].startswith("onednn:")
        assert substituted["kernels_of"] == "fbgemm" and substituted["instead_of"].startswith("onednn:")
    else:
        assert substituted is None


REAL_AVX2_HOST = ROOT / "tests" / "fixtures" / "records" / "avx2-amd-epyc-zen3"  # copied from shared/fixtures


def real_avx2_host_kernels() -> dict:
    """(mode, engine) → the libraries that ran int8 convolutions in the run files of a real AVX2-only host."""
    found = {}
    for path in REAL_AVX2_HOST.rglob("*.jsonl"):
        for line in map(json.loads, path.read_text().splitlines()):
            if line.get("kind") == "case" and line["case"].get("engine"):
                kernels = (line.get("details") or {}).get("kernels") or {}
                found.setdefault((line["case"]["mode"], line["case"]["engine"]), set()).add(kernels.get("int8_conv"))
    return found


def test_the_avx2_profile_expects_what_a_real_avx2_host_ran():
    from qbench.suite.profiles import EXPECTED_INT8_CONV

    real = real_avx2_host_kernels()
    assert real, f"no run files under {REAL_AVX2_HOST}"
    for (mode, engine), libraries in real.items():
        if engine in EXPECTED_INT8_CONV["avx2"]:
            assert libraries == {EXPECTED_INT8_CONV["avx2"][engine]}, (mode, engine)
    with pytest.raises(RuntimeError, match="cannot reproduce a real AVX2 host's x86-engine path here: its int8 "
                                           "convolutions ran onednn:jit_uni_int8:avx2, a real host runs fbgemm"):
        verify_runner("avx2", {"cpu_capability": "AVX2", "onednn_isa": "Intel AVX2",
                               "int8_conv": "onednn:jit_uni_int8:avx2"}, "x86")


def test_on_an_avx2_only_host_the_avx2_profile_is_the_native_machine():
    import json as _json

    real = _json.loads((REAL_AVX2_HOST / "x86_64-amd-epyc-2c-24g-19526b" / "machine.json").read_text())
    assert unavailable_reason("avx2", real) == (
        "this machine has none of the features runner avx2 caps (avx512f, avx512_vnni, avx512_bf16, avx_vnni, "
        "amx_tile, amx_int8, amx_bf16): it is the native machine, measured once under runner native")
    assert unavailable_reason("avx2", machine_from("x86_64-epyc-zen5-avx512.lscpu.txt")) is None
