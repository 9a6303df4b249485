"""The embedded default data set: multi-garment scenes made from Fashion-MNIST, with per-pixel classes.

Fashion-MNIST garments lie on exact black, so thresholding gives their masks. Two or three garments are pasted at
random positions, scales and tints onto a smooth coloured background. The ten Fashion-MNIST labels are grouped
into five garment types (top, trouser, dress, footwear, bag): at 64x64 pixels the ten fine labels are learnt too
slowly for a CPU budget (docs/evidence.md, "The embedded benchmark, and how it was chosen"), while tops and dresses
stay alike enough for pseudo-labels to go wrong.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from datasets import Dataset, Features, Image, IterableDataset
from PIL import Image as PILImage

FASHION_MNIST_DIR = Path(os.environ.get("FPL_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
EMBEDDED_CLASSES = ("background", "top", "trouser", "dress", "footwear", "bag")
# Labeled scenes of a run on the embedded data unless it says otherwise (`DataSource.num_labeled`).
EMBEDDED_NUM_LABELED = 20
# Fashion-MNIST label -> scene class: t-shirt/top, pullover, coat and shirt are tops; sandal, sneaker and ankle
# boot are footwear.
GARMENT_TYPE = np.array([1, 2, 1, 3, 1, 4, 1, 4, 5, 4], dtype=np.uint8)
# A garment's side is 28 pixels times a factor in this range, at a 64-pixel scene (scaled with the scene).
GARMENT_SCALE = (1.5, 2.1)
_FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}
# Garment pixels: Fashion-MNIST backgrounds are exactly 0; a small margin drops resampling halos.
_GARMENT_THRESHOLD = 24


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load_fashion_mnist(split: str = "train", directory: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images (N, 28, 28) and labels (N,) of `split` ("train" or "test")."""
    if split not in _FILES:
        raise ValueError(f"`split` must be 'train' or 'test', got {split!r}.")
    directory = Path(directory or FASHION_MNIST_DIR)
    images_path = directory / _FILES[split]
    labels_path = directory / _FILES[split].replace("images-idx3", "labels-idx1")
    if images_path.is_file() and labels_path.is_file():
        return _read_idx(images_path), _read_idx(labels_path)
    return _fashion_mnist_from_hub(split, directory)


def _fashion_mnist_from_hub(split: str, directory: Path) -> tuple[np.ndarray, np.ndarray]:
    from datasets import load_dataset

    try:
        dataset = load_dataset("zalando-datasets/fashion_mnist", split=split)
    except Exception as error:  # any failure means: not on disk and not reachable
        raise FileNotFoundError(
            f"Fashion-MNIST is not in {directory} and could not be loaded from the Hub ({type(error).__name__}). "
            "Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set "
            "FPL_FASHION_MNIST_DIR to a folder with the four *-idx*-ubyte.gz files."
        ) from error
    images = np.stack([np.asarray(image, dtype=np.uint8) for image in dataset["image"]])
    return images, np.asarray(dataset["label"], dtype=np.uint8)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth coloured blobs with a little grain, in the brightness range of the garments."""
    coarse = rng.uniform(0, 1, size=(4, 4, 3)).astype(np.float32)
    smooth = np.asarray(
        PILImage.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), PILImage.BICUBIC), dtype=np.float32
    )
    grain = rng.normal(0, 8, size=(size, size, 3))
    return np.clip(smooth * rng.uniform(0.3, 0.8) + grain, 0, 255)


def make_scene(
    rng: np.random.Generator, garments: np.ndarray, classes: np.ndarray, size: int, objects: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """One RGB scene (size, size, 3) and its mask (size, size): the garment type (`GARMENT_TYPE`), 0 = background."""
    canvas = _background(rng, size)
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(rng.integers(objects[0], objects[1] + 1)):
        # Each garment type is equally likely (Fashion-MNIST has four kinds of tops and one of dresses).
        index = rng.choice(np.flatnonzero(GARMENT_TYPE[classes] == rng.integers(1, len(EMBEDDED_CLASSES))))
        side = int(round(28 * rng.uniform(*GARMENT_SCALE) * size / 64))
        side = min(max(side, 8), size)
        garment = np.asarray(PILImage.fromarray(garments[index]).resize((side, side), PILImage.BILINEAR), np.float32)
        inside = garment > _GARMENT_THRESHOLD
        top, left = rng.integers(0, size - side + 1, size=2)
        tint = rng.uniform(0.35, 1.0, size=3)
        region = canvas[top : top + side, left : left + side]
        region[inside] = garment[inside, None] * tint + rng.normal(0, 10, size=(int(inside.sum()), 3))
        mask[top : top + side, left : left + side][inside] = GARMENT_TYPE[classes[index]]
    return np.clip(canvas, 0, 255).astype(np.uint8), mask


def make_fashion_scenes(
    num_scenes: int, *, size: int = 64, split: str = "train", seed: int = 0, objects: tuple[int, int] = (2, 3)
) -> Dataset:
    """`num_scenes` scenes in the normal form; train scenes use Fashion-MNIST train images, others its test images."""
    if num_scenes < 1 or size < 16:
        raise ValueError(f"`num_scenes` must be >= 1 and `size` >= 16, got {num_scenes} and {size}.")
    garments, classes = load_fashion_mnist("train" if split == "train" else "test")
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    scenes = [make_scene(rng, garments, classes, size, objects) for _ in range(num_scenes)]
    return Dataset.from_dict(
        {
            "image": [PILImage.fromarray(image) for image, _ in scenes],
            "label": [PILImage.fromarray(m) for _, m in scenes],
        },
        features=Features({"image": Image(), "label": Image()}),
    )


def stream_fashion_scenes(num_scenes: int, *, size: int = 64, seed: int = 0, num_shards: int = 64) -> IterableDataset:
    """`num_scenes` unlabeled training scenes made as they are read, never held: scene k is drawn from its own
    generator (seed, k), in `num_shards` shards of consecutive scenes. An unlabeled pool of any size for streaming."""
    if num_scenes < num_shards:
        raise ValueError(f"`num_scenes` ({num_scenes}) must be at least `num_shards` ({num_shards}).")
    bounds = np.linspace(0, num_scenes, num_shards + 1).astype(int)
    return IterableDataset.from_generator(
        _scenes_of_shards,
        features=Features({"image": Image()}),
        gen_kwargs={"ranges": [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])], "size": size, "seed": seed},
    )


def _scenes_of_shards(ranges: list[tuple[int, int]], size: int, seed: int) -> Iterator[dict[str, PILImage.Image]]:
    garments, classes = load_fashion_mnist("train")
    for start, stop in ranges:
        for index in range(start, stop):
            image, _ = make_scene(np.random.default_rng([seed, 2, index]), garments, classes, size, (2, 3))
            yield {"image": PILImage.fromarray(image)}


def load_embedded(
    num_train: int = 1000, num_validation: int = 200, *, size: int = 64, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Train and validation scenes of the embedded default data set (6 classes, `EMBEDDED_CLASSES`)."""
    return (
        make_fashion_scenes(num_train, size=size, split="train", seed=seed),
        make_fashion_scenes(num_validation, size=size, split="validation", seed=seed),
    )


__all__ = [
    "EMBEDDED_CLASSES",
    "EMBEDDED_NUM_LABELED",
    "GARMENT_TYPE",
    "load_embedded",
    "load_fashion_mnist",
    "make_fashion_scenes",
    "make_scene",
    "stream_fashion_scenes",
]
