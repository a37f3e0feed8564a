"""Mode fp32_bf16: the fp32 baseline with bf16 fast math that ARM (Graviton) and AMX users deploy instead of int8.
Planned only where the ISA has bf16, run with oneDNN's fp32 math allowed to use bf16 (and recorded so), and the
baseline int8 is judged against in the claims table."""

import json
import os
import subprocess
import sys
from pathlib import Path

from qbench.compare.claims import claim_rows
from qbench.launch.machine import fingerprint, parse_lscpu
from qbench.plan.expand import Catalog, expand, mode_unavailable_reason
from qbench.records import BF16_ISA
from qbench.suite.load import parse_suite
from tests.factories import make_case, make_record

ROOT = Path(__file__).resolve().parent.parent
CPU = ROOT / "tests" / "fixtures" / "cpu"
AVX2_HOST = ROOT / "tests" / "fixtures" / "records" / "avx2-amd-epyc-zen3" / "x86_64-amd-epyc-2c-24g-19526b"


def machine_from(name: str) -> dict:
    return fingerprint(parse_lscpu((CPU / name).read_text()), 16 * 2**30)


def test_fp32_bf16_is_planned_only_where_the_isa_has_bf16():
    avx2 = json.loads((AVX2_HOST / "machine.json").read_text())
    grace, zen5 = machine_from("aarch64-neoverse-v2-grace.lscpu.txt"), machine_from("x86_64-epyc-zen5-avx512.lscpu.txt")
    assert "bf16" in grace["isa"] and "avx512_bf16" in zen5["isa"]
    assert mode_unavailable_reason("fp32_bf16", grace) is None
    assert mode_unavailable_reason("fp32_bf16", zen5) is None
    assert mode_unavailable_reason("fp32_bf16", avx2) == (
        "fp32_bf16 needs bf16 instructions (avx512_bf16 or amx_bf16), which this machine lacks: oneDNN would "
        "compute in fp32")
    assert mode_unavailable_reason("fp32", avx2) is None
    spec = parse_suite({"suite": {"name": "t"}, "matrix": [{"models": ["m"], "modes": ["fp32", "fp32_bf16"]}]})
    catalog = Catalog({"m": {"quantizable": False, "input_size": 8, "tags": []}}, {}, {})
    planned = {p.case.case_id: p.skip_reason for p in expand(spec, catalog, avx2)}
    assert planned["m/fp32/-/b1/t1/random"] is None
    assert planned["m/fp32_bf16/-/b1/t1/random"].startswith("fp32_bf16 needs bf16 instructions")


def test_a_real_worker_runs_fp32_with_bf16_fast_math_or_skips_it_with_the_reason(tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('[suite]\nname = "t"\n[[matrix]]\nmodels = ["tests.tiny_models:convnet"]\n'
                     'modes = ["fp32", "fp32_bf16"]\n[measure]\nwarmup_rounds = 0\nmin_time_s = 0.0\nmin_rounds = 2\n'
                     '[accuracy]\nimages = 4\n')
    done = subprocess.run([sys.executable, "-m", "qbench", "run", "--suite", str(suite), "--results",
                           str(tmp_path / "r"), "--no-progress", "--no-peaks", "--repeat", "2", "--cache-dir",
                           str(tmp_path / "cache")], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert done.returncode == 0, done.stderr
    (path,) = (tmp_path / "r").rglob("*.jsonl")
    lines = [c for c in map(json.loads, path.read_text().splitlines()) if c["kind"] == "case"]
    records = {c["case"]["mode"]: c for c in lines if c["worker"]["repeat"] == 0}
    again = {c["case"]["mode"]: c for c in lines if c["worker"]["repeat"] == 1}
    baseline, machine = records["fp32_bf16"], records["fp32"]["machine"]
    if not any(f in machine["isa"] for f in BF16_ISA[machine["arch"]]):
        assert baseline["status"] == "skipped" and "needs bf16 instructions" in baseline["reason"]
        return
    assert baseline["status"] == "ok", baseline.get("reason")
    assert baseline["details"]["notes"]["fp32_precision"] == {"conv": "bf16", "matmul": "bf16"}
    assert baseline["details"]["kernels"]["fp32_conv"].endswith("fpmath:bf16")
    assert "fpmath" not in records["fp32"]["details"]["kernels"]["fp32_conv"]
    assert baseline["metrics"]["accuracy"]["agreement"] is not None  # judged against the fp32 parent
    # judged against a parent rebuilt in exact fp32 math: the store never gets reference logits from a bf16 process
    assert baseline["details"]["reuse"]["stored"].keys() == {"size", "bandwidth", "accuracy"}
    # its accuracy figure, deterministic, is computed once: the next process reuses it and says so
    second = again["fp32_bf16"]
    assert second["details"]["reused"]["accuracy"] == baseline["details"]["reuse"]["stored"]["accuracy"]
    assert second["metrics"]["accuracy"] == baseline["metrics"]["accuracy"]


def test_claims_judge_int8_against_the_bf16_baseline_of_the_same_run():
    fp32 = make_record(make_case(mode="fp32", engine=None), samples=[0.040] * 5, size=4000)
    bf16 = make_record(make_case(mode="fp32_bf16", engine=None), samples=[0.020] * 5, size=4000)
    fast = make_record(make_case(), samples=[0.010] * 5, size=1000)
    slow = make_record(make_case(engine="qnnpack"), samples=[0.030] * 5, size=1000)
    rows = {r["case_id"]: r for r in claim_rows([fp32, bf16, fast, slow])}
    assert set(rows) == {fast.case_id, slow.case_id}  # the baselines are not judged as int8 cases
    assert rows[fast.case_id]["vs_fp32_bf16"]["speedup"] == 2.0 and rows[fast.case_id]["vs_fp32_bf16"]["beats_bf16"]
    assert rows[slow.case_id]["vs_fp32_bf16"]["speedup"] < 1 and not rows[slow.case_id]["vs_fp32_bf16"]["beats_bf16"]
    assert rows[fast.case_id]["claims"]["speedup"]["value"] == 4.0
    assert claim_rows([fp32, fast])[0]["vs_fp32_bf16"] is None
