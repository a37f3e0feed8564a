"""Killing a worker and everything it started: the launcher's timeouts and the zygote's orphaned children."""

from __future__ import annotations

import os
import signal

__all__ = ["kill_group"]


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by pid (workers lead their own), else the process alone; gone is fine."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
            return
        except (ProcessLookupError, PermissionError):
            continue
