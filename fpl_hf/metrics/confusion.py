"""Streaming mIoU: a confusion matrix accumulated batch by batch, with evaluate's `mean_iou` definitions."""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = torch.Tensor | np.ndarray


def remap_references(
    references: torch.Tensor, ignore_index: int, *, reduce_labels: bool = False, label_map: dict[int, int] | None = None
) -> torch.Tensor:
    """evaluate's preprocessing of references: `label_map` first, then `reduce_labels` (0 -> ignore, k -> k - 1)."""
    if label_map:
        mapped = references.clone()
        for old, new in label_map.items():
            mapped[references == old] = new
        references = mapped
    if reduce_labels:
        references = torch.where(references == 0, 255, references - 1).masked_fill(references == 255, 255)
    return references


def metrics_from_matrix(matrix: np.ndarray, nan_to_num: float | None = None) -> dict:
    """evaluate's `mean_iou` outputs from a (reference x prediction) count matrix; absent classes get NaN."""
    matrix = matrix.astype(np.float64)
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
            "overall_accuracy": intersection.sum() / area_label.sum() if area_label.sum() else np.nan,
            "per_category_iou": iou,
            "per_category_accuracy": accuracy,
        }
    if nan_to_num is not None:
        result = {key: np.nan_to_num(value, nan=nan_to_num) for key, value in result.items()}
    return result


class ConfusionMatrix:
    """(num_labels x num_labels) counts, rows = reference, columns = prediction; memory independent of images.

    `update` takes integer maps of any shape (a batch or one image), as tensors (any device) or numpy arrays,
    and reads each map in a few vectorised passes (min/max, one fused multiply-add, one bincount). Matching
    evaluate's `mean_iou`: pixels whose reference is `ignore_index` are skipped, `label_map` renames reference ids
    first, and `reduce_labels` turns 0 into 255 and shifts the rest down by one.
    """

    def __init__(
        self,
        num_labels: int,
        ignore_index: int = 255,
        *,
        reduce_labels: bool = False,
        label_map: dict[int, int] | None = None,
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
                f"predictions {tuple(predictions.shape)} and references {tuple(references.shape)} must have the same "
                "shape."
            )
        n = self.num_labels
        references = remap_references(
            references.to(predictions.device, torch.int64),
            self.ignore_index,
            reduce_labels=self.reduce_labels,
            label_map=self.label_map,
        )
        predictions = predictions.to(torch.int64)
        if not references.numel():
            return
        low, high = torch.aminmax(predictions)
        if low < 0 or high >= n:
            # Out-of-range predictions are an error only where a reference counts (evaluate's example has 255s).
            ignored = references == self.ignore_index
            if ((predictions < 0) | (predictions >= n))[~ignored].any():
                raise ValueError(f"predictions hold ids outside [0, {n}).")
            predictions = predictions.masked_fill(ignored, 0)
        ignore_row = self.ignore_index
        if ignore_row < n:
            references, ignore_row = references.masked_fill(references == self.ignore_index, n), n
        # References >= n land past the n x n bins and must all be in the ignore row; negative references give
        # negative indices (predictions are in [0, n) here), which bincount refuses.
        try:
            counts = torch.bincount(torch.add(predictions, references, alpha=n).flatten())
        except RuntimeError as error:
            raise ValueError(
                f"references hold negative ids; ids must be in [0, {n}) or {self.ignore_index}."
            ) from error
        if counts[n * n :].sum() != counts[ignore_row * n : (ignore_row + 1) * n].sum():
            raise ValueError(f"references hold ids outside [0, {n}) that are not ignore_index ({self.ignore_index}).")
        inside = counts[: n * n]
        self.counts[: inside.numel()] += inside.cpu()

    def matrix(self) -> np.ndarray:
        return self.counts.view(self.num_labels, self.num_labels).numpy()

    def compute(self, nan_to_num: float | None = None) -> dict:
        return metrics_from_matrix(self.matrix(), nan_to_num)


__all__ = ["ConfusionMatrix", "metrics_from_matrix", "remap_references"]
