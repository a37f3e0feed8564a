"""Wall seconds per phase of one case in the worker, so that a record says where its time went: every phase the
worker runs (kernel probe, opening the model, building it, size, latency, traffic, accuracy, the fp32 reference's
logits, ...), not only the recipe's steps. The recipe's own steps (prepare, calibrate, convert, compile, cache_load)
are nested inside "build" and keep their names; `PhaseTimer.record()` merges both into the `details.phases_s` of a
record and names the nesting in `details.phases_nested`, so a reader that sums phases does not count a step twice.

No torch here: the clock is a seam for tests.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

__all__ = ["PhaseTimer", "WORKER_PHASES"]

# The worker's phases in the order they run; a case that skips one (fp32 has no reference) records no entry for it.
WORKER_PHASES = ("imports", "probe", "open_model", "build", "size", "check_output", "latency", "traffic",
                 "accuracy", "reference_logits", "reuse_store")


class PhaseTimer:
    """Accumulates wall seconds per named phase; a phase timed twice adds up. `total` runs from construction."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self._clock = clock
        self._began = clock()
        self.phases: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = self._clock()
        try:
            yield
        finally:
            self.add(name, self._clock() - start)

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def moved(self, inner: str, outer: str, seconds: float) -> None:
        """`seconds` of phase `outer` were spent in `inner` (timed inside it): book them under `inner` only."""
        self.add(inner, seconds)
        self.phases[outer] = self.phases.get(outer, 0.0) - seconds

    def record(self, recipe_steps: dict | None = None) -> tuple[dict, dict]:
        """(phases_s, phases_nested): the worker's phases, "total" and "other" (what no phase covered), plus the
        recipe's steps; nested = {"build": [recipe step names]}."""
        total = self._clock() - self._began
        phases = {name: round(seconds, 6) for name, seconds in self.phases.items()}
        phases["other"] = round(max(0.0, total - sum(self.phases.values())), 6)
        phases["total"] = round(total, 6)
        steps = {name: round(seconds, 6) for name, seconds in (recipe_steps or {}).items() if name not in phases}
        return {**phases, **steps}, {"build": sorted(steps)}
