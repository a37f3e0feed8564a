"""asv benchmarks for qbench (asv.conf.json at the top of the repository). Thin wrappers: every number comes from
qbench's own worker path (qbench.api.measure_cases), never from a second measurement implementation."""

__all__: list[str] = []
