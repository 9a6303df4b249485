"""Memory and step time of each recipe's model at its crop size: one training pass (forward, cross-entropy,
backward) on a batch of 2 (BatchNorm's image pooling needs two in train mode), random weights (no download).

    python benchmarks/bench_models.py                       # every recipe model (CPU: a few minutes)
    python benchmarks/bench_models.py --models segformer-b0 dinov2-s-dpt --repeats 3
    python benchmarks/bench_models.py --device cuda

A semi-supervised step runs several such passes (CPS: both branches on labeled and mixed images, with no-grad
teacher passes; UniMatch V2: labeled, two strong views, a teacher pass), so a step costs a few times these figures.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from _measure import median_seconds, peak_bytes
from transformers import SegformerConfig, SegformerForSemanticSegmentation

from fpl_hf import (
    DeepLabV3PlusConfig,
    DeepLabV3PlusForSemanticSegmentation,
    TimmDPTConfig,
    TimmDPTForSemanticSegmentation,
)
from fpl_hf.launchers import describe_device
from fpl_hf.modeling.transformers_segmenter import TransformersSegmenter


def segformer(hidden_sizes: list[int], depths: list[int], decoder: int) -> Callable[[int], torch.nn.Module]:
    return lambda num_labels: TransformersSegmenter(
        SegformerForSemanticSegmentation(
            SegformerConfig(
                hidden_sizes=hidden_sizes, depths=depths, decoder_hidden_size=decoder, num_labels=num_labels
            )
        )
    )


def dinov2_dpt(backbone: str, channels: list[int], features: int) -> Callable[[int], torch.nn.Module]:
    return lambda num_labels: TimmDPTForSemanticSegmentation(
        TimmDPTConfig(backbone=backbone, dpt_out_channels=channels, dpt_features=features, num_labels=num_labels)
    )


# name: (model builder, classes, crop, the recipes that use it)
MODELS = {
    "deeplabv3plus-r101": (
        lambda num_labels: DeepLabV3PlusForSemanticSegmentation(
            DeepLabV3PlusConfig(backbone="resnet101d", num_labels=num_labels)
        ),
        21,
        512,
        "voc_aug_cps_fpl, voc_unimatch_v2_fpl",
    ),
    "dinov2-s-dpt": (
        dinov2_dpt("vit_small_patch14_dinov2", [48, 96, 192, 384], 64),
        21,
        518,
        "voc_unimatch_v2_dinov2_s_fpl",
    ),
    "dinov2-b-dpt": (
        dinov2_dpt("vit_base_patch14_dinov2", [96, 192, 384, 768], 128),
        21,
        518,
        "voc_unimatch_v2_dinov2_b_fpl",
    ),
    "dinov2-s-dpt-798": (
        dinov2_dpt("vit_small_patch14_dinov2", [48, 96, 192, 384], 64),
        19,
        798,
        "cityscapes_unimatch_v2_dinov2_s_fpl",
    ),
    "dinov2-b-dpt-798": (
        dinov2_dpt("vit_base_patch14_dinov2", [96, 192, 384, 768], 128),
        19,
        798,
        "cityscapes_unimatch_v2_dinov2_b_fpl",
    ),
    "segformer-b0": (segformer([32, 64, 160, 256], [2, 2, 2, 2], 256), 150, 512, "ade20k_segformer_b0_cps_fpl"),
    "segformer-b2": (segformer([64, 128, 320, 512], [3, 4, 6, 3], 768), 150, 512, "ade20k_segformer_b2_cps_fpl"),
}


def one_training_pass(model: torch.nn.Module, pixels: torch.Tensor, labels: torch.Tensor) -> None:
    F.cross_entropy(model(pixel_values=pixels).logits, labels).backward()
    model.zero_grad(set_to_none=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    device = torch.device(options.device)
    print(f"Device: {describe_device(device)}; torch {torch.__version__}; one training pass on a batch of 2.")
    print("| model | recipes | crop | parameters | time per image | peak memory, batch of 2 |")
    print("|---|---|---|---|---|---|")
    for name in options.models:
        build, num_labels, crop, recipes = MODELS[name]
        torch.manual_seed(0)
        model = build(num_labels).to(device).train()
        pixels = torch.randn(2, 3, crop, crop, device=device)
        labels = torch.randint(0, num_labels, (2, crop, crop), device=device)

        training_pass = partial(one_training_pass, model, pixels, labels)
        seconds = median_seconds(training_pass, device, repeats=options.repeats, warmup=1) / 2
        peak = peak_bytes(training_pass, device)
        parameters = sum(p.numel() for p in model.parameters())
        print(
            f"| {name} | {recipes} | {crop} | {parameters / 1e6:.1f} M | {seconds:.2f} s | {peak / 2**30:.2f} GiB |",
            flush=True,
        )


if __name__ == "__main__":
    main()
