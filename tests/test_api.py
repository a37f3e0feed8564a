"""measure_cases: the worker path from Python, with or without writing history."""

from qbench.api import measure_cases
from qbench.records import Case, MeasureSpec
from qbench.history.store import read_run_file

FAST = MeasureSpec(warmup_rounds=0, min_time_s=0.0, min_rounds=3)


def test_measure_cases_returns_records_and_writes_history_when_asked(tmp_path):
    cases = [Case(model="tests.tiny_models:convnet", mode="fp32", engine=None, batch_size=1, threads=1),
             Case(model="tests.tiny_models:convnet", mode="static_eager", engine="x86", batch_size=1, threads=1)]
    records = measure_cases(cases, FAST, results=tmp_path)
    assert [r.status for r in records] == ["ok", "skipped"]
    assert len(records[0].metrics["latency"]["samples"]) == 3
    (path,) = tmp_path.rglob("*.jsonl")
    assert [r.case for r in read_run_file(path).records] == cases
