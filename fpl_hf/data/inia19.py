"""A real medical data set built on the user's machine: 2D slices of the INIA19 rhesus macaque brain template.

Debian's `mricron-data` package (BSD-3) ships the INIA19 T1 template and its NeuroMaps atlas (725 regions, left
ids n, right ids 1000 + n) on one 0.5 mm grid. Slices along the three axes become grey images whose masks hold
`INIA19_NUM_CLASSES` classes: 0 "other" (outside the brain and unlabeled tissue), then 7 groups of atlas regions.
A group is made of whole regions, so its borders are the atlas's, which the image does not show as edges: the class
of a pixel depends on where it is, as with lobes in a human atlas.

The groups are found once, without randomness: each region (left and right merged) is a point at its centroid,
mirrored into one hemisphere and weighted by its volume; k-means on those points, started from the largest region
and then each time from the point farthest from the chosen ones, runs to convergence. Validation slices come from
slabs of the volume apart from every training slice (`validation_slabs` of `num_slabs` along each axis, with a gap
of `gap_mm` on either side).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Image
from PIL import Image as PILImage

INIA19_NUM_CLASSES = 8
INIA19_CLASSES = ("other",) + tuple(f"region_group_{index}" for index in range(1, INIA19_NUM_CLASSES))
INIA19_NUM_LABELED = 16
INIA19_FILES = ("inia19-t1-brain.nii.gz", "inia19-NeuroMaps.nii.gz")
DEFAULT_INIA19_DIR = "/usr/share/mricron/templates"
RIGHT_HEMISPHERE_OFFSET = 1000  # NeuroMaps: a right-hemisphere region is its left id + 1000


def inia19_dir() -> Path:
    """Where the INIA19 files are: `FPL_INIA19_DIR`, else Debian's mricron-data folder; a clear error if absent."""
    folder = Path(os.environ.get("FPL_INIA19_DIR", DEFAULT_INIA19_DIR))
    missing = [name for name in INIA19_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"The INIA19 files {missing} are not in {folder}. Install Debian's package (`sudo apt-get install "
            "mricron-data`, or `bash scripts/setup.sh --medical`), or set FPL_INIA19_DIR to a folder holding them."
        )
    return folder


