"""Isolation: a worker that raises, crashes, hangs or runs out of memory becomes a record; the suite goes on."""

import json

import pytest

from qbench.plan.expand import Catalog, expand
from qbench.launch.session import Session
from qbench.history.store import RunWriter, read_run_file
from qbench.suite.load import parse_suite
from tests.factories import MACHINE

MODELS = ["fine", "raises", "aborts", "segfaults", "exits", "hangs", "oom", "cannot", "fine2"]
CATALOG = Catalog(models={m: {"quantizable": False, "input_size": 8, "tags": []} for m in MODELS},
                  engines={"x86": None}, environment={"torch": "from catalog"})


def run_fake_suite(tmp_path, isolation):
    spec = parse_suite({"suite": {"name": "faults"}, "measure": {"timeout_s": 10.0},
                        "run": {"isolation": isolation, "memory_limit_gb": 1.0},
                        "matrix": [{"models": MODELS, "modes": ["fp32"]}]})
    planned = sorted(expand(spec, CATALOG), key=lambda p: MODELS.index(p.case.model))
    context = {"run_id": "r" * 32, "suite": spec.identity(), "machine": MACHINE, "qbench": {"commit": None}}
    with Session(spec, entry="tests.fake_workers:behave") as session:
        writer = RunWriter(tmp_path, MACHINE, {**context, "started_at": "2026-11-22T00:00:00Z"})
        records = session.run(planned, catalog=CATALOG, writer=writer, context=context)
        path = writer.finish({"run_id": context["run_id"], "interrupted": False})
    return {r.case.model: r for r in records}, path


@pytest.fixture(scope="module", params=["fork", "spawn"])
def outcome(request, tmp_path_factory):
    return run_fake_suite(tmp_path_factory.mktemp(request.param), request.param)


def test_every_case_has_a_record_and_the_suite_went_on(outcome):
    records, path = outcome
    assert list(records) == MODELS
    assert records["fine"].status == "ok" and records["fine2"].status == "ok"
    assert [r.case.model for r in read_run_file(path).records] == MODELS


def test_exception_is_a_failed_record_with_its_traceback(outcome):
    record = outcome[0]["raises"]
    assert record.status == "failed"
    assert record.reason == "RuntimeError: recipe exploded"
    assert "Traceback" in record.error_tail and "second line" in record.error_tail


def test_crashes_are_failed_records_naming_the_signal_and_output(outcome):
    records = outcome[0]
    assert records["aborts"].status == "failed"
    assert records["aborts"].reason == "the worker died of signal SIGABRT"
    assert "about to abort" in records["aborts"].error_tail
    assert records["segfaults"].reason == "the worker died of signal SIGSEGV"
    assert records["exits"].reason == "the worker exited with code 3 and wrote no result"
    assert records["exits"].environment["source"] == "catalog probe"


def test_hang_is_killed_at_the_timeout(outcome):
    record = outcome[0]["hangs"]
    assert record.status == "timeout"
    assert record.reason == "exceeded the 10 s timeout; the worker was killed"
    assert "fake worker starting hangs" in record.error_tail
    assert record.duration_s < 60


def test_memory_limit_turns_a_runaway_into_an_out_of_memory_record(outcome):
    record = outcome[0]["oom"]
    assert record.status == "failed"
    assert record.reason.startswith("out of memory: MemoryError")


def test_not_applicable_is_a_skip_with_its_reason(outcome):
    record = outcome[0]["cannot"]
    assert record.status == "skipped" and record.reason == "this mode cannot apply to this model"


def test_each_case_ran_in_its_own_process(outcome):
    records = outcome[0]
    assert records["fine"].details["pid"] != records["fine2"].details["pid"]
    assert records["fine"].worker["overhead_s"] >= 0
    assert records["fine"].environment == {"torch": "fake"}


def test_records_on_disk_are_json_lines(outcome):
    _, path = outcome
    kinds = [json.loads(line)["kind"] for line in path.read_text().splitlines()]
    assert kinds == ["run"] + ["case"] * len(MODELS) + ["run_end"]


@pytest.mark.parametrize("isolation", ["fork", "spawn"])
def test_a_worker_does_not_outlive_its_killed_run(tmp_path, isolation):
    """kill -9 of the qbench process leaves no worker finishing its case (it would burn a CI runner's CPU)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.factories import ROOT

    pidfile = tmp_path / "worker.pid"
    driver = (
        "from qbench.plan.expand import Catalog, expand\n"
        "from qbench.launch.session import Session\n"
        "from qbench.suite.load import parse_suite\n"
        "catalog = Catalog(models={'hangs': {'quantizable': False, 'input_size': 8, 'tags': []}}, engines={'x86': None},"
        " environment={})\n"
        f"spec = parse_suite({{'suite': {{'name': 'orphan'}}, 'measure': {{'timeout_s': 600.0}}, "
        f"'run': {{'isolation': '{isolation}'}}, 'matrix': [{{'models': ['hangs'], 'modes': ['fp32']}}]}})\n"
        "with Session(spec, entry='tests.fake_workers:behave') as session:\n"
        "    session.run(list(expand(spec, catalog)), catalog=catalog, writer=None, context={'run_id': 'r' * 32})\n")
    env = {**os.environ, "QBENCH_TEST_PIDFILE": str(pidfile), "PYTHONPATH": str(ROOT)}
    run = subprocess.Popen([sys.executable, "-c", driver], env=env, cwd=ROOT)
    deadline = time.monotonic() + 120
    while not pidfile.exists() or not pidfile.read_text():
        assert run.poll() is None, "the driver ended before its worker started"
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.2)
    worker = int(pidfile.read_text())
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 60
    while _alive(worker):
        if time.monotonic() > deadline:
            os.kill(worker, signal.SIGKILL)
            pytest.fail(f"worker {worker} was still running 60 s after its run was killed")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False
