"""`python -m qbench.report.asv_main publish --config …`: asv's own command line, with one fix to `asv publish`.

asv 0.6's `Graph.get_steps` walks every series of a graph to resolve its step fits on each call, and the
"Benchmark list" page (asv.plugins.summarylist) calls it once per parameter combination per graph. A benchmark of
qbench's exported history has one series per case (~4,000 combinations on the nightly grid), so that page costs
combinations² × graphs: for 30 nightlies' graphs of the commits view, asv publish had not finished after 17
minutes. Here the first call resolves the fits as asv does and later calls return them directly, which is what asv
would return (the fits are resolved once and then only read). Only asv 0.6.x is patched; any other asv runs as it is.
"""

from __future__ import annotations

import sys

__all__ = ["patch_get_steps", "main"]


def patch_get_steps() -> bool:
    """Make Graph.get_steps resolve once; False (nothing patched) when this is not asv 0.6."""
    import asv
    from asv.graph import Graph

    if not asv.__version__.startswith("0.6.") or getattr(Graph.get_steps, "qbench_patched", False):
        return False
    resolve = Graph.get_steps

    def get_steps(self):
        if not getattr(self, "_qbench_steps_resolved", False):
            steps = resolve(self)
            self._qbench_steps_resolved = True
            return steps
        return self._steps[0] if self.scalar_series else self._steps

    get_steps.qbench_patched = True
    Graph.get_steps = get_steps
    return True


def main(argv: list[str] | None = None) -> int:
    from asv.main import main as asv_main

    patch_get_steps()
    sys.argv = ["asv", *(sys.argv[1:] if argv is None else argv)]
    return asv_main()


if __name__ == "__main__":
    raise SystemExit(main())
