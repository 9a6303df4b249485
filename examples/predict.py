"""Writes colourised masks and overlays for every image of a folder.

python examples/predict.py --model outputs/fpl-embedded --images my_images/ --output_dir outputs/predictions
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

import fpl_hf  # noqa: F401  (registers the Auto classes)
from fpl_hf.data.loaders import IMAGE_SUFFIXES
from fpl_hf.modeling.inference import predict_logits
from fpl_hf.viz import colorize, overlay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Model directory or Hub id.")
    parser.add_argument("--images", required=True, help="Folder of images.")
    parser.add_argument("--output_dir", default="outputs/predictions")
    parser.add_argument("--mode", default="whole", choices=["whole", "slide"])
    parser.add_argument("--crop_size", type=int)
    parser.add_argument("--flip", action="store_true")
    args = parser.parse_args()

    model = AutoModelForSemanticSegmentation.from_pretrained(args.model).eval()
    processor = AutoImageProcessor.from_pretrained(args.model)
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(f"No images ({', '.join(IMAGE_SUFFIXES)}) in {args.images}.")
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    for path in paths:
        try:
            image = Image.open(path).convert("RGB")
        except OSError as error:
            raise SystemExit(f"{path}: not a readable image ({error}).") from error
        pixels = processor(image, do_pad=False, return_tensors="pt")["pixel_values"]
        with torch.no_grad():
            mask = predict_logits(model, pixels, mode=args.mode, crop_size=args.crop_size, flip=args.flip).argmax(1)[0]
        colorize(mask.numpy(), model.config.num_labels).save(output / f"{path.stem}_mask.png")
        overlay(image, mask.numpy(), model.config.num_labels).save(output / f"{path.stem}_overlay.png")
    print(f"{len(paths)} images -> {output}")


if __name__ == "__main__":
    main()
