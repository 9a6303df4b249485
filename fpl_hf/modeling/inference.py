"""Whole-image and sliding-window inference (the paper's evaluation protocol), with optional flip."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .segmentation_network import SegmentationNetwork
from .transformers_segmenter import as_segmenter

INFERENCE_MODES = ("whole", "slide")


def _forward(segment: Callable[[torch.Tensor], torch.Tensor], pixel_values: torch.Tensor, flip: bool) -> torch.Tensor:
    logits = segment(pixel_values)
    if flip:
        logits = (logits + segment(pixel_values.flip(-1)).flip(-1)) / 2
    return logits


def pad_to(tensor: torch.Tensor, height: int, width: int, value: float = 0.0) -> torch.Tensor:
    """Pads the last two dimensions right and bottom to `height` x `width`, so that cropping back is a slice.

    Zero, the default, is the mean colour of normalised images; label maps are padded with their ignore index.
    """
    return F.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]), value=value)


def window_stride(crop_size: int | None, stride: int | None = None) -> int:
    """The step of sliding `crop_size` windows: `stride`, or two thirds of the window rounded up (the Cityscapes
    recipe's 800 / 534). Raises where windows cannot cover the image."""
    if crop_size is None or crop_size < 1:
        raise ValueError("`crop_size` is required for sliding-window inference (e.g. 512 for VOC, 800 for Cityscapes).")
    stride = math.ceil(crop_size * 2 / 3) if stride is None else stride
    if not 1 <= stride <= crop_size:
        raise ValueError(
            f"The sliding-window stride must be in [1, crop size={crop_size}], got {stride}: windows would leave gaps."
        )
    return stride


def _starts(length: int, crop: int, stride: int) -> list[int]:
    starts = list(range(0, max(length - crop, 0) + 1, stride))
    if starts[-1] + crop < length:
        starts.append(length - crop)
    return starts


@torch.no_grad()
def predict_logits(
    model: SegmentationNetwork | nn.Module | Callable[[torch.Tensor], torch.Tensor],
    pixel_values: torch.Tensor,
    *,
    mode: str = "whole",
    crop_size: int | None = None,
    stride: int | None = None,
    flip: bool = False,
) -> torch.Tensor:
    """Logits (B, C, H, W) at the input's resolution.

    Args:
        model: a `SegmentationNetwork` (its `segment`: a single whole-image pass), a transformers segmentation
            model (its logits brought to the input size, `TransformersSegmenter`), or a function from pixel values to
            logits at the input size.
        mode: "whole" runs the image at once (DeepLabV3Plus pads it to its own stride); "slide" runs
            `crop_size` windows every `stride` pixels (default 2/3 of the crop, as the Cityscapes recipe's
            800/534) over the image padded to at least one crop, and averages overlapping logits.
        flip: also run the horizontally flipped image and average.
    """
    if mode not in INFERENCE_MODES:
        raise ValueError(f"`mode` must be one of {INFERENCE_MODES}, got {mode!r}.")
    segment = as_segmenter(model).segment if isinstance(model, nn.Module) else model
    height, width = pixel_values.shape[-2:]
    if mode == "whole":
        return _forward(segment, pixel_values, flip)
    stride = window_stride(crop_size, stride)
    padded = pad_to(pixel_values, max(height, crop_size), max(width, crop_size))
    total, counts = None, torch.zeros(padded.shape[-2:], device=padded.device)
    for top in _starts(padded.shape[-2], crop_size, stride):
        for left in _starts(padded.shape[-1], crop_size, stride):
            window = padded[..., top : top + crop_size, left : left + crop_size]
            logits = _forward(segment, window, flip).float()
            if total is None:
                total = torch.zeros(logits.shape[:2] + padded.shape[-2:], device=padded.device)
            total[..., top : top + crop_size, left : left + crop_size] += logits
            counts[top : top + crop_size, left : left + crop_size] += 1
    return (total / counts)[..., :height, :width]


__all__ = ["INFERENCE_MODES", "pad_to", "predict_logits", "window_stride"]
