"""ARM (aarch64) executed for real, under qemu-user: an aarch64 Python with PyPI's aarch64 torch runs qbench from this
checkout through the same command line a user runs (issue 13).

`.ci/arm-env` builds the environment once per recipe and caches it (~/.cache/qbench/arm-env, 3.5 GB; about 2.5
minutes of CPU and 3 GB of downloads cold, 5.5 minutes of wall time on a quiet 2-core machine; under a second warm);
it also resolves the nightly workflow's ARM install for aarch64, so the checks on that
resolution below test the ARM job's install commands locally. Timings under emulation mean nothing and are never
asserted: what runs, what is skipped and what each record says are. When the environment cannot be built (no
PyPI, apt failing, no binfmt_misc), these tests fail with the script's message; they never skip.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ARM_ENV = REPO / ".ci" / "arm-env"
# The probe's reason for engines whose prepack fails on aarch64 (torch's own spelling).
UNKNOWN_ARCH = "unknown architecure"
# A small quantizable model: cheap enough under emulation (a forward takes one or two seconds).
MODEL = "shufflenet_v2_x0_5"
# Host variables that mean nothing (or harm) to an aarch64 process: x86 OpenBLAS core types, the host's venv.
_HOST_ONLY = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "VIRTUAL_ENV", "PYTHONHOME", "QBENCH_CACHE_DIR")


def _pin(name: str) -> str:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line.startswith(f"{name}=="):
            return line.split("==", 1)[1].strip()
    raise AssertionError(f"constraints.txt pins no {name}")


@pytest.fixture(scope="module")
def arm_env() -> dict:
    """The environment variables that run the emulated aarch64 Python on this checkout (built or reused)."""
    try:
        proc = subprocess.run(["bash", str(ARM_ENV)], check=False, capture_output=True, text=True, timeout=3000)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        pytest.fail(f".ci/arm-env did not finish in {exc.timeout} s; its output:\n{stderr[-4000:]}")
    if proc.returncode != 0:
        pytest.fail(f".ci/arm-env could not build the emulated aarch64 environment (exit {proc.returncode}); "
                    f"it needs apt-get (Debian) and PyPI. Its output:\n{proc.stderr[-4000:]}")
    env = {k: v for k, v in os.environ.items() if k not in _HOST_ONLY}
    for line in proc.stdout.splitlines():
        key, sep, value = line.removeprefix("export ").partition("=")
        if line.startswith("export ") and sep:
            env[key] = value
    for key in ("QEMU_LD_PREFIX", "PYTHONPATH", "QBENCH_ARM_PYTHON", "QBENCH_ARM_ENV"):
        assert key in env, f".ci/arm-env printed no {key}: {proc.stdout!r}"
    assert str(REPO) in env["PYTHONPATH"].split(os.pathsep), "the emulated Python must run this checkout's qbench"
    return env


def qbench(env: dict, *args: str, cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    """`python -m qbench ARGS` with the aarch64 interpreter, as a user on an ARM machine types it."""
    proc = subprocess.run([env["QBENCH_ARM_PYTHON"], "-m", "qbench", *args], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_the_arm_jobs_install_resolves_for_aarch64(arm_env):
    """The workflow's ARM job installs with .ci/nightly-shard: `pip install $QBENCH_PIP_ARGS -c constraints.txt -e .`.
    .ci/arm-env resolves exactly that requirement set for aarch64/cp311 (against PyPI): it must resolve, to the
    pinned torch stack, and only packages known to build from source on the runner may lack an aarch64 wheel."""
    shard = (REPO / ".ci" / "nightly-shard").read_text()
    assert re.search(r"\.venv/bin/pip install \$args -c constraints\.txt -e \.$", shard, re.MULTILINE), \
        "nightly-shard's install changed: make .ci/arm-env resolve the new one"
    resolution = json.loads((Path(arm_env["QBENCH_ARM_ENV"]) / "resolution.json").read_text())
    installed = {name.lower(): version for name, version in resolution["install"].items()}
    for name in ("torch", "torchvision", "torchao"):
        assert installed[name] == _pin(name), f"{name} resolved to {installed[name]} on aarch64"
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in dependencies:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower()
        assert name in installed or name in resolution["sdist_only"], f"{name} was not resolved for aarch64"
    # asv has no aarch64 wheel: the ARM runner compiles its sdist (qbench's parent never imports it for
    # machine, list or run, so the emulated environment goes without it). Any other package here is news.
    assert set(resolution["sdist_only"]) <= {"asv"}, resolution["sdist_only"]


def test_qbench_machine_reports_aarch64(arm_env, tmp_path):
    machine = json.loads(_ok(qbench(arm_env, "machine", "--json", cwd=tmp_path)))
    assert machine["arch"] == "aarch64"
    assert machine["vendor"] == "ARM"
    assert machine["cpu_model"] == "Neoverse-N1"
    assert machine["machine_id"].startswith("aarch64-neoverse-n1-")
    # Neoverse N1: Advanced SIMD with the dot product, no SVE, no i8mm (.ci/arm-env's /proc/cpuinfo and QEMU_CPU).
    assert {"asimd", "asimddp"} <= set(machine["isa"])
    assert not {"sve", "sve2", "i8mm"} & set(machine["isa"])
    assert machine["logical_cpus"] == 2


def test_qbench_list_arm_suite_skips_x86_engines_with_the_probes_reason(arm_env, tmp_path):
    proc = qbench(arm_env, "list", "--suite", "arm", "--json", cwd=tmp_path)
    cases = [json.loads(line) for line in _ok(proc).splitlines() if line.startswith("{")]
    assert cases, proc.stdout
    by_engine: dict[str, list] = {}
    for item in cases:
        by_engine.setdefault(item["case"]["engine"], []).append(item)
    assert {"x86", "fbgemm", "qnnpack"} <= set(by_engine), sorted(map(str, by_engine))
    for engine in ("x86", "fbgemm"):
        for item in by_engine[engine]:
            reason = item["skip_reason"] or ""
            assert reason.startswith(f"engine {engine} does not work here:"), (item["case_id"], reason)
            assert UNKNOWN_ARCH in reason, (item["case_id"], reason)
    # qnnpack is ARM's int8 engine and fp32 needs none: those cases are to run. (pt2e and prequantized on qnnpack
    # are left out: pt2e has no quantizer for qnnpack here and torchvision's fbgemm-built prequantized models cannot
    # be packed on aarch64; whether list should say so is for qbench to decide, not for this test.)
    for item in cases:  # the emulated Neoverse N1 has no bf16: the bf16 fast-math baseline is skipped, saying why
        if item["case"]["mode"] == "fp32_bf16":
            assert "needs bf16 instructions" in (item["skip_reason"] or ""), (item["case_id"], item["skip_reason"])
    runnable = [item for item in cases if item["case"]["mode"] == "fp32"
                or (item["case"]["engine"] == "qnnpack"
                    and item["case"]["mode"] in ("dynamic", "static_eager", "static_fx", "qat"))]
    assert {item["case"]["mode"] for item in runnable} >= {"fp32", "dynamic", "static_eager", "static_fx", "qat"}
    for item in runnable:
        assert item["skip_reason"] is None, (item["case_id"], item["skip_reason"])


TINY_SUITE = f"""
    [suite]
    name = "arm-emulated"
    description = "tests/test_arm_emulated.py: fp32 and FX static int8 of a small model on qnnpack and x86"

    [defaults]
    engines = ["qnnpack", "x86"]
    batch_sizes = [1]
    threads = [1]
    weights = ["random"]

    [[matrix]]
    models = ["{MODEL}"]
    modes = ["fp32", "static_fx"]

    [calibration]
    source = "synthetic"
    batches = 1
    batch_size = 2
    seed = 0

    [accuracy]
    source = "synthetic"
    images = 4
    batch_size = 4
    seed = 0

    [measure]
    warmup_rounds = 1
    min_time_s = 0.1
    min_rounds = 3
    max_rounds = 5
    timeout_s = 900.0

    [run]
    repeat = 1
