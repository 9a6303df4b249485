"""The training set of a semi-supervised step: one labeled sample with the unlabeled samples it needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from datasets import Dataset
from torchvision import tv_tensors

from .augment import cutmix_mask, normalization, strong_augmentation, weak_augmentation
from ..modeling.inference import pad_to
from .normal_form import IGNORE_INDEX, check_pair, describe, label_array, open_image, rgb_image
from .splits import HIDDEN_LABEL


@dataclass
class CutMixSettings:
    """Box masks drawn per item: `num_boxes` boxes covering a share in `area_range`, with `probability`."""

    num_boxes: int = 3
    area_range: tuple[float, float] = (0.25, 0.5)
    probability: float = 1.0


def load_sample(
    dataset: Dataset,
    index: int,
    label_column: str,
    name: str,
    num_labels: int,
    palette: Optional[dict[tuple[int, int, int], int]] = None,
) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """One checked image and its mask (all 255 where `label_column` is absent); errors name the sample."""
    where = describe(dataset, index, name)
    image = rgb_image(open_image(dataset, index, "image", where), where)
    if label_column in dataset.column_names:
        label = label_array(open_image(dataset, index, label_column, where), where, palette=palette)
        check_pair(image, label, num_labels, where)
    else:
        label = np.full((image.height, image.width), IGNORE_INDEX, dtype=np.uint8)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    return tv_tensors.Image(pixels), tv_tensors.Mask(torch.from_numpy(label.astype(np.int64)))


class SemiSupervisedDataset(torch.utils.data.Dataset):
    """Items of `max(len(labeled), len(unlabeled))`, the labeled part repeated (`num_unlabeled=0`: labeled only).

    Each item holds:
        pixel_values (3, S, S), labels (S, S): a weakly augmented labeled crop.
        unlabeled_pixel_values (U, 3, S, S): weak crops of U different unlabeled images.
        unlabeled_strong_pixel_values (U, V, 3, S, S): V strong views of each weak crop (V = 0: absent).
        unlabeled_valid (U, S, S): False on crop padding.
        unlabeled_diagnostic_labels (U, S, S): the hidden labels (255 where unknown), for the logged statistics only.
        cutmix_masks (M, S, S): box masks, M = `num_cutmix_masks`.
    """

    def __init__(
        self,
        labeled: Dataset,
        unlabeled: Dataset,
        *,
        num_labels: int,
        crop_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        num_unlabeled: int = 1,
        num_strong_views: int = 0,
        num_cutmix_masks: int = 0,
        cutmix: Optional[CutMixSettings] = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        palette: Optional[dict[tuple[int, int, int], int]] = None,
        seed: int = 0,
    ):
        if len(labeled) == 0:
            raise ValueError("The labeled part is empty: training needs at least one labeled image.")
        if num_unlabeled and len(unlabeled) == 0:
            raise ValueError("The unlabeled part is empty: pass unlabeled images, or use framework='supervised'.")
        self.labeled, self.unlabeled = labeled, unlabeled
        self.num_labels, self.crop_size, self.palette = num_labels, crop_size, palette
        self.num_unlabeled, self.num_strong_views, self.num_cutmix_masks = num_unlabeled, num_strong_views, num_cutmix_masks
        self.cutmix = cutmix or CutMixSettings()
        self.weak = weak_augmentation(crop_size, scale_range)
        self.strong = strong_augmentation()
        self.normalize = normalization(image_mean, image_std)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        """Called by accelerate's data loader at each epoch: augmentations differ from epoch to epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        return max(len(self.labeled), len(self.unlabeled)) if self.num_unlabeled else len(self.labeled)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        # Each item draws from its own generator, seeded by (seed, epoch, index): the global RNG (model dropout,
        # saved in checkpoints) is untouched by data loading and prefetching, so a resumed run sees the same data.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFF_FFFF_FFFF_FFFF)
            return self._item(index)

    def _item(self, index: int) -> dict[str, torch.Tensor]:
        image, label = load_sample(
            self.labeled, index % len(self.labeled), "label", "labeled", self.num_labels, self.palette
        )
        image, label = self.weak(image, label)
        item = {"pixel_values": self.normalize(image), "labels": label.long()}
        if not self.num_unlabeled:
            return item

        weak, strong, valid, hidden = [], [], [], []
        for offset in range(self.num_unlabeled):
            # The second unlabeled image is a random other one, as CPS and UniMatch draw their mixing partner.
            u_index = index % len(self.unlabeled) if offset == 0 else int(torch.randint(len(self.unlabeled), ()))
            u_image, u_label = load_sample(
                self.unlabeled, u_index, HIDDEN_LABEL, "unlabeled", self.num_labels, self.palette
            )
            ones = tv_tensors.Mask(torch.ones_like(u_label))
            u_image, u_label, u_valid = self.weak(u_image, u_label, ones)
            weak.append(self.normalize(u_image))
            strong.append([self.normalize(self.strong(u_image)) for _ in range(self.num_strong_views)])
            valid.append(u_valid == 1)
            hidden.append(u_label.long())
        item["unlabeled_pixel_values"] = torch.stack(weak)
        if self.num_strong_views:
            item["unlabeled_strong_pixel_values"] = torch.stack([torch.stack(views) for views in strong])
        item["unlabeled_valid"] = torch.stack(valid)
        item["unlabeled_diagnostic_labels"] = torch.stack(hidden)
        if self.num_cutmix_masks:
            settings = self.cutmix
            item["cutmix_masks"] = torch.stack(
                [
                    cutmix_mask(
                        self.crop_size,
                        self.crop_size,
                        num_boxes=settings.num_boxes,
                        area_range=settings.area_range,
                        probability=settings.probability,
                    )
                    for _ in range(self.num_cutmix_masks)
                ]
            )
        return item


class EvaluationDataset(torch.utils.data.Dataset):
    """Whole labeled images, normalized, at their own size; `pad_collate` batches images of different sizes."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        num_labels: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        palette: Optional[dict[tuple[int, int, int], int]] = None,
    ):
        self.dataset, self.num_labels, self.palette = dataset, num_labels, palette
        self.normalize = normalization(image_mean, image_std)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if "label" not in self.dataset.column_names:
            raise ValueError(f"Evaluation needs labels: the data set has no `label` column ({self.dataset.column_names}).")
        image, label = load_sample(self.dataset, index, "label", "evaluation", self.num_labels, self.palette)
        return {
            "pixel_values": self.normalize(image),
            "labels": label.as_subclass(torch.Tensor),
            "image_size": torch.tensor(label.shape[-2:]),
        }


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


__all__ = ["CutMixSettings", "SemiSupervisedDataset", "EvaluationDataset", "load_sample", "pad_collate"]
