"""Evaluation reports: mIoU over a data set, written as JSON, a markdown per-class table and a picture."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from datasets import Dataset
from torch import nn

from .data import EvaluationDataset
from .inference import EvaluationProtocol
from .metrics import ConfusionMatrix
from .viz import confusion_matrix_figure


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    dataset: Dataset,
    *,
    image_mean: Sequence[float],
    image_std: Sequence[float],
    protocol: EvaluationProtocol = EvaluationProtocol(),
) -> ConfusionMatrix:
    """Streams every image of a normal-form data set through `model` (one at a time: sizes may differ)."""
    config = model.config
    images = EvaluationDataset(dataset, num_labels=config.num_labels, image_mean=image_mean, image_std=image_std)
    confusion = ConfusionMatrix(config.num_labels, config.semantic_loss_ignore_index)
    device = next(model.parameters()).device
    model.eval()
    for index in range(len(images)):
        item = images[index]
        logits, labels = protocol(
            model, item["pixel_values"][None].to(device), item["labels"][None].to(device), confusion.ignore_index
        )
        confusion.update(logits.argmax(1), labels)
    return confusion


def write_report(
    confusion: ConfusionMatrix,
    class_names: Sequence[str],
    output_dir: Union[str, os.PathLike],
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


__all__ = ["evaluate_model", "write_report"]
