"""Images a second and peak memory of one semi-supervised training step of each shipped recipe's model, at its crop
and batch, bf16 autocast, eager and compiled: the rate to hold against UniMatch V2's logs (DINOv2-B at 518 px on VOC:
13.8 unlabeled images a second on 4 A100s, fp32; Cityscapes at 798 px: 3.7).

    python benchmarks/bench_gpu_step.py                                   # on the GPU, every recipe
    python benchmarks/bench_gpu_step.py --recipes voc_unimatch_v2_dinov2_b_fpl --steps 20
    python benchmarks/bench_gpu_step.py --tiny --device cpu --compile_backend aot_eager   # the path, at a tiny size

Each step is FPLTrainer's own (`training_step`, the framework's step with its teachers, then the optimizer) on a
batch already on the device (random images: the data pipeline is `bench_data.py`'s), random weights (no download).
`--tiny` swaps each model for a tiny one of its family, at crop 42 and 2 + 2 images, so the CPU runs the same path.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from _measure import PeakMemory
from bench_models import MODELS
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from fpl_hf import (
    DeepLabV3PlusConfig,
    DeepLabV3PlusForSemanticSegmentation,
    TimmDPTConfig,
    TimmDPTForSemanticSegmentation,
)
from fpl_hf.data import cutmix_mask, prepared_batch
from fpl_hf.launchers import describe_device
from fpl_hf.modeling.transformers_segmenter import TransformersSegmenter
from fpl_hf.trainer import FPLConfig, FPLTrainer
from fpl_hf.trainer.argument_parser import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "examples" / "configs"
# recipe: the model of bench_models.py it trains
RECIPES = {
    "voc_aug_cps_fpl": "deeplabv3plus-r101",
    "voc_unimatch_v2_fpl": "deeplabv3plus-r101",
    "voc_unimatch_v2_dinov2_s_fpl": "dinov2-s-dpt",
    "voc_unimatch_v2_dinov2_b_fpl": "dinov2-b-dpt",
    "cityscapes_unimatch_v2_dinov2_s_fpl": "dinov2-s-dpt-798",
    "cityscapes_unimatch_v2_dinov2_b_fpl": "dinov2-b-dpt-798",
    "ade20k_segformer_b0_cps_fpl": "segformer-b0",
    "ade20k_segformer_b2_cps_fpl": "segformer-b2",
}


def tiny_model(name: str, num_labels: int) -> torch.nn.Module:
    """A model of the family of `name` (bench_models.py) small enough for a CPU test."""
    if name.startswith("deeplabv3plus"):
        config = DeepLabV3PlusConfig(
            backbone="test_resnet",
            aspp_channels=16,
            decoder_channels=16,
            low_level_channels=8,
            aspp_rates=[1, 2, 3],
            num_labels=num_labels,
        )
        return DeepLabV3PlusForSemanticSegmentation(config)
    if "dinov2" in name:
        return TimmDPTForSemanticSegmentation(
            TimmDPTConfig(
                backbone="vit_small_patch14_dinov2",
                out_indices=[0, 1, 2, 3],
                dpt_out_channels=[8, 8, 16, 16],
                dpt_features=16,
                num_labels=num_labels,
                backbone_kwargs={"embed_dim": 32, "depth": 4, "num_heads": 2, "img_size": 28},
            )
        )
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 1],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=num_labels,
    )
    return TransformersSegmenter(SegformerForSemanticSegmentation(config))


def random_batch(args: FPLConfig, num_labels: int, device: torch.device) -> dict[str, torch.Tensor]:
    """A batch of the framework's items (`SemiSupervisedBatch`), normalised, on `device`."""
    size, labeled, unlabeled = args.crop_size, args.per_device_train_batch_size, args.per_device_unlabeled_batch_size
    options = args.train_dataset_options()
    views, count, masks = options["num_strong_views"], options["num_unlabeled"], options["num_cutmix_masks"]
    images = lambda *shape: torch.randint(0, 256, (*shape, 3, size, size), dtype=torch.uint8)  # noqa: E731
    batch = {"pixel_values": images(labeled), "labels": torch.randint(0, num_labels, (labeled, size, size))}
    if count:
        batch["unlabeled_pixel_values"] = images(unlabeled, count)
        batch["unlabeled_valid"] = torch.ones(unlabeled, count, size, size, dtype=torch.bool)
        batch["unlabeled_diagnostic_labels"] = torch.full((unlabeled, count, size, size), 255)
    if views:
        batch["unlabeled_strong_pixel_values"] = images(unlabeled, count, views)
    if masks:
        batch["cutmix_masks"] = torch.stack(
            [
                torch.stack(
                    [
                        cutmix_mask(
                            size,
                            size,
                            num_boxes=args.cutmix_num_boxes,
                            area_range=(args.cutmix_area_min, args.cutmix_area_max),
                        ).bool()
                        for _ in range(masks)
                    ]
                )
                for _ in range(unlabeled)
            ]
        )
    return prepared_batch(
        {name: value.to(device) for name, value in batch.items()}, [0.5] * 3, [0.5] * 3, args.channels_last
    )


