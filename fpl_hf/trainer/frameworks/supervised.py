"""Labeled images only: the baseline every semi-supervised method must beat, and every framework's burn-in."""

from __future__ import annotations

import torch
from torch import nn

from .base import Framework, SemiSupervisedBatch, StepContext, register


def step(context: StepContext, model: nn.Module, batch: SemiSupervisedBatch) -> torch.Tensor:
    outputs = model(pixel_values=batch["pixel_values"])
    # A CPS `BranchPair` returns both branches' logits: burn-in trains each on the labels.
    logits = outputs if isinstance(outputs, tuple) else (outputs.logits,)
    sup = sum(context.supervised_loss(branch_logits, batch["labels"]) for branch_logits in logits)
    context.record(sup=sup)
    return sup


FRAMEWORK = register(Framework(
    name="supervised",
    step=step,
    description="trained on the labeled images alone (the baseline)",
    unlabeled=False,
    cutmix_masks=0,
))
