"""pytest-benchmark set-up of qbench's int8 kernel micro-benchmarks: which engines and shapes they run at, the
runner profile's check, and the metadata qbench.launch.microbench turns into run records.

This folder has no __init__.py, so asv's benchmark discovery (which walks packages only) never imports it, and
pyproject's `testpaths = ["tests"]` keeps the unit-test command from collecting it. Run it with `qbench microbench`
or directly:

    python -m pytest benchmarks/kernels --kernel-engine x86 --benchmark-json out.json

Before any kernel runs, the process probes which kernels it dispatches to (qbench.runner.probes.kernels) and checks that
the runner profile named by --kernel-runner took effect (the variables come from the environment, as in a worker);
a cap that did not is a failure of every benchmark, never a silent native run. An engine that fails qbench's probe
skips its benchmarks with the reason.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from qbench.runner.kernel_shapes import DEFAULT_SHAPES, load_shapes
from qbench.records import ENGINES

__all__ = ["KernelState"]


def pytest_addoption(parser):
    group = parser.getgroup("qbench kernels")
    group.addoption("--kernel-engine", action="append", default=[], choices=ENGINES,
                    help="quantized engine to benchmark; repeatable (default: all)")
    group.addoption("--kernel-runner", default="native",
                    help="runner profile whose ISA cap must be in force (its variables set by the caller)")
    group.addoption("--kernel-shapes", default=None, metavar="FILE",
                    help="JSON list of shapes (python -m qbench.runner.kernel_shapes); default: a small resnet18 and "
                         "mobilenet_v2 set")
    group.addoption("--kernel-slowdown", type=int, default=1, metavar="N",
                    help="run the kernel N times per timed call: a deliberate N-fold regression under the same "
                         "benchmark name, to test a --benchmark-compare-fail gate")
    group.addoption("--kernel-skip-all", default=None, metavar="REASON",
                    help="skip every benchmark with this reason (a runner profile this machine cannot emulate)")
    group.addoption("--kernel-report", default=None, metavar="FILE",
                    help="write each benchmark's outcome and the kernel probe to this JSON file")


class KernelState:
    """What this process learned before and while benchmarking: the probe, the runner check, engine probes and
    each test's outcome."""

    def __init__(self, config):
        self.engines = config.getoption("kernel_engine") or list(ENGINES)
        self.runner = config.getoption("kernel_runner")
        self.slowdown = config.getoption("kernel_slowdown")
        self.skip_all = config.getoption("kernel_skip_all")
        shapes_file = config.getoption("kernel_shapes")
        self.shapes = load_shapes(shapes_file) if shapes_file else list(DEFAULT_SHAPES)
        self.kernels: dict | None = None
        self.cap_error: str | None = None
        self.engine_reasons: dict[str, str | None] = {}
        self.int8_conv: dict[str, str] = {}
        self.substitutions: dict[str, dict] = {}   # engine -> what a real host of the runner profile runs instead
        self.engine_errors: dict[str, str] = {}    # engine -> why this profile cannot reproduce its real path here
        self.items: dict[str, dict] = {}
        if self.slowdown < 1:
            raise pytest.UsageError(f"--kernel-slowdown must be at least 1, got {self.slowdown}")

    def probe(self) -> None:
        """First thing in the process: oneDNN names its ISA only at its first use."""
        from qbench.runner.probes.kernels import probe_kernels
        from qbench.runner.worker import verify_runner

        self.kernels = probe_kernels(None)
        try:
            verify_runner(self.runner, self.kernels)
        except RuntimeError as exc:
            self.cap_error = str(exc)

    def engine_reason(self, engine: str) -> str | None:
        """None when the engine works here (and which library runs its int8 conv is recorded, on the kernels a real
        host of the runner profile runs, as in a worker), else why not."""
        if engine not in self.engine_reasons:
            from qbench.runner.probes.kernels import kernels_like_the_profile, probe_kernels
            from qbench.runner.registry.engines import probe_engine
            from qbench.runner.worker import verify_runner

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reason = probe_engine(engine)
                if reason is None:
                    # oneDNN names its ISA once per process: the first probe's (self.probe) stands
                    probed = {**(self.kernels or {}), "int8_conv": probe_kernels(engine)["int8_conv"]}
                    kernels = kernels_like_the_profile(self.runner, engine, probed)
                    self.int8_conv[engine] = kernels["int8_conv"]
                    if "engine_substitution" in kernels:
                        self.substitutions[engine] = kernels["engine_substitution"]
                    try:
                        verify_runner(self.runner, kernels, engine)
                    except RuntimeError as exc:
                        self.engine_errors[engine] = str(exc)
            self.engine_reasons[engine] = reason
        return self.engine_reasons[engine]

    def summary(self) -> dict:
        from qbench.launch.machine import collect_machine
        from qbench.runner.environment import collect_environment

        return {"machine": collect_machine(), "runner": self.runner, "slowdown": self.slowdown, "kernels": self.kernels,
                "cap_error": self.cap_error, "skip_all": self.skip_all, "engines": self.engine_reasons,
                "int8_conv": self.int8_conv, "engine_substitutions": self.substitutions,
                "engine_errors": self.engine_errors, "environment": collect_environment()}


