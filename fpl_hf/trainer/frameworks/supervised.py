"""Labeled images only: the baseline every semi-supervised method must beat."""

from __future__ import annotations

import torch


def step(trainer, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(pixel_values=batch["pixel_values"]).logits
    return trainer.supervised_loss(logits, batch["labels"])
