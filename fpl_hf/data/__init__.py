from .augment import (
    STRONG_VIEW_KINDS,
    RandomIntensity,
    RandomScale,
    ResizeLongestSide,
    cutmix_mask,
    longest_side_size,
    normalize_images,
    strong_augmentation,
    weak_augmentation,
)
from .borders import FAINT_CONTRAST, BorderContrast, border_contrast, faint_border_note
from .check import DataCheckError, check_run_data, check_samples
from .collate import GROUPED_FIELDS, pad_collate, prepared_batch, semi_supervised_collate
from .embedded import EMBEDDED_CLASSES, load_embedded, load_fashion_mnist, make_fashion_scenes, stream_fashion_scenes
from .evaluation_dataset import EvaluationDataset
from .inia19 import INIA19_CLASSES, INIA19_NUM_CLASSES, inia19_slices, region_groups, slice_plan
from .loaders import (
    CITYSCAPES_CLASSES,
    VOC_CLASSES,
    cityscapes_label_ids_to_train_ids,
    load_cityscapes,
    load_folders,
    load_hub,
    load_voc,
)
from .normal_form import IGNORE_INDEX, check_pair, label_array, to_normal_form
from .samples import Sample, checked_sample, load_sample, read_image
from .sources import DataSource, TrainingData, load_evaluation_data, load_training_data
from .splits import (
    DIAGNOSTIC_LABEL,
    as_unlabeled,
    dataset_from_list,
    read_split_list,
    split_from_lists,
    split_labeled_unlabeled,
)
from .streamed import SemiSupervisedStream
from .training_dataset import training_dataset
from .training_items import CutMixSettings, SemiSupervisedDataset, TrainingItems

__all__ = [
    "FAINT_CONTRAST",
    "BorderContrast",
    "border_contrast",
    "faint_border_note",
    "CITYSCAPES_CLASSES",
    "INIA19_CLASSES",
    "INIA19_NUM_CLASSES",
    "STRONG_VIEW_KINDS",
    "RandomIntensity",
    "ResizeLongestSide",
    "inia19_slices",
    "longest_side_size",
    "region_groups",
    "slice_plan",
    "DIAGNOSTIC_LABEL",
    "EMBEDDED_CLASSES",
    "GROUPED_FIELDS",
    "IGNORE_INDEX",
    "VOC_CLASSES",
    "CutMixSettings",
    "DataCheckError",
    "DataSource",
    "EvaluationDataset",
    "RandomScale",
    "Sample",
    "SemiSupervisedDataset",
    "SemiSupervisedStream",
    "TrainingData",
    "TrainingItems",
    "as_unlabeled",
    "check_pair",
    "check_run_data",
    "check_samples",
    "checked_sample",
    "cityscapes_label_ids_to_train_ids",
    "cutmix_mask",
    "dataset_from_list",
    "label_array",
    "load_cityscapes",
    "load_embedded",
    "load_evaluation_data",
    "load_fashion_mnist",
    "load_folders",
    "load_hub",
    "load_sample",
    "load_training_data",
    "load_voc",
    "make_fashion_scenes",
    "normalize_images",
    "pad_collate",
    "prepared_batch",
    "read_image",
    "read_split_list",
    "semi_supervised_collate",
    "split_from_lists",
    "split_labeled_unlabeled",
    "stream_fashion_scenes",
    "strong_augmentation",
    "to_normal_form",
    "training_dataset",
    "weak_augmentation",
]
