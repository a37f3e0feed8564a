"""One run's lifecycle, the same for every command that measures: a run id and context, a header, each record
appended (and fsync'd) as it finishes, and a footer with the counts. SIGTERM (a CI time limit) unwinds like Ctrl-C,
and either seals the file as interrupted, keeping every record already written."""

from __future__ import annotations

import signal
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qbench.history.resume import ResumedWriter
from qbench.history.store import RunWriter, utc_now
from qbench.launch.provenance import qbench_provenance
from qbench.records import RunRecord

__all__ = ["OpenRun", "open_run", "run_context", "sigterm_as_interrupt"]


def run_context(suite: dict, machine: dict) -> dict:
    """What every record of one run shares: its id, the suite's identity, the machine and qbench's provenance."""
    return {"run_id": uuid.uuid4().hex, "suite": suite, "machine": machine, "qbench": qbench_provenance()}


class OpenRun:
    """A run being recorded; `append` is what Session.run calls with each finished record."""

    def __init__(self, context: dict, writer: RunWriter | None, started_at: str):
        self.context, self.writer, self.started_at = context, writer, started_at
        self.records: list[RunRecord] = []
        self.path: Path | None = None
        self.interrupted = False

    @property
    def run_id(self) -> str:
        return self.context["run_id"]

    def append(self, record: RunRecord) -> None:
        if self.writer is not None:
            self.writer.append(record)
        self.records.append(record)

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.status for r in self.records))

    def _seal(self, interrupted: bool) -> None:
        self.interrupted = interrupted
        if self.writer is not None and self.path is None:
            self.path = self.writer.finish({"run_id": self.run_id, "finished_at": utc_now(),
                                            "interrupted": interrupted, "counts": self.counts()})


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt, so cleanup runs as for Ctrl-C (main thread only)."""
    def _raise(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, _raise)
    except ValueError:  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def open_run(suite: dict, machine: dict, results: Path | str | None, *, context: dict | None = None,
             started_at: str | None = None, resume=None, **header) -> Iterator[OpenRun]:
    """Record one run in `results` (nothing is written when it is None). `header` adds fields to the run's first
    line (argv is added). `resume` (a qbench.history.resume.Resumable) continues that run in its own file instead:
    its id, header and records are kept. On leaving the block the file is sealed; on KeyboardInterrupt or SIGTERM
    it is sealed as interrupted and the interrupt goes on."""
    if resume is not None:
        writer = ResumedWriter(resume, utc_now())
        context = {**(context or run_context(suite, machine)), "run_id": writer.header["run_id"]}
        run = OpenRun(context, writer, writer.header["started_at"])
        run.records.extend(writer.kept)
    else:
        context = context or run_context(suite, machine)
        started_at = started_at or utc_now()
        writer = None
        if results is not None:
            writer = RunWriter(Path(results), machine, {**context, "started_at": started_at, "argv": sys.argv[1:],
                                                        **header})
        run = OpenRun(context, writer, started_at)
    with sigterm_as_interrupt():
        try:
            yield run
        except KeyboardInterrupt:
            run._seal(interrupted=True)
            raise
        run._seal(interrupted=False)
