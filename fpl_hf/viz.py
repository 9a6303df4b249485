"""Pictures: colourised masks and overlays, confusion matrices, and FPL's own (K maps, K shares, R maps)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure  # pyplot-free: importing fpl_hf sets no global matplotlib backend
from PIL import Image

PathLike = str | os.PathLike


def palette(num_labels: int) -> np.ndarray:
    """(num_labels, 3) uint8 colours: class ids spread over RGB by their bits, so neighbours differ."""
    colours = np.zeros((max(num_labels, 1), 3), dtype=np.uint8)
    for index in range(num_labels):
        value, shift = index, 7
        while value:
            for channel in range(3):
                colours[index, channel] |= ((value >> channel) & 1) << shift
            value >>= 3
            shift -= 1
    return colours


def colorize(mask: np.ndarray, num_labels: int, ignore_index: int = 255) -> Image.Image:
    colours = palette(num_labels)
    mask = np.asarray(mask)
    rgb = colours[np.clip(mask, 0, num_labels - 1)]
    rgb[mask == ignore_index] = 255
    return Image.fromarray(rgb)


# K = 1, 2, 3 and more: dark blue, green, yellow (viridis' ends and middle), as `k_map_figure` shows them.
K_COLOURS = np.array([[68, 1, 84], [33, 145, 140], [253, 231, 37]], dtype=np.uint8)


def colorize_k(k: np.ndarray) -> Image.Image:
    """A map of K (the fuzzy positive set size of each pixel) in K_COLOURS, K >= 3 in the last."""
    return Image.fromarray(K_COLOURS[np.clip(np.asarray(k), 1, len(K_COLOURS)) - 1])


def overlay(image: Image.Image, mask: np.ndarray, num_labels: int, alpha: float = 0.5) -> Image.Image:
    return Image.blend(image.convert("RGB"), colorize(mask, num_labels).resize(image.size, Image.NEAREST), alpha)


def confusion_matrix_figure(matrix: np.ndarray, class_names: Sequence[str], path: PathLike) -> None:
    """Row-normalised confusion matrix (rows: reference), one cell per class pair."""
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure = Figure(figsize=(size, size))
    axis = figure.subplots()
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(class_names)), class_names, rotation=90)
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("prediction")
    axis.set_ylabel("reference")
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def k_map_figure(image: Image.Image, k: np.ndarray, path: PathLike, max_k: int = 3) -> None:
    """The image beside its map of K, the size of each pixel's fuzzy positive set (paper Fig. 5)."""
    figure = Figure(figsize=(8, 4))
    axes = figure.subplots(1, 2)
    axes[0].imshow(image)
    axes[0].set_title("image")
    shown = axes[1].imshow(np.minimum(k, max_k), cmap="viridis", vmin=1, vmax=max_k)
    axes[1].set_title(f"K (>= {max_k} shown as {max_k})")
    figure.colorbar(shown, ax=axes[1], ticks=range(1, max_k + 1), fraction=0.046)
    for axis in axes:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def validation_curve_figure(log_history: list[dict], path: PathLike) -> None:
    """Validation mIoU over training steps, from a Trainer's `log_history`."""
    points = {entry["step"]: entry["eval_mean_iou"] for entry in log_history if "eval_mean_iou" in entry}
    if not points:
        raise ValueError("The log history has no evaluation (eval_mean_iou): was the model evaluated?")
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    axis.plot(list(points), [100 * value for value in points.values()], marker="o")
    axis.set_xlabel("step")
    axis.set_ylabel("validation mIoU (%)")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def k_shares_figure(log_history: list[dict], path: PathLike) -> None:
    """Share of pixels with K = 1, 2, 3+ over training steps, from a Trainer's `log_history` (paper Fig. 4a)."""
    entries = [entry for entry in log_history if "k1" in entry]
    if not entries:
        raise ValueError("The log history has no K shares (k1, k2, k3+): was it an FPL run?")
    steps = [entry["step"] for entry in entries]
    figure = Figure(figsize=(6, 4))
    axis = figure.subplots()
    for key in ("k1", "k2", "k3+"):
        axis.plot(steps, [100 * entry.get(key, 0.0) for entry in entries], label=key.replace("k", "K = "))
    axis.set_xlabel("step")
    axis.set_ylabel("share of unlabeled pixels (%)")
    axis.set_ylim(0, 100)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def gradient_score_figure(
    image: Image.Image, score: np.ndarray, case: np.ndarray, path: PathLike, title: str | None = None
) -> None:
    """Positive gradient score R per pixel (Eq. 12; > 0 pushes the true class up) and the case of each pixel."""
    figure = Figure(figsize=(12, 4))
    axes = figure.subplots(1, 3)
    axes[0].imshow(image)
    axes[0].set_title("image")
    shown = axes[1].imshow(np.clip(score, -1, 1), cmap="coolwarm_r", vmin=-1, vmax=1)
    axes[1].set_title("positive gradient score R")
    figure.colorbar(shown, ax=axes[1], fraction=0.046)
    cases = axes[2].imshow(case, cmap="tab10", vmin=0, vmax=9)
    axes[2].set_title("case: 1 right, 2 truth in set, 3 outside")
    figure.colorbar(cases, ax=axes[2], ticks=[0, 1, 2, 3], fraction=0.046)
    for axis in axes:
        axis.axis("off")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


__all__ = [
    "palette",
    "colorize",
    "colorize_k",
    "overlay",
    "confusion_matrix_figure",
    "k_map_figure",
    "k_shares_figure",
    "gradient_score_figure",
]
