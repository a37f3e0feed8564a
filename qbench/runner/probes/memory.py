"""Peak resident memory per phase of a worker (building the model, then running it).

On Linux the kernel's high-water mark (VmHWM) is read from /proc/self/status and reset between phases by writing
"5" to /proc/self/clear_refs; elsewhere the process-lifetime peak from getrusage is used and the method says so.
Current RSS comes from psutil."""

from __future__ import annotations

import resource
import sys
from pathlib import Path

import psutil

__all__ = ["PhasePeaks"]


class PhasePeaks:
    def __init__(self):
        self.method = "VmHWM+clear_refs" if self._can_reset() else "ru_maxrss (not reset between phases)"
        self.rss_start = psutil.Process().memory_info().rss
        self.peaks: dict[str, int] = {}
        self._reset()

    def end_phase(self, name: str) -> int:
        self.peaks[name] = self._peak()
        self._reset()
        return self.peaks[name]

    def as_metric(self) -> dict:
        return {"unit": "bytes", "rss_start": self.rss_start, "method": self.method,
                **{f"peak_rss_{name}": value for name, value in self.peaks.items()}}

    @staticmethod
    def _can_reset() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return "VmHWM" in Path("/proc/self/status").read_text()
        except OSError:
            return False

    def _reset(self) -> None:
        if self.method.startswith("VmHWM"):
            Path("/proc/self/clear_refs").write_text("5")

    def _peak(self) -> int:
        if self.method.startswith("VmHWM"):
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
