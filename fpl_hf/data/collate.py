"""Batches: images of different sizes padded together, and the unlabeled groups of training items made into rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..modeling.inference import pad_to
from .augment import normalize_images
from .normal_form import IGNORE_INDEX

# The fields of a batch that hold images, and those that hold class ids.
IMAGE_FIELDS = ("pixel_values", "unlabeled_pixel_values", "unlabeled_strong_pixel_values")
LABEL_FIELDS = ("labels", "unlabeled_diagnostic_labels")
# The fields of a training item that hold one entry per unlabeled group (`TrainingItems`).
GROUPED_FIELDS = (
    "unlabeled_pixel_values",
    "unlabeled_strong_pixel_values",
    "unlabeled_valid",
    "unlabeled_diagnostic_labels",
    "cutmix_masks",
)


def pad_collate(features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stacks the items' tensors; images of different sizes are padded right and bottom to the largest (pixels
    with 0, labels with `IGNORE_INDEX`). Each item's `image_size` keeps its own (height, width), so that evaluation
    runs every image at its own size and never scores or sees the padding."""
    batch = {}
    for name in features[0]:
        tensors = [torch.as_tensor(feature[name]) for feature in features]
        sizes = {tuple(tensor.shape[-2:]) for tensor in tensors}
        if tensors[0].dim() >= 2 and len(sizes) > 1:
            height, width = max(size[0] for size in sizes), max(size[1] for size in sizes)
            fill = IGNORE_INDEX if name == "labels" else 0
            tensors = [pad_to(tensor, height, width, value=fill) for tensor in tensors]
        batch[name] = torch.stack(tensors)
    return batch


def semi_supervised_collate(features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """`pad_collate`, with the r unlabeled groups of each of the B items made into B * r rows: the batch a
    framework step takes (`SemiSupervisedBatch`). Evaluation items, which have no groups, collate as `pad_collate`."""
    batch = pad_collate(features)
    return {name: value.flatten(0, 1) if name in GROUPED_FIELDS else value for name, value in batch.items()}


def prepared_batch(
    batch: dict[str, torch.Tensor], image_mean: Sequence[float], image_std: Sequence[float], channels_last: bool = False
) -> dict:
    """A batch of bytes (`TrainingItems`) as a framework step takes it, on the batch's device: uint8 images
    normalised to float32 (with `channels_last`, stored channels innermost, so that every image of it is NHWC),
    class ids as int64; what is already so passes unchanged."""
    prepared = dict(batch)
    for name in IMAGE_FIELDS:
        if name in batch and batch[name].dtype == torch.uint8:
            prepared[name] = normalize_images(batch[name], image_mean, image_std)
            if channels_last:
                prepared[name] = prepared[name].movedim(-3, -1).contiguous().movedim(-1, -3)
    for name in LABEL_FIELDS:
        if name in batch:
            prepared[name] = batch[name].long()
    return prepared


__all__ = ["GROUPED_FIELDS", "IMAGE_FIELDS", "LABEL_FIELDS", "pad_collate", "prepared_batch", "semi_supervised_collate"]
