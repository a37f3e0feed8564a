"""Figures a case need not measure again, from a content-addressed store next to the artifact cache: the fp32
parent's logits on the evaluation images (once per model, not once per int8 case: the fp32 case's own logits are
they) and the deterministic
measurements: size and quantized-module coverage, and the accuracy figures (the model's logits on fixed images
under fixed kernels), once per model, mode, engine and qconfig whatever the batch; bytes moved and MACs once per
batch too. Latency and memory are measured in every process.

The store is an ArtifactCache (qbench.runner.artifacts) under `<artifact cache>/reuse`, so it has the same safety
rules: entries read only with torch.load(weights_only=True), written atomically under their content's sha256, a
damaged entry is a miss. A key is the sha256 of JSON naming everything the figure depends on: REUSE_VERSION, the
figure, model, weights identity, runner profile, threads, torch/torch_git/torchvision/torchao versions, qbench's
RECIPE_VERSION, the sha256 of qbench's worker code (qbench/runner/**/*.py and records.py: a changed probe or
recipe never serves an old figure, at the price of one re-measurement after each change), and per figure the evaluation set's identity and batch (reference logits), or mode, engine,
qconfig, calibration and QAT specs (size; plus the case's batch for traffic). The task's cache settings switch it:
`qbench run --no-cache` measures everything.

A record says what was reused: `details.reused = {figure: key}` (absent when nothing was), and
`details.reuse = {"enabled", "stored": {figure: key}, "warnings"}`.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import torch

from qbench.errors import StoreError, one_line
from qbench.launch.artifact_cache import RECIPE_VERSION, _weights_key, default_root, key_of

__all__ = ["REUSE_VERSION", "Reuse", "open_reuse", "worker_code_sha256"]

# Bump when what a reused figure means or how it is computed changes (size, traffic or the reference's logits).
REUSE_VERSION = 1
_VERSIONS = ("torch", "torch_git", "torchvision", "torchao")


@functools.cache
def worker_code_sha256() -> str:
    """sha256 over the relative paths and contents of qbench/runner/**/*.py and qbench/records.py."""
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*package.joinpath("runner").rglob("*.py"), package / "records.py"]):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class Reuse:
    """The reuse store for one case, or a disabled one (store None) that only says so."""

    def __init__(self, case, source, store=None, versions: dict | None = None, timer=None):
        self.case, self.source, self.store, self.timer = case, source, store, timer
        self.versions = {name: (versions or {}).get(name) for name in _VERSIONS}
        self.reused: dict[str, str] = {}
        self.stored: dict[str, str] = {}
        self.warnings: list[str] = []

    @property
    def enabled(self) -> bool:
        return self.store is not None

    def _identity(self, figure: str, **fields) -> dict:
        case = self.case
        return {"reuse_version": REUSE_VERSION, "recipe_version": RECIPE_VERSION, "figure": figure,
                "model": case.model, "weights": _weights_key(case, self.source.weights_info()),
                "runner": case.runner, "threads": case.threads, "versions": self.versions,
                "code": worker_code_sha256(), **fields}

    def _recipe(self) -> dict:
        case = self.case
        return {"mode": case.mode, "engine": case.engine, "qconfig": case.qconfig,
                "calibration": case.calibration.to_dict(), "qat": None if case.qat is None else case.qat.to_dict()}

    def _get(self, figure: str, identity: dict):
        key = key_of(identity)
        if self.store is None:
            return key, None
        entry = self.store.get(key)
        self.warnings.extend(self.store.warnings)
        self.store.warnings.clear()
        if entry is None or set(entry) != {"value"}:
            return key, None
        self.reused[figure] = key
        return key, entry["value"]

    def _put(self, figure: str, key: str, identity: dict, value) -> None:
        if self.store is None:
            return
        try:
            self.store.put(key, {"value": value}, {"identity": identity, "case_id": self.case.case_id})
        except StoreError as exc:
            self.warnings.append(f"reuse store: {figure} not stored: {one_line(exc)}")
        else:
            self.stored[figure] = key

    def figure(self, figure: str, compute, **fields):
        """The figure from the store when it holds this key, else compute() (then stored). `fields` add to the
        key what this figure depends on beyond the model and the case's recipe."""
        identity = self._identity(figure, recipe=self._recipe(), **fields)
        key, value = self._timed(lambda: self._get(figure, identity))
        if value is not None:
            return value
        value = compute()
        self._timed(lambda: self._put(figure, key, identity, value))
        return value

    def eval_set_identity(self, spec) -> dict | None:
        """The identity of the case's evaluation images (None when reuse is off: nothing is keyed then)."""
        if self.store is None:
            return None
        from qbench.runner.registry.evalset import load_eval_set

        with self._phase("reuse_store"):
            return dict(load_eval_set(spec, self.source).identity)

    def reference_logits(self, eval_set, batch_size: int, model: torch.nn.Module | None = None) -> torch.Tensor:
        """The fp32 parent's [images, classes] logits on `eval_set`: stored, or computed by running `model` (an fp32
        case's own model, which is the parent), else the parent built here (source.float_model()), over the
        images."""
        from qbench.runner.probes.accuracy import logits_of

        identity = self._identity("reference_logits", eval_set=dict(eval_set.identity), batch_size=batch_size)
        key, value = self._timed(lambda: self._get("reference_logits", identity))
        if isinstance(value, torch.Tensor):
            return value
        self.reused.pop("reference_logits", None)
        with self._phase("reference_logits"):
            value = logits_of(model if model is not None else self.source.float_model(), eval_set.batches(),
                              engine=None)
        self._timed(lambda: self._put("reference_logits", key, identity, value))
        return value

    def _phase(self, name: str):
        import contextlib

        return self.timer(name) if self.timer is not None else contextlib.nullcontext()

    def _timed(self, action):
        with self._phase("reuse_store"):
            return action()

    def details(self) -> dict:
        """What goes into a record's details: {"reused": ...} when something was, and "reuse"."""
        out = {"reuse": {"enabled": self.enabled, "stored": dict(self.stored), "warnings": list(self.warnings)}}
        if self.reused:
            out["reused"] = dict(self.reused)
        return out


def open_reuse(case, source, task: dict, timer=None) -> Reuse:
    """The case's Reuse: enabled when the task's artifact cache is (`--no-cache` turns both off)."""
    settings = task.get("cache") or {}
    if not settings.get("enabled"):
        return Reuse(case, source, timer=timer)
    from qbench.runner.artifacts import ArtifactCache
    from qbench.runner.environment import collect_environment

    env = collect_environment()
    root = Path(settings["dir"]).expanduser() if settings.get("dir") else default_root()
    return Reuse(case, source, ArtifactCache(root / "reuse"), versions=env, timer=timer)
