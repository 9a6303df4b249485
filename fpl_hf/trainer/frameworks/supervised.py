"""Labeled images only: the baseline every semi-supervised method must beat, and every framework's burn-in."""

from __future__ import annotations

import torch


def step(trainer, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    outputs = model(pixel_values=batch["pixel_values"])
    # A CPS `BranchPair` returns both branches' logits: burn-in trains each on the labels.
    logits = outputs if isinstance(outputs, tuple) else (outputs.logits,)
    sup = sum(trainer.supervised_loss(branch_logits, batch["labels"]) for branch_logits in logits)
    trainer.record(sup=sup)
    return sup
