"""The data of a run checked before its first step: every bad file found at once, named with what is wrong."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from datasets import Dataset
from PIL import Image as PILImage

from .normal_form import check_image_mode, check_pair, label_array, upright_size
from .samples import Palette, read_image, sample_name, spread_indices, undecoded
from .splits import DIAGNOSTIC_LABEL


class DataCheckError(ValueError):
    """Samples that training could not read; the message lists each one with what is wrong and the fix."""


def _image_header(cell: Any, where: str) -> PILImage.Image:
    """The image of an undecoded cell, opened lazily (its header read), after a check of the whole file where its
    format allows one (PNG: every chunk's checksum, so a truncated file is found; a JPEG's pixels are read in
    training)."""
    if isinstance(cell, PILImage.Image):
        return cell
    try:
        source = cell.get("bytes") or cell.get("path")
        opened = lambda: PILImage.open(io.BytesIO(source) if isinstance(source, bytes) else source)  # noqa: E731
        with opened() as image:
            image.verify()
        return opened()
    except (OSError, ValueError, SyntaxError) as error:
        raise ValueError(f"{where}: could not read the image ({type(error).__name__}: {error}).") from error


def sample_problem(
    dataset: Dataset, index: int, label_column: str | None, name: str, num_labels: int, palette: Palette = None
) -> str | None:
    """What is wrong with one sample of an undecoded data set (None: nothing found): the image's header and file,
    and, where `label_column` holds one, the whole mask: its ids and its size against the image's."""
    row = dataset[index]
    label_cell = row.get(label_column) if label_column else None
    where = sample_name(f"{name} sample {index}", row["image"], label_cell)
    try:
        image = _image_header(row["image"], where)
        check_image_mode(image, where)
        if label_cell is not None:
            label = label_array(read_image(label_cell, label_column, where), where, palette=palette)
            check_pair(upright_size(image), label, num_labels, where)
    except ValueError as error:
        return str(error)
    return None


def check_samples(
    parts: Sequence[tuple[Dataset, str | None, str, Sequence[int]]],
    num_labels: int,
    palette: Palette = None,
    workers: int | None = None,
) -> None:
    """Reads every sample named by `parts` ((data set, label column or None, name, indices) each), in `workers`
    threads, and raises one `DataCheckError` that lists every problem."""
    jobs = [
        (readable, index, label, name)
        for dataset, label, name, indices in parts
        for readable in (undecoded(dataset),)
        for index in indices
    ]
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        problems = [
            problem
            for problem in pool.map(lambda job: sample_problem(*job, num_labels=num_labels, palette=palette), jobs)
            if problem
        ]
    if problems:
        counts = ", ".join(f"{name}: {len(indices)}" for _, _, name, indices in parts)
        raise DataCheckError(
            f"{len(problems)} of the {len(jobs)} samples checked before training ({counts}) cannot be trained on:\n"
            + "\n".join(f"  - {problem}" for problem in problems)
            + "\nFix or remove these files, or pass `--skip_data_check` to train anyway (a bad sample then stops the "
            "run when it is read)."
        )


def check_run_data(
    labeled: Dataset,
    unlabeled: Any,
    validation: Dataset | None,
    num_labels: int,
    palette: Palette = None,
    unlabeled_sample: int = 1000,
) -> None:
    """The check of a run's data: every labeled and validation sample, and up to `unlabeled_sample` unlabeled images of
    a map-style pool spread over it (a streamed pool is checked as it is read)."""
    parts = [(labeled, "label", "labeled", range(len(labeled)))]
    if isinstance(unlabeled, Dataset) and len(unlabeled):
        indices = spread_indices(len(unlabeled), unlabeled_sample)
        diagnostic = DIAGNOSTIC_LABEL if DIAGNOSTIC_LABEL in unlabeled.column_names else None
        parts.append((unlabeled, diagnostic, "unlabeled", indices))
    if validation is not None:
        parts.append((validation, "label", "evaluation", range(len(validation))))
    check_samples(parts, num_labels, palette)


__all__ = ["DataCheckError", "check_run_data", "check_samples", "sample_problem"]
