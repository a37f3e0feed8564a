"""A failed case's record must say where in qbench it failed: the error tail keeps qbench's own frames even when
a deep library stack (torch, inductor) fills the lines it keeps."""

from __future__ import annotations

import json

from qbench.runner.worker import TAIL_LINES, execute


def _library_call(depth: int) -> None:
    """Stands for a deep torch/inductor stack below qbench's frames (frames outside the qbench package); it
    alternates with _library_step, since Python folds a frame repeated in a row into one line."""
    if depth == 0:
        raise RuntimeError("CppCompileError: no aarch64 compiler")
    _library_step(depth - 1)


def _library_step(depth: int) -> None:
    _library_call(depth)


def fails_deep_in_a_library(task: dict) -> dict:
    _library_call(TAIL_LINES)
    return {"status": "ok"}


def test_a_failures_error_tail_keeps_qbenchs_frames_above_a_deep_library_stack(tmp_path):
    task, result = tmp_path / "task.json", tmp_path / "result.json"
    task.write_text(json.dumps({"entry": f"{__name__}:fails_deep_in_a_library"}))
    assert execute(str(task), str(result)) == 0
    payload = json.loads(result.read_text())
    assert payload["status"] == "failed"
    assert payload["reason"] == "RuntimeError: CppCompileError: no aarch64 compiler"
    tail = payload["error_tail"].splitlines()
    assert tail[0] == "qbench frames (innermost last):"
    assert any("qbench/runner/worker.py" in line and "in execute" in line for line in tail[1:4]), tail[:4]
    assert tail[-1] == "RuntimeError: CppCompileError: no aarch64 compiler"
    assert len([line for line in tail if "in _library_" in line]) >= TAIL_LINES // 2 - 1


def shallow_failure(task: dict) -> dict:
    raise ValueError("bad value")


def test_a_short_traceback_is_kept_whole_without_a_frames_header(tmp_path):
    task, result = tmp_path / "task.json", tmp_path / "result.json"
    task.write_text(json.dumps({"entry": f"{__name__}:shallow_failure"}))
    execute(str(task), str(result))
    tail = json.loads(result.read_text())["error_tail"]
    assert tail.startswith("Traceback (most recent call last):")
    assert "qbench frames" not in tail and "in execute" in tail
