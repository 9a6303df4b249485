"""The training set of a semi-supervised step: one labeled sample with the unlabeled samples it needs."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from datasets import Dataset, Image
from PIL import Image as PILImage
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


def decoded_image(value: Any, column: str, where: str) -> PILImage.Image:
    """A decoded image from what a streamed example holds (a PIL image, or `{"path", "bytes"}` not decoded yet);
    a missing or corrupt file becomes an error that names the sample."""
    try:
        return value if isinstance(value, PILImage.Image) else Image().decode_example(value)
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"{where}: could not read the {column} ({type(error).__name__}: {error}).") from error


def checked_sample(
    image: PILImage.Image,
    label: Optional[PILImage.Image],
    where: str,
    num_labels: int,
    palette: Optional[dict[tuple[int, int, int], int]] = None,
) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """The checked image as a tensor and its mask (all 255 when `label` is None); errors name the sample."""
    image = rgb_image(image, where)
    if label is not None:
        ids = label_array(label, where, palette=palette)
        check_pair(image, ids, num_labels, where)
    else:
        ids = np.full((image.height, image.width), IGNORE_INDEX, dtype=np.uint8)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    return tv_tensors.Image(pixels), tv_tensors.Mask(torch.from_numpy(ids.astype(np.int64)))


def load_sample(
    dataset: Dataset,
    index: int,
    label_column: str,
    name: str,
    num_labels: int,
    palette: Optional[dict[tuple[int, int, int], int]] = None,
) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    """One checked image of a map-style data set and its mask (all 255 where `label_column` is absent)."""
    where = describe(dataset, index, name)
    image = open_image(dataset, index, "image", where)
    label = open_image(dataset, index, label_column, where) if label_column in dataset.column_names else None
    return checked_sample(image, label, where, num_labels, palette)


# An image and its mask, checked and as tensors.
Sample = tuple[tv_tensors.Image, tv_tensors.Mask]
# The fields of a training item that hold one entry per unlabeled group.
GROUPED_FIELDS = (
    "unlabeled_pixel_values", "unlabeled_strong_pixel_values", "unlabeled_valid", "unlabeled_diagnostic_labels",
    "cutmix_masks",
)


@contextmanager
def item_seed(*key: int) -> Iterator[None]:
    """Draws inside come from a generator seeded by `key`: the global RNG (model dropout, saved in checkpoints) is
    untouched by data loading and prefetching, so a resumed run sees the same data."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(hash(key) & 0x7FFF_FFFF_FFFF_FFFF)
        yield


