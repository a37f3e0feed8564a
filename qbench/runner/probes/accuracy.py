"""Accuracy of a case's model on its evaluation images: top-1/top-5 against labels when the images have them, and
always the label-free comparison with the fp32 parent on the same images (top-1 agreement, SQNR of the logits),
with the paired delta of top-1, its bootstrap interval and McNemar's test. evaluate_case() returns the
`metrics.accuracy` dict of a run record (docs/records.md).
"""

from __future__ import annotations

import contextlib
import math
import os

import torch

from qbench.stats.accuracy import discordant_counts, mcnemar_exact, paired_bootstrap_ci
from qbench.errors import ConfigError
from qbench.records import AccuracySpec
from qbench.runner.registry.engines import use_engine
from qbench.runner.registry.evalset import EvalSet, load_eval_set

__all__ = ["SQNR_CAP_DB", "TOP_K", "evaluation_threads", "logits_of", "paired_logits", "topk_correct", "agreement", "logits_agreement",
           "power_sums", "sqnr_from_powers", "sqnr_db",
           "evaluate_case"]

# SQNR of identical logits is infinite; JSON has no infinity, so it is recorded as this (and nothing exceeds it).
SQNR_CAP_DB = 200.0
TOP_K = 5


def _engine(engine: str | None):
    return use_engine(engine) if engine is not None else contextlib.nullcontext()


def _check_logits(logits: torch.Tensor, who: str) -> torch.Tensor:
    if logits.dim() != 2:
        raise RuntimeError(f"the {who} model's output has shape {tuple(logits.shape)}, not [images, classes]")
    if not torch.isfinite(logits).all():
        raise RuntimeError(f"the {who} model's logits hold NaN or Inf values on the evaluation images")
    return logits.float()


def evaluation_threads() -> int:
    """Threads an evaluation runs on: every core this process may use. Evaluating images is throughput work whose
    result does not depend on the case's `threads` (the latency setting), and it is most of a cold case's time."""
    return len(os.sched_getaffinity(0))


@contextlib.contextmanager
def _on_every_core():
    before = torch.get_num_threads()
    torch.set_num_threads(evaluation_threads())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def logits_of(model: torch.nn.Module, batches, *, engine: str | None = None) -> torch.Tensor:
    """[images, classes] float32 logits of `model` over `batches`, in inference mode under `engine`, on every core."""
    with _engine(engine), torch.inference_mode(), _on_every_core():
        return _check_logits(torch.cat([model(batch) for batch in batches]), "evaluated")


