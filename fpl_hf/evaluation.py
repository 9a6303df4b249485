"""Evaluation: the protocols (whole image, sliding window, center crop; flip), `evaluate_model` over a data set,
and the reports (JSON, a markdown per-class table, a confusion-matrix picture).

`predict_logits` (whole image, sliding window, optional flip) lives beside the model, which uses it for its own
`inference_mode`; the center crop changes what is scored and so belongs here only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers.utils import logging

from .data import IGNORE_INDEX, EvaluationDataset, longest_side_size
from .metrics import ConfusionMatrix
from .modeling.inference import INFERENCE_MODES, pad_to, predict_logits, window_stride
from .viz import confusion_matrix_figure

EVALUATION_MODES = INFERENCE_MODES + ("center",)
logger = logging.get_logger(__name__)


def center_crop(
    pixel_values: torch.Tensor, labels: torch.Tensor, crop_size: int, ignore_index: int = 255
) -> tuple[torch.Tensor, torch.Tensor]:
    """The central `crop_size` square of images (B, 3, H, W) and labels (B, H, W), AEL's VOC protocol (513).

    A side shorter than the crop is padded first, right and bottom: images with 0 (the mean colour once
    normalised), labels with `ignore_index`, so padding is never scored.
    """
    height, width = labels.shape[-2:]
    padded_height, padded_width = max(height, crop_size), max(width, crop_size)
    pixel_values = pad_to(pixel_values, padded_height, padded_width)
    labels = pad_to(labels, padded_height, padded_width, value=ignore_index)
    top, left = (padded_height - crop_size) // 2, (padded_width - crop_size) // 2
    return (
        pixel_values[..., top : top + crop_size, left : left + crop_size],
        labels[..., top : top + crop_size, left : left + crop_size],
    )


@dataclass(frozen=True)
class EvaluationProtocol:
    """How a model is scored: the inference mode, its crop and stride, and flip; always single scale.

    Args:
        mode: "whole" (each image at once), "slide" (windows of `crop_size` every `stride` pixels, overlapping
            logits averaged: the CPS recipes' protocol) or "center" (only the central `crop_size` square of
            image and label: AEL's VOC protocol).
        crop_size: window or crop side; required by "slide" and "center".
        stride: window step of "slide"; default two thirds of the crop (Cityscapes: 800 -> 534).
        flip: also run the horizontally flipped image and average the logits.
        image_size: resize each image first so that its longer side has this many pixels (as in training), and the
            logits back to the image's size (bilinear), where they are scored; None: the image as it is.
    """

    mode: str = "whole"
    crop_size: int | None = None
    stride: int | None = None
    flip: bool = False
    image_size: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in EVALUATION_MODES:
            raise ValueError(f"The evaluation mode must be one of {EVALUATION_MODES}, got {self.mode!r}.")
        if self.mode != "whole" and not (self.crop_size or 0) >= 1:
            raise ValueError(f"The '{self.mode}' evaluation needs a crop size >= 1 (VOC 512 or 513, Cityscapes 800).")
        # What a mode does not use is dropped, so that the protocol records only what was done.
        if self.mode == "whole":
            object.__setattr__(self, "crop_size", None)
        if self.mode != "slide":
            object.__setattr__(self, "stride", None)
        else:
            object.__setattr__(self, "stride", window_stride(self.crop_size, self.stride))

    @property
    def description(self) -> str:
        region = {
            "whole": "whole images",
            "slide": f"sliding window {self.crop_size} stride {self.stride}",
            "center": f"center crop {self.crop_size}",
        }[self.mode]
        resized = f", resized to longer side {self.image_size}" if self.image_size else ""
        return f"single scale, {region}" + (", flip" if self.flip else "") + resized

    def to_dict(self) -> dict[str, Any]:
        recorded = {name: value for name, value in asdict(self).items() if name != "image_size" or value is not None}
        return {**recorded, "description": self.description}

    def __call__(
        self, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The logits and the labels they are scored against (the center crop changes both)."""
        if self.mode == "center":
            pixel_values, labels = center_crop(pixel_values, labels, self.crop_size, ignore_index)
        mode = "slide" if self.mode == "slide" else "whole"
        size = pixel_values.shape[-2:]
        if self.image_size:
            resized = longest_side_size(size, self.image_size)
            pixel_values = F.interpolate(pixel_values, size=resized, mode="bilinear", antialias=True)
        logits = predict_logits(
            model, pixel_values, mode=mode, crop_size=self.crop_size, stride=self.stride, flip=self.flip
        )
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits, labels

    def padded_batch(
        self,
        model: nn.Module,
        pixel_values: torch.Tensor,
        labels: torch.Tensor,
        image_sizes: torch.Tensor | None = None,
        ignore_index: int = 255,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The protocol on a batch that `pad_collate` padded: each group of equal `image_sizes` (B, 2) runs at its own
        size, so results equal those of batch size 1. Logits and labels come back at the batch's padded size, the
        labels `ignore_index` wherever nothing is scored."""
        if image_sizes is None or bool(
            (image_sizes == torch.tensor(labels.shape[-2:], device=image_sizes.device)).all()
        ):
            return self(model, pixel_values, labels, ignore_index)
        groups = []
        for size in image_sizes.unique(dim=0):
            members = (image_sizes == size).all(1).nonzero().squeeze(1)
            own_height, own_width = size.tolist()
            logits, scored = self(
                model,
                pixel_values[members, :, :own_height, :own_width],
                labels[members, :own_height, :own_width],
                ignore_index,
            )
            groups.append((members, logits, scored))
        height = max(scored.shape[-2] for _, _, scored in groups)
        width = max(scored.shape[-1] for _, _, scored in groups)
        all_logits = groups[0][1].new_zeros(labels.shape[0], groups[0][1].shape[1], height, width)
        all_labels = labels.new_full((labels.shape[0], height, width), ignore_index)
        for members, logits, scored in groups:
            all_logits[members, :, : logits.shape[-2], : logits.shape[-1]] = logits
            all_labels[members, : scored.shape[-2], : scored.shape[-1]] = scored
        return all_logits, all_labels


@torch.no_grad()
def resized_longer_side(processor: Any) -> int | None:
    """The longer side that an fpl_hf image processor resizes images to (a run with `image_size` saves it), or None
    where it keeps their size (or is another library's, whose resizing is not to a longer side)."""
    size = getattr(processor, "size", None) or {}
    if getattr(processor, "do_resize", False) and "max_height" in size and "max_width" in size:
        return max(size["max_height"], size["max_width"])
    return None


def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    *,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    protocol: EvaluationProtocol = EvaluationProtocol(),
) -> ConfusionMatrix:
    """Streams every image of a normal-form data set through `model` (one at a time: sizes may differ); any
    transformers segmentation model's logits are brought to the image size first."""
    num_labels = model.config.num_labels
    images = EvaluationDataset(dataset, num_labels=num_labels, image_mean=image_mean, image_std=image_std)
    confusion = ConfusionMatrix(num_labels, IGNORE_INDEX)  # the data's, whatever name a model config gives its own
    device = next(model.parameters()).device
    model.eval()
    for index in range(len(images)):
        item = images[index]
        logits, labels = protocol(
            model, item["pixel_values"][None].to(device), item["labels"][None].to(device), confusion.ignore_index
        )
        confusion.update(logits.argmax(1), labels)
    return confusion


class StreamedEvaluation:
    """A `Trainer` mixin: evaluation by the run's `EvaluationProtocol` on batches of images of any sizes, a confusion
    matrix streamed batch by batch, the latest and the best evaluation kept (`last_metrics`, `best_metrics`), and the
    trained weights saved when an evaluation fails."""

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """`Trainer.evaluate`; when it fails, the trained weights are saved to `output_dir` before the error goes on."""
        try:
            return super().evaluate(*args, **kwargs)
        except Exception:
            if self.state.global_step > 0:
                logger.warning(
                    f"Evaluation failed; the model of step {self.state.global_step} is saved in {self.args.output_dir}."
                )
                self.save_model()
            raise

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.no_grad():
            logits, labels = self.args.evaluation_protocol.padded_batch(
                self._evaluated_network(model),
                inputs["pixel_values"],
                inputs["labels"],
                inputs.get("image_size"),
                self.ignore_index,
            )
            loss = self.supervised_loss(logits, labels)
        return loss, logits, labels

    def _stream_metrics(self, eval_pred, compute_result: bool = False) -> dict[str, float]:
        self._confusion.update(eval_pred.predictions, eval_pred.label_ids)
        if not compute_result:
            return {}
        result = self._confusion.compute()
        self._confusion = ConfusionMatrix(self.num_labels, self.ignore_index)
        names = getattr(self._inference_model(self.model).config, "id2label", {})
        metrics = {"mean_iou": float(result["mean_iou"]), "overall_accuracy": float(result["overall_accuracy"])}
        for index, iou in enumerate(result["per_category_iou"]):
            metrics[f"iou_{names.get(index, index)}"] = float(iou)
        self.last_metrics = {**metrics, "step": self.state.global_step}
        if self.best_metrics is None or not metrics["mean_iou"] <= self.best_metrics["mean_iou"]:
            self.best_metrics = self.last_metrics
        return metrics


def write_report(
    confusion: ConfusionMatrix,
    class_names: Sequence[str],
    output_dir: str | os.PathLike,
    *,
    protocol: EvaluationProtocol,
    model_name: str,
    dataset_name: str,
) -> dict[str, Any]:
    """Writes report.json, report.md (IoU, accuracy and pixel count per class) and confusion_matrix.png."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    result = confusion.compute()
    matrix = confusion.matrix()
    pixels = matrix.sum(axis=1)
    as_number = lambda value: None if np.isnan(value) else float(value)  # noqa: E731
    report = {
        "model": model_name,
        "dataset": dataset_name,
        "evaluation": protocol.to_dict(),
        "mean_iou": as_number(result["mean_iou"]),
        "mean_accuracy": as_number(result["mean_accuracy"]),
        "overall_accuracy": as_number(result["overall_accuracy"]),
        "per_class": {
            name: {"iou": as_number(iou), "accuracy": as_number(accuracy), "pixels": int(count)}
            for name, iou, accuracy, count in zip(
                class_names, result["per_category_iou"], result["per_category_accuracy"], pixels
            )
        },
    }
    (output_dir / "report.json").write_text(json.dumps(report, indent=2))
    percent = lambda value: "n/a" if value is None else f"{100 * value:.2f}"  # noqa: E731
    lines = [
        f"# Evaluation of {model_name}",
        "",
        f"Data: {dataset_name}. Evaluation: {protocol.description}.",
        "",
        f"mIoU **{percent(report['mean_iou'])}**, mean accuracy {percent(report['mean_accuracy'])}, "
        f"overall accuracy {percent(report['overall_accuracy'])}.",
        "",
        "| class | IoU | accuracy | pixels |",
        "|---|---:|---:|---:|",
    ]
    for name, values in report["per_class"].items():
        lines.append(f"| {name} | {percent(values['iou'])} | {percent(values['accuracy'])} | {values['pixels']} |")
    (output_dir / "report.md").write_text("\n".join(lines) + "\n")
    confusion_matrix_figure(matrix, class_names, output_dir / "confusion_matrix.png")
    return report


__all__ = [
    "EVALUATION_MODES",
    "EvaluationProtocol",
    "StreamedEvaluation",
    "center_crop",
    "evaluate_model",
    "resized_longer_side",
    "write_report",
]
