"""Kernel micro-benchmarks: shapes taken from real models, real pytest-benchmark runs turned into history, the
--compare-fail gate failing on a deliberate 200x slowdown and passing against itself, the runner cap recorded (or
failing when it did not take effect), and the benchmarks kept out of the unit-test command and asv's discovery."""

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qbench.suite.profiles import EXPECTED_INT8_CONV, unavailable_reason
from qbench.runner.kernel_shapes import (DEFAULT_SHAPES, ConvShape, LinearShape, extract_shapes, load_shapes, model_shapes,
                                  shape_from_dict)
from qbench.launch.machine import collect_machine
from qbench.history.microbench import KERNEL_MODE, records_from_json
from qbench.launch.microbench import KERNELS_DIR, MicrobenchOptions, pytest_command, run_group, run_microbench
from qbench.errors import ConfigError
from qbench.history.store import load_history, read_run_file, run_files

ROOT = Path(__file__).resolve().parent.parent
LINEAR = "quantized_linear and linear-1x512-o1000"
FAST = dict(quick=True, min_rounds=20, max_time_s=0.05)


def qbench(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "qbench", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=600)


def context(machine):
    return {"run_id": "r1", "suite": {"name": "kernels"}, "machine": machine, "qbench": {"commit": None}}


@pytest.fixture(scope="module")
def machine():
    return collect_machine()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, machine):
    """One real run of quantized linear at resnet18's fc shape on x86 and qnnpack, saved as a pytest-benchmark
    baseline and appended to history."""
    folder = tmp_path_factory.mktemp("microbench")
    options = MicrobenchOptions(engines=("x86", "qnnpack"), keyword=LINEAR, storage=folder / "storage",
                                save="base", **FAST)
    result = run_microbench(options, results=folder / "results", machine=machine)
    return folder, result


@pytest.fixture(scope="module")
def real_shapes():
    return {name: model_shapes(name) for name in ("resnet18", "mobilenet_v2")}


def test_resnet18_shapes_are_its_real_first_conv_and_fc(real_shapes):
    shapes = real_shapes["resnet18"]
    assert shapes[0] == ConvShape(1, 3, 224, 224, 64, (7, 7), (2, 2), (3, 3))
    assert shapes[0].shape_id == "conv-1x3x224x224-o64-k7-s2-p3-g1"
    assert shapes[0].macs == 118_013_952  # 64 x 112 x 112 outputs x 3 x 7 x 7
    assert shapes[-1] == LinearShape((1, 512), 1000)
    assert len({s.shape_id for s in shapes}) == len(shapes) == 12  # 20 convolutions and one fc, deduplicated
    assert sum(isinstance(s, ConvShape) for s in shapes) == 11


def test_default_shapes_are_ones_resnet18_and_mobilenet_v2_really_run(real_shapes):
    real = {s.shape_id for shapes in real_shapes.values() for s in shapes}
    assert {s.shape_id for s in DEFAULT_SHAPES} <= real
    assert any(isinstance(s, ConvShape) and s.groups == s.c > 1 for s in DEFAULT_SHAPES)  # a depthwise conv


def test_extraction_handles_same_padding_and_3d_linear_inputs(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, padding="same"), torch.nn.Flatten(2),
                                torch.nn.Linear(64, 4))
    conv, linear = extract_shapes(model.eval(), torch.rand(2, 3, 8, 8))
    assert conv == ConvShape(2, 3, 8, 8, 8, (5, 5), padding=(2, 2))
    assert linear == LinearShape((2, 8, 64), 4) and linear.rows == 16 and linear.batch_size == 2
    path = tmp_path / "shapes.json"
    path.write_text(json.dumps([conv.to_dict(), linear.to_dict()]))
    assert load_shapes(path) == [conv, linear]
    with pytest.raises(ConfigError, match="layer must be conv2d or linear"):
        shape_from_dict({"layer": "conv3d"})


