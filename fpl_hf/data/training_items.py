"""The training set of a semi-supervised step: one labeled sample with the unlabeled samples it needs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from datasets import Dataset
from torchvision import tv_tensors

from .augment import ResizeLongestSide, cutmix_mask, strong_augmentation, weak_augmentation
from .normal_form import IGNORE_INDEX
from .samples import Palette, Sample, load_sample, undecoded
from .splits import DIAGNOSTIC_LABEL


@dataclass
class CutMixSettings:
    """Box masks drawn per item: `num_boxes` boxes covering a share in `area_range`, with `probability`."""

    num_boxes: int = 3
    area_range: tuple[float, float] = (0.25, 0.5)
    probability: float = 1.0


def seed_of(*key: int) -> int:
    """A seed that depends on `key` alone (the seed of a run, an epoch or pass, an item's place)."""
    return hash(key) & 0x7FFF_FFFF_FFFF_FFFF


@contextmanager
def seeded(*key: int) -> Iterator[None]:
    """Draws inside come from the global RNG seeded by `key` and restored after: the global RNG (model dropout, saved
    in checkpoints) is untouched by data loading and prefetching, so a resumed run sees the same data."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_of(*key))
        yield


class DecodedSamples:
    """Samples of a map-style data set kept decoded and resized to the run's `image_size` (the first step of the weak
    augmentation, which is then a no-op: items are the same as without), up to `capacity_bytes`: each file is
    decoded once, not at every use (on CamVid at a longer side of 240, decoding was a third of a UniMatch V2 item's
    time). One cache a data-loading process."""

    def __init__(self, load: Callable[[int], Sample], image_size: int | None, capacity_bytes: int):
        self.load, self.capacity_bytes = load, capacity_bytes
        self.resize = ResizeLongestSide(image_size) if image_size else None
        self.samples: dict[int, Sample] = {}
        self.size_bytes = 0

    def __getitem__(self, index: int) -> Sample:
        sample = self.samples.get(index)
        if sample is not None:
            return sample
        sample = self.load(index)
        if self.resize is not None:
            sample = tuple(self.resize(*sample))
        size = sum(tensor.numel() * tensor.element_size() for tensor in sample)
        if self.size_bytes + size <= self.capacity_bytes:
            self.samples[index] = sample
            self.size_bytes += size
        return sample


class TrainingItems:
    """Turns one sample of the labeled part and groups of unlabeled samples into a training item.

    An item holds (r = `unlabeled_groups`, U = `num_unlabeled`), as bytes: images uint8, masks uint8 (int64 with more
    than 255 classes), booleans; `prepared_batch` normalises a batch of them on the training device.
        pixel_values (3, S, S), labels (S, S): a weakly augmented labeled crop.
        unlabeled_pixel_values (r, U, 3, S, S): weak crops of r groups of U different unlabeled images.
        unlabeled_strong_pixel_values (r, U, V, 3, S, S): V strong views of each weak crop (V = 0: absent).
        unlabeled_valid (r, U, S, S): False on crop padding.
        unlabeled_diagnostic_labels (r, U, S, S): the unlabeled images' own labels where known (255 elsewhere), for
            the logged statistics only.
        cutmix_masks (r, M, S, S): box masks (True inside the boxes), M = `num_cutmix_masks` per group.
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
        cutmix: CutMixSettings | None = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        image_size: int | None = None,
        rotation_degrees: float = 0.0,
        horizontal_flip: bool = True,
        strong_view_kind: str = "color",
        palette: Palette = None,
        seed: int = 0,
        decoded_cache_bytes: int = 0,
    ):
        if len(labeled) == 0:
            raise ValueError("The labeled part is empty: training needs at least one labeled image.")
        if unlabeled_groups < 1:
            raise ValueError(f"`unlabeled_groups` must be >= 1, got {unlabeled_groups}.")
        self.labeled = undecoded(labeled)
        self.image_size, self.decoded_cache_bytes = image_size, decoded_cache_bytes
        self._labeled_samples = self.decoded_samples(
            lambda index: load_sample(self.labeled, index, "label", "labeled", num_labels, palette)
        )
        self.num_labels, self.crop_size, self.palette = num_labels, crop_size, palette
        self.num_unlabeled, self.unlabeled_groups = num_unlabeled, unlabeled_groups
        self.num_strong_views, self.num_cutmix_masks = num_strong_views, num_cutmix_masks
        self.cutmix = cutmix or CutMixSettings()
        self.weak = weak_augmentation(
            crop_size,
            scale_range,
            image_size=image_size,
            rotation_degrees=rotation_degrees,
            horizontal_flip=horizontal_flip,
        )
        self.strong = strong_augmentation(strong_view_kind)
        self.image_mean, self.image_std = list(image_mean), list(image_std)
        # Masks hold ids below num_labels and IGNORE_INDEX (255): one byte each where the ids fit in one.
        self.label_dtype = torch.uint8 if num_labels <= IGNORE_INDEX else torch.int64
        self.seed = seed

    def decoded_samples(self, load: Callable[[int], Sample]) -> DecodedSamples:
        """A cache of `load`'s samples; the labeled and the unlabeled part share the budget half and half."""
        return DecodedSamples(load, self.image_size, self.decoded_cache_bytes // 2)

    def labeled_sample(self, index: int) -> Sample:
        return self._labeled_samples[index]

    def make_item(self, labeled: Sample, unlabeled: Callable[[int, int], Sample]) -> dict[str, torch.Tensor]:
        """`unlabeled(group, offset)` gives the unlabeled sample at that place; it is called in order, after the
        labeled crop is drawn, so that the item's random draws follow one fixed sequence."""
        image, label = self.weak(*labeled)
        item = {"pixel_values": image.as_subclass(torch.Tensor), "labels": label.to(self.label_dtype)}
        if not self.num_unlabeled:
            return item
        groups = [self._unlabeled_group(partial(unlabeled, group)) for group in range(self.unlabeled_groups)]
        for name in groups[0]:
            item[name] = torch.stack([group[name] for group in groups])
        return item

    def _unlabeled_group(self, sample: Callable[[int], Sample]) -> dict[str, torch.Tensor]:
        weak, strong, valid, diagnostic = [], [], [], []
        for offset in range(self.num_unlabeled):
            u_image, u_label = sample(offset)
            ones = tv_tensors.Mask(torch.ones_like(u_label))
            u_image, u_label, u_valid = self.weak(u_image, u_label, ones)
            weak.append(u_image.as_subclass(torch.Tensor))
            strong.append([self.strong(u_image).as_subclass(torch.Tensor) for _ in range(self.num_strong_views)])
            valid.append(u_valid == 1)
            diagnostic.append(u_label.to(self.label_dtype))
        group = {"unlabeled_pixel_values": torch.stack(weak)}
        if self.num_strong_views:
            group["unlabeled_strong_pixel_values"] = torch.stack([torch.stack(views) for views in strong])
        group["unlabeled_valid"] = torch.stack(valid)
        group["unlabeled_diagnostic_labels"] = torch.stack(diagnostic)
        if self.num_cutmix_masks:
            settings = self.cutmix
            group["cutmix_masks"] = torch.stack(
                [
                    cutmix_mask(
                        self.crop_size,
                        self.crop_size,
                        num_boxes=settings.num_boxes,
                        area_range=settings.area_range,
                        probability=settings.probability,
                    ).bool()
                    for _ in range(self.num_cutmix_masks)
                ]
            )
        return group


class SemiSupervisedDataset(TrainingItems, torch.utils.data.Dataset):
    """A map-style training set: items of `max(len(labeled), ceil(len(unlabeled) / r))`, the labeled part repeated
    (`num_unlabeled=0`: labeled only); item i holds unlabeled images i*r ... i*r + r - 1 (`TrainingItems`)."""

    def __init__(self, labeled: Dataset, unlabeled: Dataset, **options: Any):
        super().__init__(labeled, **options)
        if self.num_unlabeled and len(unlabeled) == 0:
            raise ValueError(
                "The unlabeled part is empty, and this framework trains on unlabeled images: give some (folders: "
                "`--unlabeled_dir`; or draw the labeled part from the training images with `--num_labeled` or "
                "`--labeled_fraction`, leaving the rest unlabeled), or train `--framework supervised`."
            )
        self.unlabeled = undecoded(unlabeled)
        self._unlabeled_samples = self.decoded_samples(
            lambda index: load_sample(
                self.unlabeled, index, DIAGNOSTIC_LABEL, "unlabeled", self.num_labels, self.palette
            )
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called at each epoch (`DatasetEpochCallback`): augmentations differ from epoch to epoch."""
        self.epoch = epoch

    def __len__(self) -> int:
        if not self.num_unlabeled:
            return len(self.labeled)
        return max(len(self.labeled), math.ceil(len(self.unlabeled) / self.unlabeled_groups))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        with seeded(self.seed, self.epoch, index):
            labeled = self.labeled_sample(index % len(self.labeled))
            return self.make_item(labeled, lambda group, offset: self._unlabeled(index, group, offset))

    def _unlabeled(self, index: int, group: int, offset: int) -> Sample:
        # The second image of a group is a random other one, as CPS and UniMatch draw their mixing partner.
        count = len(self.unlabeled)
        u_index = (index * self.unlabeled_groups + group) % count if offset == 0 else int(torch.randint(count, ()))
        return self._unlabeled_samples[u_index]


__all__ = ["CutMixSettings", "DecodedSamples", "SemiSupervisedDataset", "TrainingItems", "seed_of", "seeded"]