def paired_logits(model: torch.nn.Module, reference: torch.nn.Module | None, eval_set: EvalSet, *,
                  engine: str | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits of the model (under `engine`) and of its reference over the same batches, each batch loaded once."""
    outputs, references = [], []
    with torch.inference_mode(), _on_every_core():
        for batch in eval_set.batches():
            with _engine(engine):
                outputs.append(model(batch))
            if reference is not None:
                references.append(reference(batch))
    logits = _check_logits(torch.cat(outputs), "evaluated")
    return logits, None if reference is None else _check_logits(torch.cat(references), "fp32 reference")


def topk_correct(logits: torch.Tensor, labels, k: int) -> list[bool]:
    """Per image: is its label among the k highest logits (k capped at the number of classes)."""
    targets = torch.as_tensor(labels, dtype=torch.long).view(-1, 1)
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return (top == targets).any(dim=1).tolist()


def agreement(predictions, reference_predictions) -> float:
    """Fraction of images whose top-1 class equals the reference's."""
    predictions, reference_predictions = list(predictions), list(reference_predictions)
    if not predictions or len(predictions) != len(reference_predictions):
        raise ValueError(f"agreement needs equally long, non-empty predictions: {len(predictions)} vs "
                         f"{len(reference_predictions)}")
    return sum(a == b for a, b in zip(predictions, reference_predictions)) / len(predictions)


def power_sums(output: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    """(Σ reference², Σ (output - reference)²) in float64; a quantized tensor is dequantized first. Sums over
    several batches add up to the SQNR of all of them (`sqnr_from_powers`)."""
    output = output.dequantize() if output.is_quantized else output
    reference = reference.dequantize() if reference.is_quantized else reference
    if output.shape != reference.shape:
        raise ValueError(f"SQNR of tensors of different shapes: {tuple(output.shape)} vs {tuple(reference.shape)}")
    reference = reference.detach().double()
    return float(reference.pow(2).sum()), float((output.detach().double() - reference).pow(2).sum())


def sqnr_from_powers(signal: float, noise: float) -> float:
    """10·log10(signal / noise) clamped to ±SQNR_CAP_DB: no noise (identical tensors) gives +SQNR_CAP_DB, no
    signal (an all-zero reference) -SQNR_CAP_DB, so the stored figure is always a finite number."""
    if noise == 0:
        return SQNR_CAP_DB
    if signal == 0:
        return -SQNR_CAP_DB
    return max(-SQNR_CAP_DB, min(SQNR_CAP_DB, 10 * math.log10(signal / noise)))


def sqnr_db(output: torch.Tensor, reference: torch.Tensor) -> float:
    """The signal-to-quantization-noise ratio of `output` against `reference`, in dB (the one definition qbench
    records: float64 sums, clamped to ±SQNR_CAP_DB)."""
    return sqnr_from_powers(*power_sums(output, reference))


def logits_agreement(logits: torch.Tensor, reference_logits: torch.Tensor) -> float:
    """`agreement` of the top-1 classes of two logit tensors."""
    return agreement(logits.argmax(1).tolist(), reference_logits.argmax(1).tolist())


def _fraction(flags: list[bool]) -> float:
    return sum(flags) / len(flags)


def _check_labels(labels: tuple[int, ...], classes: int, identity: dict) -> None:
    largest = max(labels)
    if largest >= classes:
        raise ConfigError(f"evaluation label {largest} (labels {identity['labels']}) does not fit the model's "
                          f"{classes} outputs")


def _labelled(logits: torch.Tensor, labels, identity: dict) -> dict:
    _check_labels(labels, logits.shape[1], identity)
    return {"top1": topk_correct(logits, labels, 1), "top5": topk_correct(logits, labels, TOP_K)}


def _paired_stats(correct: list[bool], reference_correct: list[bool], seed: int) -> dict:
    gained, lost = discordant_counts(correct, reference_correct)
    low, high = paired_bootstrap_ci(correct, reference_correct, seed=seed)
    return {"delta_top1": (gained - lost) / len(correct), "delta_top1_ci": [low, high],
            "mcnemar_p": mcnemar_exact(gained, lost)}


def _metrics(logits: torch.Tensor, reference: torch.Tensor | None, eval_set: EvalSet, seed: int) -> dict:
    labels = eval_set.labels
    predictions = logits.argmax(dim=1).tolist()
    result = {"subset": dict(eval_set.identity), "threads": evaluation_threads(), "labelled": labels is not None,
              "top1": None, "top5": None,
              "reference": None, "delta_top1": None, "delta_top1_ci": None, "mcnemar_p": None,
              "agreement": None, "sqnr_db": None, "predictions": predictions, "reference_predictions": None,
              "labels": None if labels is None else list(labels)}
    own = None if labels is None else _labelled(logits, labels, eval_set.identity)
    if own is not None:
        result.update(top1=_fraction(own["top1"]), top5=_fraction(own["top5"]))
    if reference is None:
        return result
    reference_predictions = reference.argmax(dim=1).tolist()
    result.update(agreement=agreement(predictions, reference_predictions), sqnr_db=sqnr_db(logits, reference),
                  reference_predictions=reference_predictions)
    if own is not None:
        theirs = _labelled(reference, labels, eval_set.identity)
        result["reference"] = {"top1": _fraction(theirs["top1"]), "top5": _fraction(theirs["top5"])}
        result.update(_paired_stats(own["top1"], theirs["top1"], seed))
    return result


def evaluate_case(model: torch.nn.Module, reference: torch.nn.Module | None, spec: AccuracySpec, source, *,
                  engine: str | None, reference_logits=None, own_logits=None) -> dict | None:
    """The `metrics.accuracy` dict of `model` on the images `spec` describes for ModelSource `source`; None when
    spec.images is 0. `reference` is the fp32 parent (None for an fp32 case): it sees the same images, and the
    paired statistics (delta with its 95% bootstrap interval, seeded by spec.seed; McNemar) compare against it.
    The model runs under `engine` (None: the process's current engine). `reference_logits`, when given, is a
    function of the EvalSet returning the parent's logits (qbench.runner.reuse: computed once per model); `reference`
    is then not run. `own_logits`, likewise, returns `model`'s logits (an fp32 case's are its children's reference
    logits: computed once, qbench.runner.reuse); only for a case without a reference."""
    if spec.images == 0:
        return None
    eval_set = load_eval_set(spec, source)
    if own_logits is not None:
        if reference is not None or reference_logits is not None:
            raise ValueError("own_logits is for a case without a reference")
        return _metrics(_check_logits(own_logits(eval_set), "evaluated"), None, eval_set, spec.seed)
    if reference_logits is not None:
        logits = logits_of(model, eval_set.batches(), engine=engine)
        reference_logits = _check_logits(reference_logits(eval_set), "fp32 reference")
    else:
        logits, reference_logits = paired_logits(model, reference, eval_set, engine=engine)
    if reference_logits is not None and reference_logits.shape != logits.shape:
        raise RuntimeError(f"the model's logits {tuple(logits.shape)} and the fp32 reference's "
                           f"{tuple(reference_logits.shape)} differ in shape")
    return _metrics(logits, reference_logits, eval_set, spec.seed)
