from .augment import PADDING, RandomScale, cutmix_mask, normalization, strong_augmentation, weak_augmentation
from .embedded import EMBEDDED_CLASSES, load_embedded, load_fashion_mnist, make_fashion_scenes, stream_fashion_scenes
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
from .paired import (
    GROUPED_FIELDS,
    CutMixSettings,
    EvaluationDataset,
    SemiSupervisedDataset,
    TrainingItems,
    pad_collate,
    semi_supervised_collate,
)
from .streamed import SemiSupervisedStream, training_dataset
from .training_data import DataSource, TrainingData, load_evaluation_data, load_training_data
from .splits import HIDDEN_LABEL, dataset_from_list, hide_labels, read_split_list, split_from_lists, split_labeled_unlabeled

__all__ = [
    "CITYSCAPES_CLASSES",
    "CutMixSettings",
    "EMBEDDED_CLASSES",
    "EvaluationDataset",
    "HIDDEN_LABEL",
    "IGNORE_INDEX",
    "PADDING",
    "RandomScale",
    "GROUPED_FIELDS",
    "SemiSupervisedDataset",
    "SemiSupervisedStream",
    "TrainingItems",
    "DataSource",
    "TrainingData",
    "VOC_CLASSES",
    "check_pair",
    "cityscapes_label_ids_to_train_ids",
    "cutmix_mask",
    "dataset_from_list",
    "hide_labels",
    "label_array",
    "load_cityscapes",
    "load_embedded",
    "load_fashion_mnist",
    "load_folders",
    "load_hub",
    "load_evaluation_data",
    "load_training_data",
    "load_voc",
    "make_fashion_scenes",
    "normalization",
    "pad_collate",
    "read_split_list",
    "split_from_lists",
    "split_labeled_unlabeled",
    "stream_fashion_scenes",
    "strong_augmentation",
    "to_normal_form",
    "semi_supervised_collate",
    "training_dataset",
    "weak_augmentation",
]