def test_benchmark_json_becomes_history_with_the_raw_samples(baseline):
    folder, result = baseline
    assert [g.exit_code for g in result.groups] == [0, 0] and not result.gate_failed
    ok = {r.case.engine: r for r in result.records}
    assert set(ok) == {"x86", "qnnpack"} and all(r.status == "ok" for r in ok.values())
    record = ok["qnnpack"]
    assert record.case.model == "kernel:quantized_linear[linear-1x512-o1000]"
    assert record.case.mode == KERNEL_MODE and record.case.batch_size == 1 and record.case.threads == 1
    assert record.details["kernel"]["macs"] == 512 * 1000
    assert record.details["kernels"]["int8_conv"] == "qnnpack"
    assert record.environment["variables"]["OMP_NUM_THREADS"] == "1"
    (path,) = run_files(folder / "results")
    stored = read_run_file(path)
    assert stored.complete and stored.header["suite"]["name"] == "kernels"
    assert stored.records[0].metrics["latency"]["samples"] == result.records[0].metrics["latency"]["samples"]
    frame = load_history(folder / "results")
    assert list(frame["suite"]) == ["kernels", "kernels"] and set(frame["mode"]) == {"kernel"}
    assert (frame["latency_n"] >= 5).all() and (frame["latency_median_s"] > 0).all()
    saved = list((folder / "storage").rglob("0001_base.json"))
    assert len(saved) == 2  # one pytest-benchmark storage per machine/runner/engine
    data = json.loads(saved[0].read_text())["benchmarks"][0]["stats"]["data"]
    engine = saved[0].relative_to(folder / "storage").parts[2]
    assert data == ok[engine].metrics["latency"]["samples"]


