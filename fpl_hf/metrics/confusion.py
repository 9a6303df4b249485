"""Streaming mIoU: a confusion matrix accumulated batch by batch, with evaluate's `mean_iou` definitions."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray]


class ConfusionMatrix:
    """(num_labels x num_labels) counts, rows = reference, columns = prediction; memory independent of images.

    `update` takes integer maps of any shape (a batch or one image), as tensors (any device) or numpy arrays.
    Matching evaluate's `mean_iou`: pixels whose reference is `ignore_index` are skipped, `label_map` renames
    reference ids first, and `reduce_labels` turns 0 into 255 and shifts the rest down by one.
    """

    def __init__(
        self,
        num_labels: int,
        ignore_index: int = 255,
        *,
        reduce_labels: bool = False,
        label_map: Optional[dict[int, int]] = None,
    ):
        if num_labels < 1:
            raise ValueError(f"`num_labels` must be >= 1, got {num_labels}.")
        self.num_labels, self.ignore_index = num_labels, ignore_index
        self.reduce_labels, self.label_map = reduce_labels, dict(label_map or {})
        self.counts = torch.zeros(num_labels * num_labels, dtype=torch.int64)

    def update(self, predictions: ArrayLike, references: ArrayLike) -> None:
        predictions, references = torch.as_tensor(predictions), torch.as_tensor(references)
        if predictions.shape != references.shape:
            raise ValueError(
                f"predictions {tuple(predictions.shape)} and references {tuple(references.shape)} must have the same shape."
            )
        references = references.to(predictions.device, torch.int64)
        predictions = predictions.to(torch.int64)
        if self.label_map:
            mapped = references.clone()
            for old, new in self.label_map.items():
                mapped[references == old] = new
            references = mapped
        if self.reduce_labels:
            references = torch.where(references == 0, 255, references - 1).masked_fill(references == 255, 255)
        keep = references != self.ignore_index
        references, predictions = references[keep], predictions[keep]
        if references.numel() and (references.min() < 0 or references.max() >= self.num_labels):
            raise ValueError(f"references hold ids outside [0, {self.num_labels}) that are not ignore_index.")
        if predictions.numel() and (predictions.min() < 0 or predictions.max() >= self.num_labels):
            raise ValueError(f"predictions hold ids outside [0, {self.num_labels}).")
        flat = references * self.num_labels + predictions
        self.counts += torch.bincount(flat, minlength=self.num_labels**2).cpu()

    def matrix(self) -> np.ndarray:
        return self.counts.view(self.num_labels, self.num_labels).numpy()

    def compute(self, nan_to_num: Optional[float] = None) -> dict:
        """evaluate's `mean_iou` outputs: classes absent from references and predictions get NaN IoU."""
        matrix = self.matrix().astype(np.float64)
        intersection = np.diag(matrix)
        area_label = matrix.sum(axis=1)
        area_prediction = matrix.sum(axis=0)
        union = area_label + area_prediction - intersection
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = intersection / union
            accuracy = intersection / area_label
        result = {
            "mean_iou": np.nanmean(iou) if not np.isnan(iou).all() else np.nan,
            "mean_accuracy": np.nanmean(accuracy) if not np.isnan(accuracy).all() else np.nan,
            "overall_accuracy": intersection.sum() / max(area_label.sum(), 1),
            "per_category_iou": iou,
            "per_category_accuracy": accuracy,
        }
        if nan_to_num is not None:
            result = {key: np.nan_to_num(value, nan=nan_to_num) for key, value in result.items()}
        return result


__all__ = ["ConfusionMatrix"]
