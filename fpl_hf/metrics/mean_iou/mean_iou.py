"""Mean IoU as an `evaluate` module, streaming: each added batch only updates a count matrix.

    import evaluate, fpl_hf.metrics
    metric = evaluate.load(fpl_hf.metrics.MEAN_IOU_PATH)      # works offline: the module ships with fpl_hf
    metric.add_batch(predictions=maps, references=labels)    # as often as needed; memory does not grow
    metric.compute(num_labels=21, ignore_index=255)

Same inputs and outputs as evaluate's `mean_iou`. Because `num_labels`, `ignore_index`, `label_map` and
`reduce_labels` arrive only with `compute`, batches are counted by raw (reference, prediction) values and the
mapping is applied to the count matrix at the end, which gives the same result as mapping every pixel.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
import torch

from fpl_hf.metrics.confusion import metrics_from_matrix, remap_references

_DESCRIPTION = "Mean Intersection-over-Union of segmentation maps, accumulated in a confusion matrix."
_KWARGS_DESCRIPTION = """
Args:
    predictions: list of (H, W) integer maps (numpy arrays or tensors); references: the same, with ground truth.
    num_labels: number of classes. ignore_index: reference value to skip.
    nan_to_num: replaces NaN (classes absent from references and predictions). label_map: old -> new reference
    ids. reduce_labels: reference 0 becomes ignored and every other id drops by one.
Returns:
    mean_iou, mean_accuracy, overall_accuracy, per_category_iou, per_category_accuracy.
"""
_CITATION = "MMSegmentation Contributors, OpenMMLab Semantic Segmentation Toolbox and Benchmark, 2020."


class MeanIoU(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Sequence(datasets.Value("uint16"))),
                    "references": datasets.Sequence(datasets.Sequence(datasets.Value("uint16"))),
                }
            ),
        )

    def _counts(self) -> torch.Tensor:
        if getattr(self, "_raw_counts", None) is None:
            self._raw_counts = torch.zeros(0, 0, dtype=torch.int64)
        return self._raw_counts

    def add(self, *, prediction=None, reference=None, **kwargs) -> None:
        """Counts one map (evaluate appends the inputs description to this docstring)."""
        self.add_batch(predictions=[prediction], references=[reference])

    def add_batch(self, *, predictions=None, references=None, **kwargs) -> None:
        """Counts a batch of maps into the (reference, prediction) matrix."""
        for prediction, reference in zip(predictions, references):
            prediction = torch.as_tensor(np.asarray(prediction)).to(torch.int64).flatten()
            reference = torch.as_tensor(np.asarray(reference)).to(torch.int64).flatten()
            if prediction.shape != reference.shape:
                raise ValueError("Each prediction must have the shape of its reference.")
            if prediction.numel() == 0:
                continue
            if min(prediction.min(), reference.min()) < 0:
                raise ValueError("Segmentation maps must hold non-negative class ids.")
            counts = self._counts()
            rows = max(counts.shape[0], int(reference.max()) + 1)
            cols = max(counts.shape[1], int(prediction.max()) + 1)
            grown = torch.zeros(rows, cols, dtype=torch.int64)
            grown[: counts.shape[0], : counts.shape[1]] = counts
            grown += torch.bincount(reference * cols + prediction, minlength=rows * cols).view(rows, cols)
            self._raw_counts = grown

    def compute(self, *, predictions=None, references=None, **kwargs) -> dict:
        """Adds `predictions` if given, computes the metrics from the counts, and resets them."""
        if predictions is not None:
            self.add_batch(predictions=predictions, references=references)
        try:
            return self._compute(**kwargs)
        finally:
            self._raw_counts = None

    def _compute(
        self,
        num_labels: int,
        ignore_index: int,
        nan_to_num: int | None = None,
        label_map: dict[int, int] | None = None,
        reduce_labels: bool = False,
    ) -> dict:
        counts = self._counts()
        mapped = remap_references(
            torch.arange(counts.shape[0]), ignore_index, reduce_labels=reduce_labels, label_map=label_map
        )
        keep = (mapped != ignore_index) & (counts.sum(1) > 0)
        matrix = torch.zeros(num_labels, max(num_labels, counts.shape[1]), dtype=torch.int64)
        if keep.any():
            if int(mapped[keep].max()) >= num_labels or int(mapped[keep].min()) < 0:
                raise ValueError(f"references hold ids outside [0, {num_labels}) that are not ignore_index.")
            matrix.index_add_(0, mapped[keep], _pad_columns(counts[keep], matrix.shape[1]))
        if matrix[:, num_labels:].any():
            raise ValueError(f"predictions hold ids outside [0, {num_labels}).")
        return metrics_from_matrix(matrix[:, :num_labels].numpy(), nan_to_num)


def _pad_columns(counts: torch.Tensor, width: int) -> torch.Tensor:
    padded = torch.zeros(counts.shape[0], width, dtype=torch.int64)
    padded[:, : counts.shape[1]] = counts
    return padded
