"""Labeled images only: the baseline every semi-supervised method must beat, and every framework's burn-in."""

from __future__ import annotations

import torch
from torch import nn

from .base import Framework, SemiSupervisedBatch, StepContext, register_framework


def step(context: StepContext, model: nn.Module, batch: SemiSupervisedBatch) -> torch.Tensor:
    sup = context.supervised_loss(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])
    context.record(sup=sup)
    return sup


FRAMEWORK = register_framework(
    Framework(
        name="supervised",
        step=step,
        description="trained on the labeled images alone (the baseline)",
        unlabeled=False,
        cutmix_masks=0,
    )
)
