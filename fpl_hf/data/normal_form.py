"""The one normal form of fpl_hf data: a `datasets.Dataset` with `image` and `label` Image columns."""

from __future__ import annotations

import numpy as np
from datasets import Dataset, Image
from PIL import ExifTags, ImageOps
from PIL import Image as PILImage

IGNORE_INDEX = 255
IMAGE_COLUMNS = ("image", "pixel_values", "img", "images", "jpg", "jpeg", "png", "webp")  # the last: webdataset keys
LABEL_COLUMNS = ("label", "annotation", "segmentation", "mask", "semantic_segmentation", "labels", "seg")


def _find(columns: list[str], candidates: tuple[str, ...], given: str | None, what: str) -> str | None:
    if given is not None:
        if given not in columns:
            raise ValueError(f"`{what}_column` {given!r} is not a column of the data set; it has {columns}.")
        return given
    return next((name for name in candidates if name in columns), None)


def to_normal_form(
    dataset: Dataset, image_column: str | None = None, label_column: str | None = None, *, require_label: bool = True
) -> Dataset:
    """Renames the image and label columns to `image` and `label`, casts both to `Image`, drops the rest.

    Column names known from the Hub (`pixel_values`, `annotation`, `segmentation`, `mask`, ...) are found
    automatically; pass `image_column`/`label_column` for others.
    """
    columns = list(dataset.column_names)
    image = _find(columns, IMAGE_COLUMNS, image_column, "image")
    if image is None:
        raise ValueError(f"No image column among {columns}; pass `image_column=`.")
    label = _find(columns, LABEL_COLUMNS, label_column, "label")
    if label is None and require_label:
        raise ValueError(f"No label (mask) column among {columns}; pass `label_column=`.")
    keep = {image: "image", **({label: "label"} if label is not None else {})}
    dataset = dataset.remove_columns([c for c in columns if c not in keep])
    dataset = dataset.rename_columns({old: new for old, new in keep.items() if old != new})
    for name in keep.values():
        if not isinstance(dataset.features[name], Image):
            dataset = dataset.cast_column(name, Image())
    return dataset


def label_array(
    label: PILImage.Image, where: str, *, palette: dict[tuple[int, int, int], int] | None = None
) -> np.ndarray:
    """Class ids of a mask image; RGB masks need `palette` (color -> id)."""
    if label.mode in ("RGB", "RGBA"):
        if palette is None:
            raise ValueError(
                f"{where}: the mask is an {label.mode} color image, but class ids are expected (one id per pixel, "
                "mode L or P). Convert it, or pass `palette={(r, g, b): class_id, ...}`."
            )
        rgb = np.asarray(label.convert("RGB"), dtype=np.int64)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        ids = np.full(codes.shape, IGNORE_INDEX, dtype=np.uint8)
        for (r, g, b), class_id in palette.items():
            ids[codes == ((r << 16) | (g << 8) | b)] = class_id
        return ids
    if label.mode not in ("L", "P", "I", "I;16"):
        raise ValueError(f"{where}: unsupported mask mode {label.mode}; save masks as 8-bit PNGs of class ids.")
    return np.asarray(label).astype(np.uint8 if label.mode in ("L", "P") else np.int64)


def check_image_mode(image: PILImage.Image, where: str) -> None:
    """Raises where the image's pixels (its header says) hold more than 8 bits, which RGB would cut."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        raise ValueError(
            f"{where}: the image has {image.mode} pixels (more than 8 bits); scale it to 8-bit RGB or grey first."
        )


def upright_size(image: PILImage.Image) -> tuple[int, int]:
    """(height, width) of the image as its EXIF orientation turns it, read from its header alone."""
    turned = image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8)
    return (image.width, image.height) if turned else (image.height, image.width)


def rgb_image(image: PILImage.Image, where: str) -> PILImage.Image:
    """The image in RGB, upright as its EXIF orientation says (as viewers and annotation tools show it).

    Grey, palette, CMYK and opaque RGBA images convert without loss; where converting would lose information
    (transparent pixels, more than 8 bits per channel) the error says so instead of a silently wrong input.
    """
    check_image_mode(image, where)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        alpha = np.asarray(image.convert("RGBA"))[..., 3]
        if (alpha < 255).any():
            raise ValueError(
                f"{where}: the image has transparent pixels; flatten it onto a background (e.g. "
                "`Image.alpha_composite`) so that what the model sees is defined."
            )
    return ImageOps.exif_transpose(image).convert("RGB")


def check_pair(size: tuple[int, int], label: np.ndarray, num_labels: int, where: str) -> None:
    """Raises a ValueError naming the sample when the mask does not fit the image's (height, width) `size` (upright,
    as its EXIF orientation turns it) or holds unknown ids."""
    height, width = size
    if label.shape != (height, width):
        # A mask of the transposed size usually means the image was turned upright by its EXIF orientation.
        rotated = " (upright, as its EXIF orientation, if any, turns it)" if label.shape == (width, height) else ""
        raise ValueError(
            f"{where}: image is {width}x{height}{rotated} but its mask is {label.shape[1]}x{label.shape[0]}; "
            "they must have the same size."
        )
    unknown = np.setdiff1d(np.unique(label), np.append(np.arange(num_labels), IGNORE_INDEX))
    if unknown.size:
        raise ValueError(
            f"{where}: mask holds class ids {unknown[:10].tolist()} outside [0, {num_labels}) and not "
            f"{IGNORE_INDEX} (ignore). Check `num_labels` or map the ids."
        )


__all__ = [
    "IGNORE_INDEX",
    "check_image_mode",
    "check_pair",
    "label_array",
    "rgb_image",
    "to_normal_form",
    "upright_size",
]
