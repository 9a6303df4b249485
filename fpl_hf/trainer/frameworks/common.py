"""What the framework steps share: CutMix on images and predictions, and how teachers predict."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

# (student logits, teacher logits, valid pixels, hidden labels): one term of a pseudo-label loss. The hidden
# labels (255 where unknown) serve the logged diagnostics only.
PseudoLabelPair = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def mix(background: torch.Tensor, foreground: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """`background` with `foreground` pasted where `box` (B, H, W) is 1; works on images, logits and masks."""
    box = box.to(background.dtype) if background.is_floating_point() else box.bool()
    if background.dim() == 4:
        box = box.unsqueeze(1)
    if background.is_floating_point():
        return background * (1 - box) + foreground * box
    return torch.where(box, foreground, background)


@contextmanager
def without_dropout(model: nn.Module) -> Iterator[None]:
    """Dropout off, BatchNorm untouched: a teacher pass in train mode gives deterministic targets while its
    BatchNorm uses (and updates) batch statistics, as the reference methods' teacher passes do."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.training]
    for module in dropouts:
        module.eval()
    try:
        yield
    finally:
        for module in dropouts:
            module.train()


@torch.no_grad()
def eval_mode_logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """A teacher's logits in eval mode: one plain whole-image pass, never the flip/slide inference protocol that
    the model's config may set for `pipeline`."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    was_training = model.training
    model.eval()
    try:
        return model.segment(pixel_values)
    finally:
        model.train(was_training)
