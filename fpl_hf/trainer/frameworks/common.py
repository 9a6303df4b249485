"""CutMix on images and predictions, shared by the frameworks."""

from __future__ import annotations

import torch


def mix(background: torch.Tensor, foreground: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """`background` with `foreground` pasted where `box` (B, H, W) is 1; works on images, logits and masks."""
    box = box.to(background.dtype) if background.is_floating_point() else box.bool()
    if background.dim() == 4:
        box = box.unsqueeze(1)
    if background.is_floating_point():
        return background * (1 - box) + foreground * box
    return torch.where(box, foreground, background)