class TrainingItems:
    """Turns one sample of the labeled part and groups of unlabeled samples into a training item.

    An item holds (r = `unlabeled_groups`, U = `num_unlabeled`):
        pixel_values (3, S, S), labels (S, S): a weakly augmented labeled crop.
        unlabeled_pixel_values (r, U, 3, S, S): weak crops of r groups of U different unlabeled images.
        unlabeled_strong_pixel_values (r, U, V, 3, S, S): V strong views of each weak crop (V = 0: absent).
        unlabeled_valid (r, U, S, S): False on crop padding.
        unlabeled_diagnostic_labels (r, U, S, S): the hidden labels (255 where unknown), for the logged statistics only.
        cutmix_masks (r, M, S, S): box masks, M = `num_cutmix_masks` per group.
    `semi_supervised_collate` makes the r groups of each of the B items of a batch into B * r unlabeled rows
    (`per_device_unlabeled_batch_size`).
    """

    def __init__(
        self,
        labeled: Dataset,
        *,
        num_labels: int,
        crop_size: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        num_unlabeled: int = 1,
        unlabeled_groups: int = 1,
        num_strong_views: int = 0,
        num_cutmix_masks: int = 0,
        cutmix: Optional[CutMixSettings] = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        palette: Optional[dict[tuple[int, int, int], int]] = None,
        seed: int = 0,
    ):
        if len(labeled) == 0:
            raise ValueError("The labeled part is empty: training needs at least one labeled image.")
        if unlabeled_groups < 1:
            raise ValueError(f"`unlabeled_groups` must be >= 1, got {unlabeled_groups}.")
        self.labeled = labeled
        self.num_labels, self.crop_size, self.palette = num_labels, crop_size, palette
        self.num_unlabeled, self.unlabeled_groups = num_unlabeled, unlabeled_groups
        self.num_strong_views, self.num_cutmix_masks = num_strong_views, num_cutmix_masks
        self.cutmix = cutmix or CutMixSettings()
        self.weak = weak_augmentation(crop_size, scale_range)
        self.strong = strong_augmentation()
        self.normalize = normalization(image_mean, image_std)
        self.seed = seed

    def labeled_sample(self, index: int) -> Sample:
        return load_sample(self.labeled, index, "label", "labeled", self.num_labels, self.palette)

    def make_item(self, labeled: Sample, unlabeled: Callable[[int, int], Sample]) -> dict[str, torch.Tensor]:
        """`unlabeled(group, offset)` gives the unlabeled sample at that place; it is called in order, after the
        labeled crop is drawn, so that the item's random draws follow one fixed sequence."""
        image, label = self.weak(*labeled)
        item = {"pixel_values": self.normalize(image), "labels": label.long()}
        if not self.num_unlabeled:
            return item
        groups = [self._unlabeled_group(lambda offset: unlabeled(group, offset))
                  for group in range(self.unlabeled_groups)]
        for name in groups[0]:
            item[name] = torch.stack([group[name] for group in groups])
        return item

    def _unlabeled_group(self, sample: Callable[[int], Sample]) -> dict[str, torch.Tensor]:
        weak, strong, valid, hidden = [], [], [], []
        for offset in range(self.num_unlabeled):
            u_image, u_label = sample(offset)
            ones = tv_tensors.Mask(torch.ones_like(u_label))
            u_image, u_label, u_valid = self.weak(u_image, u_label, ones)
            weak.append(self.normalize(u_image))
            strong.append([self.normalize(self.strong(u_image)) for _ in range(self.num_strong_views)])
            valid.append(u_valid == 1)
            hidden.append(u_label.long())
        group = {"unlabeled_pixel_values": torch.stack(weak)}
        if self.num_strong_views:
            group["unlabeled_strong_pixel_values"] = torch.stack([torch.stack(views) for views in strong])
        group["unlabeled_valid"] = torch.stack(valid)
        group["unlabeled_diagnostic_labels"] = torch.stack(hidden)
        if self.num_cutmix_masks:
            settings = self.cutmix
            group["cutmix_masks"] = torch.stack([
                cutmix_mask(self.crop_size, self.crop_size, num_boxes=settings.num_boxes,
                            area_range=settings.area_range, probability=settings.probability)
                for _ in range(self.num_cutmix_masks)
            ])
        return group


class SemiSupervisedDataset(TrainingItems, torch.utils.data.Dataset):
    """A map-style training set: items of `max(len(labeled), ceil(len(unlabeled) / r))`, the labeled part repeated
    (`num_unlabeled=0`: labeled only); item i holds unlabeled images i*r ... i*r + r - 1 (`TrainingItems`)."""

    def __init__(self, labeled: Dataset, unlabeled: Dataset, **options: Any):
        super().__init__(labeled, **options)
        if self.num_unlabeled and len(unlabeled) == 0:
            raise ValueError("The unlabeled part is empty: pass unlabeled images, or use framework='supervised'.")
        self.unlabeled = unlabeled
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called at each epoch (`DatasetEpochCallback`): augmentations differ from epoch to epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        if not self.num_unlabeled:
            return len(self.labeled)
        return max(len(self.labeled), math.ceil(len(self.unlabeled) / self.unlabeled_groups))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with item_seed(self.seed, self.epoch, index):
            labeled = self.labeled_sample(index % len(self.labeled))
            return self.make_item(labeled, lambda group, offset: self._unlabeled(index, group, offset))

    def _unlabeled(self, index: int, group: int, offset: int) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
        # The second image of a group is a random other one, as CPS and UniMatch draw their mixing partner.
        count = len(self.unlabeled)
        u_index = (index * self.unlabeled_groups + group) % count if offset == 0 else int(torch.randint(count, ()))
        return load_sample(self.unlabeled, u_index, HIDDEN_LABEL, "unlabeled", self.num_labels, self.palette)


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


def semi_supervised_collate(features: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """`pad_collate`, with the r unlabeled groups of each of the B items made into B * r rows: the batch a
    framework step takes (`SemiSupervisedBatch`). Evaluation items, which have no groups, collate as `pad_collate`."""
    batch = pad_collate(features)
    return {name: value.flatten(0, 1) if name in GROUPED_FIELDS else value for name, value in batch.items()}


__all__ = [
    "CutMixSettings",
    "EvaluationDataset",
    "GROUPED_FIELDS",
    "SemiSupervisedDataset",
    "TrainingItems",
    "load_sample",
    "pad_collate",
    "semi_supervised_collate",
]