def measure(recipe: str, compiled: bool, options: argparse.Namespace, device: torch.device) -> dict:
    model_name = RECIPES[recipe]
    build, num_labels, crop, _ = MODELS[model_name]
    values = load_config(CONFIGS / f"{recipe}.yaml")
    args = FPLConfig(
        output_dir=tempfile.mkdtemp(),
        framework=values["framework"],
        crop_size=42 if options.tiny else crop,
        per_device_train_batch_size=2 if options.tiny else values.get("per_device_train_batch_size", 8),
        per_device_unlabeled_batch_size=2 if options.tiny else values.get("per_device_unlabeled_batch_size"),
        bf16=options.bf16,
        use_cpu=device.type == "cpu",
        max_steps=100,
        report_to="none",
        optim="adamw_torch",
        channels_last=options.channels_last,
    )
    torch.manual_seed(0)
    model = tiny_model(model_name, num_labels) if options.tiny else build(num_labels)
    trainer = FPLTrainer(model.to(device), args)
    trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
    trainer.current_gradient_accumulation_steps = 1  # set by train(), which this drives by hand
    network = torch.compile(trainer.model, backend=options.compile_backend) if compiled else trainer.model
    batch = random_batch(args, num_labels, device)

    def step() -> float:
        loss = trainer.training_step(network, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        return float(loss)

    for _ in range(options.warmup):  # compilation happens here
        step()
    times = []
    with PeakMemory(device) as memory:
        for _ in range(options.steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "recipe": recipe,
        "model": model_name,
        "framework": args.framework,
        "crop": args.crop_size,
        "labeled": args.per_device_train_batch_size,
        "unlabeled": args.per_device_unlabeled_batch_size,
        "mode": "compiled" if compiled else "eager",
        "seconds": seconds,
        "peak": memory.peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=10, help="Measured steps (the median is printed).")
    parser.add_argument("--warmup", type=int, default=3, help="Steps before the measure (compilation included).")
    parser.add_argument("--tiny", action="store_true", help="Tiny models of each family, crop 42, 2 + 2 images.")
    parser.add_argument("--no_bf16", dest="bf16", action="store_false", help="fp32 instead of bf16 autocast.")
    parser.add_argument("--channels_last", action="store_true", help="NHWC networks and batches.")
    parser.add_argument("--compile_backend", default="inductor", help="torch.compile backend of the compiled rows.")
    options = parser.parse_args()
    device = torch.device(options.device)
    print(f"device: {describe_device(device)}, torch {torch.__version__}, {'bf16' if options.bf16 else 'fp32'}")
    print(
        "| recipe | model | framework | crop | images a step (labeled + unlabeled) | mode | s/step "
        "| labeled img/s | unlabeled img/s | peak memory GiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for recipe in options.recipes:
        for compiled in (False, True):
            row = measure(recipe, compiled, options, device)
            print(
                f"| {row['recipe']} | {row['model']} | {row['framework']} | {row['crop']} | {row['labeled']} + "
                f"{row['unlabeled']} | {row['mode']} | {row['seconds']:.3f} | {row['labeled'] / row['seconds']:.2f} "
                f"| {row['unlabeled'] / row['seconds']:.2f} | {row['peak'] / 2**30:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