def read_inia19(folder: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The T1 volume (float32) and the NeuroMaps atlas (int64 region ids, 0 outside every region), same grid."""
    try:
        import nibabel
    except ImportError as error:
        raise ImportError("Reading NIfTI volumes needs nibabel: `pip install nibabel`.") from error
    folder = Path(folder) if folder is not None else inia19_dir()
    t1, atlas = (nibabel.load(folder / name) for name in INIA19_FILES)
    if t1.shape != atlas.shape:
        raise ValueError(f"INIA19: the T1 volume {t1.shape} and the atlas {atlas.shape} are not on the same grid.")
    return np.asarray(t1.dataobj, dtype=np.float32), np.asarray(atlas.dataobj).astype(np.int64)


def region_groups(atlas: np.ndarray, num_groups: int = INIA19_NUM_CLASSES - 1, iterations: int = 100) -> np.ndarray:
    """A lookup table from region id to class (1 ... `num_groups`; 0 for id 0): k-means of the bilateral regions'
    mirrored centroids, weighted by volume, deterministic (see the module's docstring)."""
    bilateral = np.where(atlas >= RIGHT_HEMISPHERE_OFFSET, atlas - RIGHT_HEMISPHERE_OFFSET, atlas)
    inside = bilateral > 0
    regions, inverse, volumes = np.unique(bilateral[inside], return_inverse=True, return_counts=True)
    coordinates = np.stack(np.nonzero(inside), axis=1).astype(np.float64)
    midline = coordinates[:, 0].mean()
    coordinates[:, 0] = np.abs(coordinates[:, 0] - midline)  # left and right halves of a region fall together
    centroids = np.stack([np.bincount(inverse, coordinates[:, axis]) / volumes for axis in range(3)], axis=1)
    chosen = [int(np.argmax(volumes))]
    while len(chosen) < num_groups:
        distance = ((centroids[:, None] - centroids[chosen][None]) ** 2).sum(-1).min(1)
        chosen.append(int(np.argmax(distance)))
    centers = centroids[chosen]
    for _ in range(iterations):
        assignment = ((centroids[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
        weights = np.bincount(assignment, volumes, minlength=num_groups)
        updated = np.stack(
            [np.bincount(assignment, volumes * centroids[:, axis], minlength=num_groups) for axis in range(3)], axis=1
        )
        updated = np.where(weights[:, None] > 0, updated / np.maximum(weights, 1)[:, None], centers)
        if np.allclose(updated, centers):
            break
        centers = updated
    # Classes numbered from back to front (axis 1 of the grid points forward), so that their order means something.
    order = np.argsort(np.argsort(centers[:, 1]))
    table = np.zeros(int(atlas.max()) + 1, dtype=np.uint8)
    for region, group in zip(regions, order[assignment]):
        table[region] = group + 1
        if region + RIGHT_HEMISPHERE_OFFSET < table.size:
            table[region + RIGHT_HEMISPHERE_OFFSET] = group + 1
    return table


def _grey_levels(t1: np.ndarray) -> np.ndarray:
    """The T1 volume as uint8: 0 stays 0, the brain's 99.5th percentile and above become 255."""
    top = np.percentile(t1[t1 > 0], 99.5)
    return np.clip(np.round(t1 / top * 255), 0, 255).astype(np.uint8)


def _slice(volume: np.ndarray, axis: int, index: int) -> np.ndarray:
    """One slice as an image: the other two axes as (rows, columns), superior (or anterior, for axial) at the top."""
    plane = np.take(volume, index, axis=axis)  # (the first remaining axis, the second)
    return np.ascontiguousarray(np.flip(plane.T, axis=0))


def slice_plan(
    brain: np.ndarray,
    *,
    slice_step: int = 2,
    num_slabs: int = 10,
    validation_slabs: tuple[int, ...] = (2, 6),
    gap: int = 2,
    min_brain_share: float = 0.05,
) -> list[tuple[str, int, int]]:
    """(part, axis, index) of each slice to cut from a volume whose brain voxels `brain` marks.

    Along each axis, every `slice_step`-th slice of the brain's extent is kept where the brain covers at least
    `min_brain_share` of it; the extent is cut into `num_slabs` equal slabs, `validation_slabs` of which give the
    "validation" slices, and "train" slices closer than `gap` voxels to a validation slab are dropped."""
    plan = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        coverage = brain.mean(axis=others)
        present = np.nonzero(coverage)[0]
        low, high = int(present[0]), int(present[-1]) + 1
        edges = np.linspace(low, high, num_slabs + 1)
        held = [(edges[slab], edges[slab + 1]) for slab in validation_slabs]
        for index in range(low, high, slice_step):
            if coverage[index] < min_brain_share:
                continue
            if any(start <= index < stop for start, stop in held):
                plan.append(("validation", axis, index))
            elif not any(start - gap <= index < stop + gap for start, stop in held):
                plan.append(("train", axis, index))
    return plan


def inia19_slices(
    *, slice_step: int = 1, gap_mm: float = 1.0, folder: str | os.PathLike | None = None
) -> tuple[Dataset, Dataset]:
    """(train, validation) slices of INIA19 in the normal form (`slice_plan`, slabs of 10 along each axis, the
    third and seventh for validation): grey images (mode L, three sizes: 206x128, 168x128 and 168x206 pixels at
    0.5 mm) and masks of `INIA19_CLASSES`."""
    t1, atlas = read_inia19(folder)
    classes = region_groups(atlas)[atlas]
    grey = _grey_levels(t1)
    parts: dict[str, dict[str, list[PILImage.Image]]] = {
        "train": {"image": [], "label": []},
        "validation": {"image": [], "label": []},
    }
    voxel_mm = 0.5
    for part, axis, index in slice_plan(t1 > 0, slice_step=slice_step, gap=int(np.ceil(gap_mm / voxel_mm))):
        parts[part]["image"].append(PILImage.fromarray(_slice(grey, axis, index), mode="L"))
        parts[part]["label"].append(PILImage.fromarray(_slice(classes, axis, index), mode="L"))
    features = Features({"image": Image(), "label": Image()})
    return tuple(Dataset.from_dict(parts[name], features=features) for name in ("train", "validation"))


__all__ = [
    "INIA19_CLASSES",
    "INIA19_NUM_CLASSES",
    "INIA19_NUM_LABELED",
    "inia19_dir",
    "inia19_slices",
    "read_inia19",
    "region_groups",
    "slice_plan",
]
