"""How plainly a data set's images show its class borders: where they do not, pseudo-labels have little to go on.

Weak-to-strong consistency (FixMatch, UniMatch, FPL's frameworks) teaches a student to agree with its teacher under
perturbations, which moves decision boundaries towards places where the image changes. Where a class border is
defined by position (an atlas region, an organ's subdivision) and the image does not change across it, that pull
has nothing to act on. On the INIA19 slices, where 42-50% of the labeled border length (five draws of 16 slices)
changes less than twice as much across the border as inside the classes, semi-supervision has not paid (no setting
beyond the runs' own noise); on the embedded scenes (0-2%) every setting beat labels alone, and on CamVid's street
scenes (18-29% over ten draws of 11 labeled images) UniMatch V2 + FPL has beaten labels alone (docs/medical.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from .normal_form import label_array, rgb_image
from .samples import Palette, read_image, spread_indices

# Border steps below this multiple of the classes' inner steps count as barely visible: between INIA19's atlas
# regions most pairs step 0.7-1.8x, between the embedded scenes' garments and backgrounds 3-9x (one pair 1.95).
FAINT_CONTRAST = 2.0
# The share of the labeled border length on barely visible borders from which a run is warned: between CamVid's
# street scenes (18-29% over ten draws of 11 labeled images, 18% over the whole training set), where semi-supervision
# can pay, and INIA19's atlas slices (42-50%, the rest mostly the brain's outline), where it has not; the embedded
# scenes: 0-2%.
FAINT_SHARE = 0.35


@dataclass(frozen=True)
class BorderContrast:
    """Two classes that touch in the images: the mean colour step between neighbouring pixels across their border,
    over that between neighbouring pixels inside the two classes (`contrast`), and how many border steps were
    counted (`length`)."""

    classes: tuple[int, int]
    contrast: float
    length: int


def border_contrast(
    dataset: Dataset, num_labels: int, palette: Palette = None, max_images: int = 200
) -> list[BorderContrast]:
    """Every pair of classes that touch in up to `max_images` labeled images of `dataset` (spread over it; columns
    "image" and "label" in the normal form, decoded or not), longest border first. Pixels of no class (ignored) are
    left out."""
    pair_steps, pair_counts = np.zeros(num_labels * num_labels), np.zeros(num_labels * num_labels)
    inner_steps, inner_counts = np.zeros(num_labels), np.zeros(num_labels)
    for index in spread_indices(len(dataset), max_images):
        row, where = dataset[index], f"labeled sample {index}"
        image = np.asarray(rgb_image(read_image(row["image"], "image", where), where), dtype=np.float32)
        label = label_array(read_image(row["label"], "label", where), where, palette=palette).astype(np.int64)
        # A step is the length of the colour change between neighbours: a change of hue alone counts, and on a grey
        # image (three equal channels) it is the grey-level step times sqrt(3), which no contrast (a ratio) sees.
        neighbours = (
            (label[:, :-1], label[:, 1:], np.linalg.norm(image[:, 1:] - image[:, :-1], axis=-1)),
            (label[:-1], label[1:], np.linalg.norm(image[1:] - image[:-1], axis=-1)),
        )
        for first, second, step in neighbours:
            valid = (first < num_labels) & (second < num_labels)
            inside, across = valid & (first == second), valid & (first != second)
            inner_steps += np.bincount(first[inside], step[inside], num_labels)
            inner_counts += np.bincount(first[inside], minlength=num_labels)
            pair = np.minimum(first, second)[across] * num_labels + np.maximum(first, second)[across]
            pair_steps += np.bincount(pair, step[across], num_labels * num_labels)
            pair_counts += np.bincount(pair, minlength=num_labels * num_labels)
    borders = []
    for pair in np.flatnonzero(pair_counts):
        first, second = divmod(int(pair), num_labels)
        inner = (inner_steps[first] + inner_steps[second]) / max(inner_counts[first] + inner_counts[second], 1)
        across = pair_steps[pair] / pair_counts[pair]
        # A flat inside (a painted background) makes any change across a border infinitely plain.
        contrast = across / inner if inner > 0 else (float("inf") if across > 0 else 1.0)
        borders.append(BorderContrast((first, second), float(contrast), int(pair_counts[pair])))
    return sorted(borders, key=lambda border: -border.length)


def faint_border_note(dataset: Dataset, class_names: Sequence[str], palette: Palette = None) -> str | None:
    """A warning for a semi-supervised run whose labeled images leave at least `FAINT_SHARE` of their border length
    barely visible (None otherwise): which borders, and what it means for pseudo-labels."""
    borders = border_contrast(dataset, len(class_names), palette)
    faint = [border for border in borders if border.contrast < FAINT_CONTRAST]
    total = sum(border.length for border in borders)
    share = sum(border.length for border in faint) / total if total else 0.0
    if share < FAINT_SHARE:
        return None
    named = ", ".join(
        f"{class_names[border.classes[0]]}/{class_names[border.classes[1]]} {border.contrast:.2f}"
        for border in faint[:4]
    )
    return (
        f"{share:.0%} of the labeled images' class borders barely show in the images: in {len(faint)} of the "
        f"{len(borders)} pairs of touching classes the image changes less than {FAINT_CONTRAST:g}x as much "
        f"across their border as inside them ({named}{', ...' if len(faint) > 4 else ''}). Pseudo-label training "
        "moves borders towards changes in the image, so it has little to go on where a class is defined by "
        "position rather than by what the image shows (on atlas regions of MRI slices it has not paid): "
        "examples/compare.py tells whether it pays on yours (docs/medical.md)."
    )


__all__ = ["FAINT_CONTRAST", "FAINT_SHARE", "BorderContrast", "border_contrast", "faint_border_note"]
