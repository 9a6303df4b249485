"""One call from data-set arguments to the labeled, unlabeled and validation parts of a run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from datasets import Dataset

from .embedded import EMBEDDED_CLASSES, make_fashion_scenes
from .loaders import CITYSCAPES_CLASSES, VOC_CLASSES, load_cityscapes, load_folders, load_hub, load_voc
from .splits import split_from_lists, split_labeled_unlabeled


@dataclass
class TrainingData:
    labeled: Dataset
    unlabeled: Dataset
    validation: Dataset
    class_names: tuple[str, ...]


def _generic_names(num_labels: Optional[int], dataset: str) -> tuple[str, ...]:
    if not num_labels:
        raise ValueError(f"`num_labels` is required for dataset {dataset!r} (how many classes its masks hold).")
    return tuple(f"class_{index}" for index in range(num_labels))


def _required(value: Optional[str], name: str, dataset: str) -> str:
    if not value:
        raise ValueError(f"`{name}` is required for dataset {dataset!r}.")
    return value


def _load(
    dataset: str,
    *,
    data_root: Optional[str],
    images_dir: Optional[str],
    masks_dir: Optional[str],
    unlabeled_dir: Optional[str],
    validation_images_dir: Optional[str],
    validation_masks_dir: Optional[str],
    num_labels: Optional[int],
    train_split: Optional[str],
    validation_split: str,
    image_column: Optional[str],
    label_column: Optional[str],
    num_train_scenes: int,
    num_validation_scenes: int,
    scene_size: int,
    seed: int,
) -> tuple[Optional[Dataset], Optional[Dataset], Dataset, tuple[str, ...]]:
    """(train, unlabeled folder, validation, class names); `train_split=None` skips the training part."""
    unlabeled = None
    if dataset == "embedded":
        train = make_fashion_scenes(num_train_scenes, size=scene_size, seed=seed) if train_split else None
        validation = make_fashion_scenes(num_validation_scenes, size=scene_size, split="validation", seed=seed)
        names = EMBEDDED_CLASSES
    elif dataset in ("voc", "voc_aug"):
        root = _required(data_root, "data_root", dataset)
        train = load_voc(root, "train", aug=dataset == "voc_aug") if train_split else None
        validation, names = load_voc(root, "val"), VOC_CLASSES
    elif dataset == "cityscapes":
        root = _required(data_root, "data_root", dataset)
        train = load_cityscapes(root, "train") if train_split else None
        validation, names = load_cityscapes(root, "val"), CITYSCAPES_CLASSES
    elif dataset == "folders":
        train = None
        if train_split:
            train, unlabeled = load_folders(
                _required(images_dir, "images_dir", dataset), _required(masks_dir, "masks_dir", dataset), unlabeled_dir
            )
        validation, _ = load_folders(
            _required(validation_images_dir, "validation_images_dir", dataset),
            _required(validation_masks_dir, "validation_masks_dir", dataset),
        )
        names = _generic_names(num_labels, dataset)
    else:
        columns = dict(image_column=image_column, label_column=label_column)
        train = load_hub(dataset, train_split, **columns) if train_split else None
        validation = load_hub(dataset, validation_split, **columns)
        names = _generic_names(num_labels, dataset)
    return train, unlabeled, validation, tuple(names)


def load_training_data(
    dataset: str = "embedded",
    *,
    data_root: Optional[str] = None,
    labeled_list: Optional[str] = None,
    unlabeled_list: Optional[str] = None,
    num_labeled: Optional[int] = None,
    labeled_fraction: Optional[str] = None,
    all_labeled: bool = False,
    images_dir: Optional[str] = None,
    masks_dir: Optional[str] = None,
    unlabeled_dir: Optional[str] = None,
    validation_images_dir: Optional[str] = None,
    validation_masks_dir: Optional[str] = None,
    num_labels: Optional[int] = None,
    train_split: str = "train",
    validation_split: str = "validation",
    image_column: Optional[str] = None,
    label_column: Optional[str] = None,
    num_train_scenes: int = 1000,
    num_validation_scenes: int = 200,
    scene_size: int = 64,
    seed: int = 0,
) -> TrainingData:
    """Loads `dataset` and splits it: by split lists when given, else by `num_labeled` or `labeled_fraction`;
    `all_labeled` keeps every training label, whatever `num_labeled` or `labeled_fraction` say (the fully
    supervised oracle that bounds what unlabeled images can add).

    `dataset`: "embedded", "voc", "voc_aug" (10,582 images with SegmentationClassAug), "cityscapes", "folders",
    or any `datasets` name or local path.
    """
    train, unlabeled, validation, names = _load(
        dataset, data_root=data_root, images_dir=images_dir, masks_dir=masks_dir, unlabeled_dir=unlabeled_dir,
        validation_images_dir=validation_images_dir, validation_masks_dir=validation_masks_dir,
        num_labels=num_labels, train_split=train_split, validation_split=validation_split,
        image_column=image_column, label_column=label_column, num_train_scenes=num_train_scenes,
        num_validation_scenes=num_validation_scenes, scene_size=scene_size, seed=seed,
    )
    if all_labeled:
        if unlabeled is not None or labeled_list or unlabeled_list:
            raise ValueError("`all_labeled` trains on every label of the training split: drop the split lists or "
                             "the unlabeled folder.")
        labeled, unlabeled = train, train.select([])
    elif labeled_list or unlabeled_list:
        labeled, unlabeled = split_from_lists(
            _required(data_root, "data_root", dataset),
            _required(labeled_list, "labeled_list", dataset),
            _required(unlabeled_list, "unlabeled_list", dataset),
        )
    elif unlabeled is not None:
        labeled = train
    else:
        labeled, unlabeled = split_labeled_unlabeled(train, num_labeled=num_labeled, fraction=labeled_fraction, seed=seed)
    return TrainingData(labeled=labeled, unlabeled=unlabeled, validation=validation, class_names=names)


def load_evaluation_data(
    dataset: str = "embedded",
    *,
    data_root: Optional[str] = None,
    images_dir: Optional[str] = None,
    masks_dir: Optional[str] = None,
    num_labels: Optional[int] = None,
    validation_split: str = "validation",
    image_column: Optional[str] = None,
    label_column: Optional[str] = None,
    num_validation_scenes: int = 200,
    scene_size: int = 64,
    seed: int = 0,
) -> Dataset:
    """The validation part of `dataset` alone (for "folders": `images_dir` and `masks_dir`)."""
    _, _, validation, _ = _load(
        dataset, data_root=data_root, images_dir=None, masks_dir=None, unlabeled_dir=None,
        validation_images_dir=images_dir, validation_masks_dir=masks_dir, num_labels=num_labels or 2,
        train_split=None, validation_split=validation_split, image_column=image_column, label_column=label_column,
        num_train_scenes=0, num_validation_scenes=num_validation_scenes, scene_size=scene_size, seed=seed,
    )
    return validation


__all__ = ["TrainingData", "load_evaluation_data", "load_training_data"]