def pytest_configure(config):
    state = KernelState(config)
    if not state.skip_all:
        state.probe()
    config._qbench_kernels = state


def _state(config) -> KernelState:
    return config._qbench_kernels


def pytest_generate_tests(metafunc):
    state = _state(metafunc.config)
    if "engine" in metafunc.fixturenames:
        metafunc.parametrize("engine", state.engines)
    for name, layers in (("conv_shape", ("conv2d",)), ("linear_shape", ("linear",)),
                         ("layer_shape", ("conv2d", "linear"))):
        if name in metafunc.fixturenames:
            shapes = [s for s in state.shapes if s.layer in layers]
            metafunc.parametrize(name, shapes, ids=[s.shape_id for s in shapes])


def pytest_collection_finish(session):
    state = _state(session.config)
    for item in session.items:
        params = getattr(item, "callspec", None)
        params = params.params if params else {}
        shape = next((params[k] for k in ("conv_shape", "linear_shape", "layer_shape") if k in params), None)
        state.items[item.nodeid] = {"op": item.originalname.removeprefix("test_"), "engine": params.get("engine"),
                                    "shape": None if shape is None else shape.to_dict(),
                                    "shape_id": None if shape is None else shape.shape_id,
                                    "outcome": "not run", "reason": None}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    entry = _state(item.config).items.get(item.nodeid)
    if entry is not None and (report.when == "call" or report.outcome != "passed"):
        entry["outcome"] = report.outcome
        if report.skipped:
            entry["reason"] = report.longrepr[2].removeprefix("Skipped: ") if isinstance(report.longrepr, tuple) \
                else str(report.longrepr)
        elif report.failed:
            entry["reason"] = _failure_line(report)
    return report


def _failure_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    line = crash.message.splitlines()[0] if crash is not None else str(report.longrepr).strip().splitlines()[-1]
    return line.removeprefix("Failed: ")


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["qbench"] = _state(config).summary()


def pytest_sessionfinish(session, exitstatus):
    state = getattr(session.config, "_qbench_kernels", None)
    path = session.config.getoption("kernel_report", None)
    if state is None or not path:
        return
    report = {**state.summary(), "items": state.items}
    Path(path).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")


@pytest.fixture
def kernel(request, benchmark, engine):
    """Call `kernel(fn, shape, **info)` to benchmark fn (a closure over tensors prepared in the test, under
    `engine`, which this fixture sets for the whole test) with the metadata qbench.launch.microbench reads. Skips when the
    engine does not work here; fails when the runner cap did not take effect."""
    import torch

    state = _state(request.config)
    if state.skip_all:
        pytest.skip(state.skip_all)
    if state.cap_error:
        pytest.fail(state.cap_error, pytrace=False)
    reason = state.engine_reason(engine)
    if reason:
        pytest.skip(f"engine {engine} does not work here: {reason}")
    if engine in state.engine_errors:
        pytest.fail(state.engine_errors[engine], pytrace=False)

    def run(fn, shape, **info):
        repeat = range(state.slowdown)

        def timed():
            for _ in repeat:
                fn()

        benchmark.extra_info.update({"op": request.node.originalname.removeprefix("test_"), "engine": engine,
                                     "runner": state.runner, "shape": shape.to_dict(), "shape_id": shape.shape_id,
                                     "batch_size": shape.batch_size, "threads": torch.get_num_threads(),
                                     "slowdown": state.slowdown, "int8_conv": state.int8_conv.get(engine),
                                     "engine_substitution": state.substitutions.get(engine), **info})
        with torch.inference_mode():
            fn()  # fail before timing if the kernel cannot run at this shape
            benchmark(timed)

    from qbench.runner.registry.engines import kernels_engine

    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = kernels_engine(engine)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 warns on every quantized tensor it creates
        try:
            yield run
        finally:
            torch.backends.quantized.engine = previous
