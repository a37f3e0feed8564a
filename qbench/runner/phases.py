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
    """Accumulates exclusive wall and process-CPU seconds per named phase: a phase timed inside another is booked
    under the inner name only (the outer one gets the rest), and a phase timed twice adds up. `total` runs from
    construction. CPU time (all threads of the process) next to wall time shows how much of a phase a loaded machine
    spent descheduled."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.process_time):
        self._clock, self._cpu_clock = clock, cpu_clock
        self._began, self._cpu_began = clock(), cpu_clock()
        self._inner: list[list[float]] = []  # per open phase: [wall, cpu] seconds its nested phases took
        self.phases: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start, cpu_start = self._clock(), self._cpu_clock()
        self._inner.append([0.0, 0.0])
        try:
            yield
        finally:
            elapsed, cpu = self._clock() - start, self._cpu_clock() - cpu_start
            nested = self._inner.pop()
            self.add(name, elapsed - nested[0], cpu - nested[1])
            if self._inner:
                self._inner[-1][0] += elapsed
                self._inner[-1][1] += cpu

    def add(self, name: str, seconds: float, cpu_seconds: float = 0.0) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + seconds
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu_seconds

    def record(self, recipe_steps: dict | None = None) -> tuple[dict, dict, dict]:
        """(phases_s, phases_cpu_s, phases_nested): the worker's phases with "total" and "other" (what no phase
        covered), wall seconds plus the recipe's steps, and CPU seconds; nested = {"build": [recipe step names]}."""
        total, cpu_total = self._clock() - self._began, self._cpu_clock() - self._cpu_began
        phases = {name: round(seconds, 6) for name, seconds in self.phases.items()}
        phases["other"] = round(max(0.0, total - sum(self.phases.values())), 6)
        phases["total"] = round(total, 6)
        cpu = {name: round(seconds, 6) for name, seconds in self.cpu.items()}
        cpu["other"] = round(max(0.0, cpu_total - sum(self.cpu.values())), 6)
        cpu["total"] = round(cpu_total, 6)
        steps = {name: round(seconds, 6) for name, seconds in (recipe_steps or {}).items() if name not in phases}
        return {**phases, **steps}, cpu, {"build": sorted(steps)}
