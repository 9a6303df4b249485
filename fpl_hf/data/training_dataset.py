"""The choice of a run's training set: streamed where its unlabeled pool is, map-style otherwise."""

from __future__ import annotations

from typing import Any

import datasets
import torch
from datasets import Dataset

from .streamed import SemiSupervisedStream
from .training_items import SemiSupervisedDataset


def training_dataset(
    labeled: Dataset, unlabeled: Dataset | datasets.IterableDataset, *, shuffle_buffer_size: int = 1000, **options: Any
) -> torch.utils.data.Dataset:
    """The training set of a run: a `SemiSupervisedStream` when the unlabeled pool is streamed (a
    `datasets.IterableDataset`, shuffled through `shuffle_buffer_size` examples), else a `SemiSupervisedDataset`
    (shuffled by the Trainer's sampler); `options` go to it (`FPLConfig.train_dataset_options()`)."""
    if isinstance(unlabeled, datasets.IterableDataset):
        return SemiSupervisedStream(labeled, unlabeled, shuffle_buffer_size=shuffle_buffer_size, **options)
    return SemiSupervisedDataset(labeled, unlabeled, **options)


__all__ = ["training_dataset"]
