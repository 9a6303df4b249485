"""Joint image/mask augmentation (torchvision.transforms.v2) and CutMix box masks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..modeling.image_processing_timm_segmentation import grey
from .normal_form import IGNORE_INDEX


class JointResize(v2.Transform):
    """Resizes image and masks together to the `size` its subclass's `make_params` draws (masks with nearest)."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            # torchvision's default "nearest" samples half a pixel off; nearest-exact keeps masks on the image.
            return TF.resize(inpt, size=params["size"], interpolation=v2.InterpolationMode.NEAREST_EXACT)
        return self._call_kernel(TF.resize, inpt, size=params["size"], antialias=True)


class RandomScale(JointResize):
    """Resizes image and masks together by a factor drawn from `scale_range` (masks with nearest)."""

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0)):
        super().__init__()
        self.scale_range = scale_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale_range
        factor = low + (high - low) * torch.rand(()).item()
        return {"size": [max(1, int(height * factor + 0.5)), max(1, int(width * factor + 0.5))]}


class ResizeLongestSide(JointResize):
    """Resizes image and masks together so that the longer side is `size` pixels (masks with nearest)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"size": longest_side_size(v2.query_size(flat_inputs), self.size)}


def longest_side_size(size: Sequence[int], longest_side: int) -> list[int]:
    """(height, width) of an image of `size` resized, aspect kept, so that its longer side is `longest_side`."""
    height, width = size
    factor = longest_side / max(height, width)
    return [max(1, round(height * factor)), max(1, round(width * factor))]


def weak_augmentation(
    crop_size: int,
    scale_range: tuple[float, float] = (0.5, 2.0),
    *,
    image_size: int | None = None,
    rotation_degrees: float = 0.0,
    horizontal_flip: bool = True,
) -> v2.Compose:
    """Resize to `image_size` (longer side; None: as it is), random scale, rotation by up to `rotation_degrees`,
    crop with padding (image 0, masks 255), horizontal flip.

    With `image_size` = `crop_size` and a scale range about 1, a crop holds the whole image (whole-slice views)."""
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}
    return v2.Compose(
        [
            *([ResizeLongestSide(image_size)] if image_size else []),
            RandomScale(scale_range),
            *([v2.RandomRotation(rotation_degrees, fill=fill)] if rotation_degrees else []),
            v2.RandomCrop(crop_size, pad_if_needed=True, fill=fill),
            *([v2.RandomHorizontalFlip()] if horizontal_flip else []),
        ]
    )


class RandomIntensity(v2.Transform):
    """Grey-level perturbations of a uint8 image alone (masks pass through): gamma in `gamma_range`, then Gaussian
    noise of a standard deviation drawn up to `max_noise` (a share of 255)."""

    def __init__(self, gamma_range: tuple[float, float] = (0.7, 1.5), max_noise: float = 0.05):
        super().__init__()
        self.gamma_range, self.max_noise = gamma_range, max_noise

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        low, high = (math.log(bound) for bound in self.gamma_range)
        gamma = math.exp(low + (high - low) * torch.rand(()).item())
        return {"gamma": gamma, "noise": self.max_noise * torch.rand(()).item()}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        image = TF.adjust_gamma(TF.to_dtype(inpt, torch.float32, scale=True), params["gamma"])
        image = image + params["noise"] * torch.randn(image.shape[-2:])  # one field for every channel: grey stays grey
        return tv_tensors.wrap(TF.to_dtype(image.clamp(0, 1), torch.uint8, scale=True), like=inpt)


STRONG_VIEW_KINDS = ("color", "intensity")


def strong_augmentation(kind: str = "color") -> v2.Compose:
    """Photometric perturbations of the image alone (masks pass through unchanged).

    "color": colour jitter, greyscale, blur (UniMatch's); "intensity": for grey images (MRI, CT, X-ray), brightness
    and contrast jitter, gamma, noise and blur, with nothing that hue or saturation would change."""
    if kind not in STRONG_VIEW_KINDS:
        raise ValueError(f"The strong views must be one of {STRONG_VIEW_KINDS}, got {kind!r}.")
    blur = v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 2.0))], p=0.5)
    if kind == "intensity":
        return v2.Compose(
            [v2.RandomApply([v2.ColorJitter(0.5, 0.5)], p=0.8), v2.RandomApply([RandomIntensity()], p=0.8), blur]
        )
    return v2.Compose([v2.RandomApply([v2.ColorJitter(0.5, 0.5, 0.5, 0.25)], p=0.8), v2.RandomGrayscale(p=0.2), blur])


def normalize_images(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (..., 3, H, W) as the network takes them: float32, scaled to [0, 1], minus `mean`, over `std`.

    With one `mean` and `std` (a one-channel network) colour images become grey first (`grey`)."""
    images = TF.to_dtype(images, torch.float32, scale=True)
    if len(mean) == 1 and images.shape[-3] == 3:
        images = grey(images)
    return TF.normalize(images, list(mean), list(std))


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


__all__ = [
    "STRONG_VIEW_KINDS",
    "RandomIntensity",
    "RandomScale",
    "ResizeLongestSide",
    "cutmix_mask",
    "longest_side_size",
    "normalize_images",
    "strong_augmentation",
    "weak_augmentation",
]
