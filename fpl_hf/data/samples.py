"""Reading one sample: its image and mask decoded, checked and turned into tensors, with errors that name it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from datasets import Dataset, Image
from PIL import Image as PILImage
from torchvision import tv_tensors

from .normal_form import IGNORE_INDEX, check_pair, label_array, rgb_image

# An image and its mask, checked and as tensors (the mask all IGNORE_INDEX where the image has none).
Sample = tuple[tv_tensors.Image, tv_tensors.Mask]
Palette = dict[tuple[int, int, int], int] | None


def spread_indices(length: int, count: int) -> list[int]:
    """Up to `count` indices of a data set of `length` items, spread evenly over it, first and last included."""
    return np.unique(np.linspace(0, length - 1, min(count, length)).round().astype(int)).tolist()


def undecoded(dataset: Dataset) -> Dataset:
    """`dataset` with its image columns left undecoded (`{"path", "bytes"}`): `read_image` decodes them where a
    missing or corrupt file can be named with its sample."""
    for column, feature in dataset.features.items():
        if isinstance(feature, Image) and feature.decode:
            dataset = dataset.cast_column(column, Image(decode=False))
    return dataset


def read_image(value: Any, column: str, where: str) -> PILImage.Image:
    """The image a data-set cell holds (a PIL image, or `{"path", "bytes"}` not decoded yet); a missing or corrupt
    file becomes an error that names the sample."""
    try:
        return value if isinstance(value, PILImage.Image) else Image().decode_example(value)
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"{where}: could not read the {column} ({type(error).__name__}: {error}).") from error


def sample_name(place: str, *cells: Any) -> str:
    """How errors name a sample: its `place`, and its files (image, mask) where its undecoded cells know them."""
    paths = [cell["path"] for cell in cells if isinstance(cell, dict) and cell.get("path")]
    return place + (f" ({', '.join(paths)})" if paths else "")


def checked_sample(
    image: PILImage.Image, label: PILImage.Image | None, where: str, num_labels: int, palette: Palette = None
) -> Sample:
    """The checked image as a tensor and its mask (all 255 when `label` is None); errors name the sample."""
    image = rgb_image(image, where)
    if label is not None:
        ids = label_array(label, where, palette=palette)
        check_pair((image.height, image.width), ids, num_labels, where)
    else:
        ids = np.full((image.height, image.width), IGNORE_INDEX, dtype=np.uint8)
    pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    return tv_tensors.Image(pixels), tv_tensors.Mask(torch.from_numpy(ids.astype(np.int64)))


def load_sample(
    dataset: Dataset, index: int, label_column: str, name: str, num_labels: int, palette: Palette = None
) -> Sample:
    """One checked image of an `undecoded` map-style data set and its mask (all 255 where `label_column` is absent)."""
    row = dataset[index]
    label_cell = row.get(label_column)
    where = sample_name(f"{name} sample {index}", row["image"], label_cell)
    image = read_image(row["image"], "image", where)
    label = read_image(label_cell, label_column, where) if label_cell is not None else None
    return checked_sample(image, label, where, num_labels, palette)


__all__ = [
    "Palette",
    "Sample",
    "checked_sample",
    "load_sample",
    "read_image",
    "sample_name",
    "spread_indices",
    "undecoded",
]
