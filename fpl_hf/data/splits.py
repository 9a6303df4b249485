"""Labeled/unlabeled splits: by count, by fraction, or by the CPS/UniMatch split-list files."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

from datasets import Dataset

from .normal_form import to_normal_form

# The column that keeps an unlabeled image's own label where it is known: never trained on, only compared with the
# pseudo-labels in the logged statistics.
DIAGNOSTIC_LABEL = "diagnostic_label"


def split_labeled_unlabeled(
    dataset: Dataset,
    *,
    num_labeled: int | None = None,
    fraction: float | str | None = None,
    seed: int = 0,
) -> tuple[Dataset, Dataset]:
    """Chooses `num_labeled` (or `fraction` of the) images as labeled; the rest become unlabeled.

    The unlabeled part's `label` column becomes `diagnostic_label` (`as_unlabeled`). The same seed gives the same
    split.
    """
    if (num_labeled is None) == (fraction is None):
        raise ValueError("Pass exactly one of `num_labeled` (e.g. 92) or `fraction` (e.g. 1/16 or '1/16').")
    total = len(dataset)
    if fraction is not None:
        share = Fraction(fraction).limit_denominator(1000) if isinstance(fraction, str) else Fraction(fraction)
        if not 0 < share < 1:
            raise ValueError(f"`fraction` must be in (0, 1), got {fraction}.")
        num_labeled = max(1, round(total * share))
    if not 0 < num_labeled < total:
        raise ValueError(
            f"`num_labeled` must be in [1, {total - 1}] for a data set of {total} images, got {num_labeled}: "
            "both the labeled and the unlabeled part must be non-empty."
        )
    shuffled = dataset.shuffle(seed=seed, keep_in_memory=True).flatten_indices(keep_in_memory=True)
    labeled = shuffled.select(range(num_labeled), keep_in_memory=True)
    unlabeled = shuffled.select(range(num_labeled, total), keep_in_memory=True)
    return labeled, as_unlabeled(unlabeled)


def as_unlabeled(dataset: Dataset) -> Dataset:
    """`dataset` as unlabeled images: a `label` column becomes `diagnostic_label`, which trainers never learn from
    and use only for the logged statistics (pseudo-label accuracy)."""
    return dataset.rename_column("label", DIAGNOSTIC_LABEL) if "label" in dataset.column_names else dataset


def read_split_list(path: str | os.PathLike, root: str | os.PathLike | None = None) -> list[tuple[str, str | None]]:
    """Reads a split list: one `image_path [label_path]` a line, relative to `root`.

    With `root`, every named file must exist; the error names the first that does not.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Split list {path} does not exist.")
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) > 2:
            raise ValueError(f"{path}:{number}: expected `image_path [label_path]`, got {line!r}.")
        entries.append((parts[0], parts[1] if len(parts) == 2 else None))
    if not entries:
        raise ValueError(f"Split list {path} is empty.")
    if root is not None:
        for number, entry in enumerate(entries, start=1):
            for relative in entry:
                if relative is not None and not (Path(root) / relative).is_file():
                    raise FileNotFoundError(f"{path}:{number} names {relative}, which is not under {root}.")
    return entries


def dataset_from_list(list_path: str | os.PathLike, root: str | os.PathLike, *, labeled: bool = True) -> Dataset:
    """A normal-form data set from a split list; an unlabeled list keeps its labels (if any) hidden."""
    entries = read_split_list(list_path, root)
    root = Path(root)
    columns = {"image": [str(root / image) for image, _ in entries]}
    if all(label is not None for _, label in entries):
        columns["label"] = [str(root / label) for _, label in entries]
    elif labeled:
        raise ValueError(f"{list_path}: a labeled split list needs a label path on every line.")
    dataset = to_normal_form(Dataset.from_dict(columns), require_label=False)
    return dataset if labeled else as_unlabeled(dataset)


def split_from_lists(
    root: str | os.PathLike, labeled_list: str | os.PathLike, unlabeled_list: str | os.PathLike
) -> tuple[Dataset, Dataset]:
    """The labeled and unlabeled parts named by a pair of split lists (e.g. `pascal/1_16/labeled.txt`)."""
    return dataset_from_list(labeled_list, root), dataset_from_list(unlabeled_list, root, labeled=False)


__all__ = [
    "DIAGNOSTIC_LABEL",
    "split_labeled_unlabeled",
    "as_unlabeled",
    "read_split_list",
    "dataset_from_list",
    "split_from_lists",
]
