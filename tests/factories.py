"""Hand-built records for tests of the pure stages (pyperf's create_run idea)."""

from __future__ import annotations

import uuid

from qbench.records import Case, RunRecord

MACHINE = {"machine_id": "x86_64-test-2c-24g-abcdef", "arch": "x86_64", "cpu_model": "Test CPU", "cpu_signature": "f6",
           "isa": ["avx2", "avx512f"], "logical_cpus": 2, "memory_gib": 24}
ENVIRONMENT = {"python": "3.11.7", "torch": "2.13.0+cpu", "torchvision": "0.28.0", "cpu_capability": "AVX512",
               "torchvision_ops": "declared-schemas"}


def make_case(**overrides) -> Case:
    fields = {"model": "resnet18", "mode": "static_fx", "engine": "x86", "batch_size": 1, "threads": 1}
    fields.update(overrides)
    return Case(**fields)


def make_record(case: Case | None = None, *, samples=(0.010, 0.011, 0.012), size=1000, status="ok",
                run_id="run1", **overrides) -> RunRecord:
    metrics = {"latency": {"unit": "s", "samples": list(samples), "loops": 1, "warmup_rounds": 1},
               "size": {"state_dict_bytes": size, "parameters": 10, "modules_quantized": 1, "modules_float": 0},
               "memory": {"unit": "bytes", "peak_rss_build": 100, "peak_rss_run": 200}} if status == "ok" else {}
    fields = dict(run_id=run_id, record_id=uuid.uuid4().hex, case=case or make_case(), status=status,
                  suite={"name": "t"}, machine=MACHINE, environment=ENVIRONMENT,
                  qbench={"version": "0.1.0", "commit": "c" * 40, "dirty": False},
                  started_at="2026-11-22T10:00:00.000000Z", finished_at="2026-11-22T10:00:01.000000Z",
                  duration_s=1.0, metrics=metrics)
    if status != "ok":
        fields["reason"] = "because"
    fields.update(overrides)
    return RunRecord(**fields)
