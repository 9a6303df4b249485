"""The validation images of a run, whole and labeled."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from datasets import Dataset

from .augment import normalize_images
from .samples import Palette, load_sample, undecoded


class EvaluationDataset(torch.utils.data.Dataset):
    """Whole labeled images, normalized, at their own size; `pad_collate` batches images of different sizes."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        num_labels: int,
        image_mean: Sequence[float],
        image_std: Sequence[float],
        palette: Palette = None,
    ):
        if "label" not in dataset.column_names:
            raise ValueError(f"Evaluation needs labels: the data set has no `label` column ({dataset.column_names}).")
        self.dataset, self.num_labels, self.palette = undecoded(dataset), num_labels, palette
        self.image_mean, self.image_std = list(image_mean), list(image_std)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image, label = load_sample(self.dataset, index, "label", "evaluation", self.num_labels, self.palette)
        return {
            "pixel_values": normalize_images(image, self.image_mean, self.image_std),
            "labels": label.as_subclass(torch.Tensor),
            "image_size": torch.tensor(label.shape[-2:]),
        }


__all__ = ["EvaluationDataset"]
