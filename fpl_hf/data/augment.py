"""Joint image/mask augmentation (torchvision.transforms.v2) and CutMix box masks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from .normal_form import IGNORE_INDEX


class RandomScale(v2.Transform):
    """Resizes image and masks together by a factor drawn from `scale_range` (masks with nearest)."""

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0)):
        super().__init__()
        self.scale_range = scale_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale_range
        factor = low + (high - low) * torch.rand(()).item()
        return {"size": [max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            # torchvision's default "nearest" samples half a pixel off; nearest-exact keeps masks on the image.
            return TF.resize(inpt, size=params["size"], interpolation=v2.InterpolationMode.NEAREST_EXACT)
        return self._call_kernel(TF.resize, inpt, size=params["size"], antialias=True)


def weak_augmentation(crop_size: int, scale_range: tuple[float, float] = (0.5, 2.0)) -> v2.Compose:
    """Random scale, crop with padding (image 0, masks 255), horizontal flip."""
    return v2.Compose(
        [
            RandomScale(scale_range),
            v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
            v2.RandomHorizontalFlip(),
        ]
    )


def strong_augmentation() -> v2.Compose:
    """Photometric perturbations of the image alone (masks pass through unchanged)."""
    return v2.Compose(
        [
            v2.RandomApply([v2.ColorJitter(0.5, 0.5, 0.5, 0.25)], p=0.8),
            v2.RandomGrayscale(p=0.2),
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 2.0))], p=0.5),
        ]
    )


def normalize_images(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (..., 3, H, W) as the network takes them: float32, scaled to [0, 1], minus `mean`, over `std`."""
    return TF.normalize(TF.to_dtype(images, torch.float32, scale=True), list(mean), list(std))


def cutmix_mask(
    height: int,
    width: int,
    *,
    num_boxes: int = 1,
    area_range: tuple[float, float] = (0.02, 0.4),
    aspect_range: tuple[float, float] = (0.3, 1 / 0.3),
    probability: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A (H, W) float mask, 1 inside `num_boxes` random boxes whose areas add up to a share in `area_range`.

    CPS: 3 boxes, share in (0.25, 0.5); UniMatch: 1 box, share in (0.02, 0.4), applied with probability 0.5.
    """
    mask = torch.zeros(height, width)
    if torch.rand((), generator=generator).item() >= probability:
        return mask
    low, high = area_range
    share = low + (high - low) * torch.rand((), generator=generator).item()
    for _ in range(num_boxes):
        area = share / num_boxes * height * width
        log_low, log_high = math.log(aspect_range[0]), math.log(aspect_range[1])
        aspect = math.exp(log_low + (log_high - log_low) * torch.rand((), generator=generator).item())
        box_h = min(height, max(1, round(math.sqrt(area * aspect))))
        box_w = min(width, max(1, round(area / box_h)))
        top = int(torch.randint(0, height - box_h + 1, (), generator=generator))
        left = int(torch.randint(0, width - box_w + 1, (), generator=generator))
        mask[top : top + box_h, left : left + box_w] = 1
    return mask


__all__ = ["RandomScale", "weak_augmentation", "strong_augmentation", "normalize_images", "cutmix_mask"]
