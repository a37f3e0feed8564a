"""QAT fine-tuning of the qat mode: distil the fp32 parent's logits into the fake-quantized model with SGD.

The calibration images are unlabelled, so the loss is the mean squared error between the fake-quantized model's
logits and its fp32 parent's logits on the same batch (MSE rather than KL of softmaxes: random-weight models have
near-uniform softmaxes, whose KL has almost no gradient).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from qbench.errors import ConfigError
from qbench.records import QAT_SCHEDULES, QatSpec

__all__ = ["QAT_LOSS", "QAT_SCHEDULES", "check_qat_spec", "finetune"]

QAT_LOSS = "mse(logits, fp32 parent logits)"


def check_qat_spec(spec: QatSpec) -> None:
    if spec.schedule not in QAT_SCHEDULES:
        raise ConfigError(f"qat schedule {spec.schedule!r} is unknown; allowed: {', '.join(QAT_SCHEDULES)}")
    if spec.steps < 0 or spec.lr <= 0 or spec.momentum < 0:
        raise ConfigError(f"qat needs steps >= 0, lr > 0 and momentum >= 0 (got {spec})")


def _distillation_loss(model: nn.Module, batches: list, targets: list) -> float:
    """Mean distillation loss over every batch, without training (observers still run unless disabled)."""
    with torch.no_grad():
        return sum(nn.functional.mse_loss(model(b), t).item() for b, t in zip(batches, targets)) / len(batches)


def _finite(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise RuntimeError(f"qat diverged: loss {value} {where}; lower the suite's [qat] lr")
    return value


def finetune(model: nn.Module, teacher: nn.Module, batches: list, spec: QatSpec) -> dict:
    """`spec.steps` SGD steps on the batches (cycled), distilling the teacher's logits; returns the notes. With
    0 steps the observers only see one pass over the batches (used to rebuild a cached model's skeleton)."""
    from torch.ao.nn.intrinsic.qat import freeze_bn_stats
    from torch.ao.quantization import disable_observer

    with torch.no_grad():
        targets = [teacher(batch) for batch in batches]
    model.eval()
    loss_start = _finite(_distillation_loss(model, batches, targets), "before training")  # also calibrates
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.lr, momentum=spec.momentum)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, spec.steps)) if spec.schedule == "cosine" \
        else torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0)
    model.train()
    losses, lrs = [], []
    for step in range(spec.steps):
        if step == spec.freeze_observers_after:
            model.apply(disable_observer)
        if step == spec.freeze_bn_after:
            model.apply(freeze_bn_stats)
        loss = nn.functional.mse_loss(model(batches[step % len(batches)]), targets[step % len(batches)])
        optimizer.zero_grad()
        loss.backward()
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
        losses.append(_finite(loss.item(), f"at step {step}"))
    model.apply(disable_observer)
    model.eval()
    loss_end = _finite(_distillation_loss(model, batches, targets), "after training")
    return {"qat_path": "prepare_qat_fx", "loss": QAT_LOSS, "steps": spec.steps, "schedule": spec.schedule,
            "loss_start": loss_start, "loss_end": loss_end,
            "loss_first_step": losses[0] if losses else None,
            "loss_last_step": losses[-1] if losses else None, "lr_first_step": lrs[0] if lrs else None,
            "lr_last_step": lrs[-1] if lrs else None}