"""


def test_qbench_run_on_aarch64_records_what_ran_and_what_was_skipped(arm_env, tmp_path):
    suite = tmp_path / "arm-emulated.toml"
    suite.write_text(textwrap.dedent(TINY_SUITE))
    results = tmp_path / "results"
    proc = qbench(arm_env, "run", "--suite", str(suite), "--results", str(results), "--no-peaks",
                  "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--fail-on-error", cwd=tmp_path,
                  timeout=2400)
    out = _ok(proc)
    runs = sorted(results.glob("*/runs/*/*.jsonl"))
    assert len(runs) == 1, (runs, out)
    assert runs[0].parent.parent.parent.name.startswith("aarch64-neoverse-n1-")
    lines = [json.loads(line) for line in runs[0].read_text().splitlines()]
    assert lines[0]["kind"] == "run" and lines[-1]["kind"] == "run_end"
    assert lines[0]["machine"]["arch"] == "aarch64"
    assert lines[-1]["counts"] == {"ok": 2, "skipped": 1}
    records = {r["case_id"]: r for r in lines if r["kind"] == "case"}
    fp32 = records[f"{MODEL}/fp32/-/b1/t1/random"]
    int8 = records[f"{MODEL}/static_fx/qnnpack/b1/t1/random"]
    x86 = records[f"{MODEL}/static_fx/x86/b1/t1/random"]

    # Every record comes from the emulated aarch64 Python with the pinned torch stack (PyPI's aarch64 builds).
    for record in records.values():
        assert record["machine"]["arch"] == "aarch64"
        assert record["machine"]["cpu_model"] == "Neoverse-N1"
        environment = record["environment"]
        for name in ("torch", "torchvision", "torchao"):
            assert environment[name].split("+")[0] == _pin(name), (name, environment[name])
        assert environment["python"].startswith("3.11.")
        assert environment["torchvision_ops"] == "native"   # the aarch64 torchvision loads its own extension

    # x86 is skipped with the engine probe's reason, measured nothing, and the summary says so.
    assert x86["status"] == "skipped"
    assert x86["reason"].startswith("engine x86 does not work here:") and UNKNOWN_ARCH in x86["reason"]
    assert x86["metrics"] == {}
    assert f"{MODEL}/static_fx/x86/b1/t1/random: engine x86 does not work here" in out

    # fp32 and qnnpack int8 ran in aarch64 workers; the kernels are ARM's (oneDNN on AArch64 for fp32
    # convolutions, QNNPACK for int8) and torch dispatches to its DEFAULT (no AVX) capability.
    for record in (fp32, int8):
        assert record["status"] == "ok", (record["case_id"], record["reason"], record["error_tail"])
        assert record["worker"]["exit_code"] == 0
        kernels = record["details"]["kernels"]
        assert kernels["cpu_capability"] == record["environment"]["cpu_capability"] == "DEFAULT"
        assert kernels["onednn_isa"].startswith("AArch64"), kernels
        assert kernels["fp32_conv"].startswith("onednn:"), kernels
        assert not re.search(r"avx|sse|amx", json.dumps(kernels), re.IGNORECASE), kernels
        assert record["metrics"]["latency"]["samples"], "latency was sampled (its values are not asserted)"
    assert int8["case"]["engine"] == "qnnpack"
    assert int8["environment"]["quantized_engine"] == "qnnpack"
    assert int8["details"]["kernels"]["int8_conv"] == "qnnpack"
    assert "int8_conv" not in fp32["details"]["kernels"]
    # The int8 model is really quantized: int8 weights, about 4x smaller, and it agrees with its fp32 parent.
    size = int8["metrics"]["size"]
    assert size["modules_float"] == 0 and size["modules_quantized"] > 0
    assert size["bytes_by_dtype"]["torch.qint8"] > 0
    assert fp32["metrics"]["size"]["state_dict_bytes"] > 3 * size["state_dict_bytes"]
    accuracy = int8["metrics"]["accuracy"]
    assert accuracy["subset"]["images"] == 4
    assert accuracy["agreement"] is not None and accuracy["sqnr_db"] is not None
    assert re.search(r"cases\s+2 ok, 1 skipped, 0 failed, 0 timeout", out), out
