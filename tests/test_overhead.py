"""`qbench overhead`: the harness's own cost, measured end to end through the command (no timing is asserted)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    return subprocess.run([sys.executable, "-m", "qbench", "overhead", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_overhead_prints_start_up_per_isolation_and_the_sampler_against_a_bare_loop():
    done = run("--model", "tests.tiny_models:convnet", "--tasks", "1", "--alternations", "1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("empty case, fork  isolation: median ") and "n=1" in lines[0]
    assert lines[1].startswith("empty case, spawn isolation: median ")
    assert "tests.tiny_models:convnet/fp32/-/b1/t1/random: qbench sampler median" in lines[2]
    assert "bare loop" in lines[3] and "per ABBA block median" in lines[4]


def test_overhead_rejects_an_engine_with_fp32_in_one_line():
    done = run("--model", "tests.tiny_models:convnet", "--engine", "x86")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "qbench: error: --engine is required for quantized modes and not allowed with fp32"]