def test_saved_pytest_benchmark_json_loads_into_history_as_it_was_recorded(baseline, tmp_path):
    folder, result = baseline
    saved = sorted((folder / "storage").rglob("0001_base.json"))
    done = qbench("microbench", "--load", str(saved[0]), "--load", str(saved[1]), "--results", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "benchmarks 2 ok, 0 skipped, 0 failed (shapes: from file)" in done.stdout
    frame = load_history(tmp_path)
    original = load_history(folder / "results")
    key = ["case_id", "latency_median_s", "latency_n", "machine_id", "runner", "cpu_capability"]
    assert frame.sort_values("case_id")[key].values.tolist() == original.sort_values("case_id")[key].values.tolist()
    broken = qbench("microbench", "--load", str(ROOT / "pyproject.toml"), "--results", str(tmp_path))
    assert broken.returncode == 2 and "not a readable pytest-benchmark JSON file" in broken.stderr


def test_compare_fail_gate_fails_on_a_200x_slower_kernel_and_passes_against_itself(baseline):
    """Huge margins, since this VM is shared: the slow variant's best round is at least 200x the kernel's true time
    whatever the load, and the gate fires above 11x the baseline's best of 20+ rounds."""
    folder, _ = baseline
    common = ["microbench", "--engine", "x86", "-k", LINEAR, "--quick", "--results", str(folder / "gate"),
              "--benchmark-storage", str(folder / "storage"), "--compare", "--compare-fail", "min:1000%"]
    slower = qbench(*common, "--slowdown", "200")
    assert slower.returncode == 1, slower.stdout + slower.stderr
    assert "regressed (--compare-fail min:1000%)" in slower.stdout
    assert "native/x86: test_quantized_linear[x86-linear-1x512-o1000]" in slower.stdout
    same = qbench(*common)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "kernel:quantized_linear" not in same.stderr
    assert "quantized_linear  linear-1x512-o1000" in same.stdout
    assert len(load_history(folder / "gate")) == 2  # both gated runs are history too


def test_bad_gate_arguments_are_one_line_errors(tmp_path):
    bad = qbench("microbench", "--compare", "--compare-fail", "fastest:5%", "--results", str(tmp_path))
    assert bad.returncode == 2 and "pytest-benchmark's grammar" in bad.stderr.strip().splitlines()[-1]
    lonely = qbench("microbench", "--compare-fail", "min:5%", "--results", str(tmp_path))
    assert lonely.returncode == 2 and "--compare-fail needs --compare" in lonely.stderr
    empty = qbench("microbench", "--compare", "--benchmark-storage", str(tmp_path / "none"),
                   "--results", str(tmp_path))
    assert empty.returncode == 2 and "no saved kernel benchmarks" in empty.stderr
    runner = qbench("microbench", "--runner", "avx3", "--results", str(tmp_path))
    assert runner.returncode == 2 and "unknown runner 'avx3'" in runner.stderr
    assert not run_files(tmp_path)


def test_avx2_runner_is_recorded_and_really_capped(tmp_path, machine):
    """Under avx2 the kernels run capped, and the x86 engine on the library a real AVX2 host's x86 engine runs
    (FBGEMM), substituted and said so where this host's CPUID makes torch pick oneDNN, as in a case's worker."""
    options = MicrobenchOptions(engines=("x86",), runners=("avx2",), keyword=LINEAR, storage=tmp_path, **FAST)
    (record,) = run_microbench(options, machine=machine).records
    assert record.case.runner == "avx2" and record.case_id.endswith("@avx2")
    skip = unavailable_reason("avx2", machine)
    if skip is None:
        assert record.status == "ok", record.reason
        kernels = record.details["kernels"]
        assert kernels["cpu_capability"] == "AVX2"
        assert "AVX2" in kernels["onednn_isa"]
        assert record.environment["variables"]["ATEN_CPU_CAPABILITY"] == "avx2"
        assert kernels["int8_conv"] == EXPECTED_INT8_CONV["avx2"]["x86"]
        if "avx512_vnni" in machine["isa"] or "amx_int8" in machine["isa"]:  # torch alone would pick oneDNN here
            assert kernels["engine_substitution"]["kernels_of"] == "fbgemm", kernels
            assert kernels["engine_substitution"]["instead_of"].startswith("onednn:"), kernels
    else:
        assert record.status == "skipped" and record.reason == skip


def test_a_cap_that_did_not_take_effect_fails_every_benchmark(tmp_path, machine):
    """--kernel-runner avx2 without the profile's variables: the process runs natively, and must say so."""
    options = MicrobenchOptions(engines=("qnnpack",), keyword=LINEAR, storage=tmp_path, **FAST)
    command = pytest_command("qnnpack", "native", options, machine, tmp_path / "b.json", tmp_path / "r.json")
    command = [c.replace("--kernel-runner=native", "--kernel-runner=avx2") for c in command]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA"):
        env.pop(name, None)
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    report = json.loads((tmp_path / "r.json").read_text())
    bench = json.loads((tmp_path / "b.json").read_text()) if (tmp_path / "b.json").exists() else None
    (record,) = records_from_json(bench, context(machine), report)
    if report["kernels"]["cpu_capability"] == "AVX2":  # an AVX2-only machine: native already is the cap
        assert done.returncode == 0 and record.status == "ok"
    else:
        assert done.returncode == 1 and record.status == "failed"
        assert record.reason.startswith("runner avx2: torch dispatches to")
        assert record.case.model == "kernel:quantized_linear[linear-1x512-o1000]" and record.case.runner == "avx2"


def test_runner_this_machine_cannot_emulate_gives_skipped_records(tmp_path, machine):
    arm = {**machine, "arch": "aarch64", "isa": ["asimd"]}
    options = MicrobenchOptions(engines=("x86",), runners=("avx2",), keyword=LINEAR, storage=tmp_path, **FAST)
    group, bench, report = run_group("x86", "avx2", options, arm, tmp_path)
    assert group.exit_code == 0 and group.error is None and bench is None
    # pointed at benchmarks/kernels, pytest does collect them (the control of the next test)
    assert list(report["items"]) == \
        ["benchmarks/kernels/test_kernels.py::test_quantized_linear[x86-linear-1x512-o1000]"]
    (record,) = records_from_json(bench, context(arm), report, runner="avx2", threads=1)
    assert record.status == "skipped" and record.reason == "runner avx2 needs an x86_64 machine, this one is aarch64"


def test_kernel_benchmarks_stay_out_of_unit_tests_and_asv():
    """The README's `python -m pytest` collects pyproject's testpaths only (tests/ is ignored here to keep this
    fast: what matters is that nothing else is picked up, while the previous test shows pytest collecting
    benchmarks/kernels when pointed at it); asv walks packages, and benchmarks/kernels is none."""
    unit = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--ignore-glob=tests/*"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "benchmarks/kernels" not in unit.stdout and "no tests collected" in unit.stdout, unit.stdout
    assert not (KERNELS_DIR / "__init__.py").exists()
    modules = {name for _, name, _ in pkgutil.iter_modules([str(ROOT / "benchmarks")])}
    assert "quick" in modules and "kernels" not in modules
