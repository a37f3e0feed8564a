"""asv track_ benchmarks over the quick suite's grid: its models × modes on its engine (x86), with the cases that
suites/quick.toml defines (same calibration, batch, threads and weights, so the same case identities), measured
through qbench.api.measure_cases with small measure settings.

asv calls a class's `setup_cache` once and passes what it returns to every benchmark of the class, so each model's
cases are measured once and every track_ method reads one metric of the same records (qbench.metrics, reduced to a
point as exported `qbench run` history is, by qbench.report.asv_export). asv keys that cache by the line `setup_cache` is
written on, which is why each model class spells out its own. A case qbench skips is n/a in asv; a failed one fails.
"""

from pathlib import Path

from qbench.api import measure_cases
from qbench.report.asv_export import asv_unit, metric_samples, metric_value
from qbench.metrics import METRICS
from qbench.records import ENGINELESS_MODES, Case, MeasureSpec
from qbench.suite.load import load_suite

__all__ = ["Resnet18", "Resnet50", "MobilenetV2"]

SUITE = load_suite(str(Path(__file__).resolve().parent.parent / "suites" / "quick.toml"))
MATRIX = SUITE.matrices[0]
MEASURE = MeasureSpec(warmup_rounds=1, min_time_s=0.2, min_rounds=5, timeout_s=SUITE.measure.timeout_s)


def _case(model: str, mode: str, engine: str) -> Case:
    return Case(model=model, mode=mode, engine=None if mode in ENGINELESS_MODES else engine,
                batch_size=MATRIX.batch_sizes[0], threads=MATRIX.threads[0], weights=MATRIX.weights[0],
                calibration=SUITE.calibration)


class _QuickModel:
    """One model of the quick suite; a subclass names it and defines setup_cache."""

    model = ""
    params = (list(MATRIX.modes), list(MATRIX.engines))
    param_names = ("mode", "engine")
    timeout = 900.0

    def measure(self) -> dict:
        grid = {(mode, engine): _case(self.model, mode, engine) for mode in MATRIX.modes for engine in MATRIX.engines}
        cases = list(dict.fromkeys(grid.values()))
        records = {r.case: r for r in measure_cases(cases, MEASURE, suite_name=f"asv-{SUITE.name}",
                                                           accuracy=SUITE.accuracy)}
        return {key: records[case] for key, case in grid.items()}

    def setup(self, records, mode, engine):
        record = records[(mode, engine)]
        if record.status == "skipped":
            raise NotImplementedError(record.reason)
        if record.status != "ok":
            raise RuntimeError(f"{record.case_id} {record.status}: {record.reason}\n{record.error_tail or ''}")

    def track_latency(self, records, mode, engine):
        return _value(records[(mode, engine)], "latency")

    def track_throughput(self, records, mode, engine):
        return _value(records[(mode, engine)], "throughput")

    def track_memory(self, records, mode, engine):
        return _value(records[(mode, engine)], "memory")

    def track_size(self, records, mode, engine):
        return _value(records[(mode, engine)], "size")

    def track_bytes_moved(self, records, mode, engine):
        return _value(records[(mode, engine)], "bytes_moved")

    def track_bandwidth(self, records, mode, engine):
        return _value(records[(mode, engine)], "bandwidth")

    def track_agreement(self, records, mode, engine):
        return _value(records[(mode, engine)], "agreement")

    def track_sqnr(self, records, mode, engine):
        return _value(records[(mode, engine)], "sqnr")

    def track_top1(self, records, mode, engine):
        return _value(records[(mode, engine)], "top1")

    track_latency.unit = asv_unit(METRICS["latency"])
    track_throughput.unit = asv_unit(METRICS["throughput"])
    track_memory.unit = asv_unit(METRICS["memory"])
    track_size.unit = asv_unit(METRICS["size"])
    track_bytes_moved.unit = asv_unit(METRICS["bytes_moved"])
    track_bandwidth.unit = asv_unit(METRICS["bandwidth"])
    track_agreement.unit = asv_unit(METRICS["agreement"])
    track_sqnr.unit = asv_unit(METRICS["sqnr"])
    track_top1.unit = asv_unit(METRICS["top1"])


def _value(record, metric: str) -> float | None:
    return metric_value(metric_samples(record, METRICS[metric]))


class Resnet18(_QuickModel):
    model = "resnet18"

    def setup_cache(self):
        return self.measure()


class Resnet50(_QuickModel):
    model = "resnet50"

    def setup_cache(self):
        return self.measure()


class MobilenetV2(_QuickModel):
    model = "mobilenet_v2"

    def setup_cache(self):
        return self.measure()
