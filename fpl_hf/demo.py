"""What the demo page shows of a trained model: its segmentation of an image (as `pipeline("image-segmentation")`
computes it), the overlay with a legend, each class's share of the pixels, and the fuzzy positive set sizes that
FPA gives on the model's own probabilities."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from .losses import fuzzy_positive_assignment
from .viz import K_COLOURS, colorize_k, overlay, palette


@dataclass
class Segmentation:
    """A model's reading of one image: the class of each pixel and the probabilities it came from."""

    image: Image.Image
    classes: np.ndarray  # (H, W) class ids
    probabilities: torch.Tensor  # (1, C, H, W), at the image's size


def displayable(image: Image.Image) -> Image.Image:
    """An upload as RGB: grey and palette images converted, transparent ones flattened onto white."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def enlarged(picture: Image.Image, display_side: int = 320) -> Image.Image:
    """A small picture (a 64-pixel scene's overlay or K map) made larger for the page by the whole factor that
    brings its longer side nearest `display_side` without passing it, each pixel repeated (nearest): every shown
    pixel is one of the picture's exactly."""
    factor = max(1, display_side // max(picture.size))
    return picture.resize((picture.width * factor, picture.height * factor), Image.NEAREST)


class DemoModel:
    """A model `run_fpl.py` saved (fpl_hf's or any transformers segmentation model; a folder or a Hub id) and its
    image processor, as `pipeline("image-segmentation")` loads them."""

    def __init__(self, name_or_path: str):
        local = os.path.isdir(name_or_path)
        if local and not os.path.isfile(os.path.join(name_or_path, "config.json")):
            raise ValueError(
                f"{name_or_path} is not a model folder: it has no config.json. Give the output directory of "
                "run_fpl.py (config.json, model.safetensors, preprocessor_config.json) or a Hub model id."
            )
        try:
            self.model = AutoModelForSemanticSegmentation.from_pretrained(name_or_path).eval()
            self.processor = AutoImageProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError) as error:
            raise ValueError(f"Could not load a segmentation model from {name_or_path}: {error}") from error
        self.name = name_or_path
        self.class_names = [self.model.config.id2label[index] for index in range(self.model.config.num_labels)]

    @torch.no_grad()
    def segment(self, image: Image.Image) -> Segmentation:
        image = displayable(image)
        inputs = self.processor(images=image, return_tensors="pt")
        outputs = self.model(**inputs)
        size = (image.height, image.width)
        classes = self.processor.post_process_semantic_segmentation(outputs, target_sizes=[size])[0]
        logits = F.interpolate(outputs.logits.float(), size=size, mode="bilinear", align_corners=False)
        return Segmentation(image, classes.numpy(), torch.softmax(logits, 1))

    def overlay(self, segmentation: Segmentation) -> Image.Image:
        return overlay(segmentation.image, segmentation.classes, len(self.class_names))

    def legend(self, segmentation: Segmentation) -> str:
        """An HTML table: each present class's colour, name and share of the image's pixels, the largest first."""
        counts = np.bincount(segmentation.classes.ravel(), minlength=len(self.class_names))
        colours = palette(len(self.class_names))
        rows = []
        for index in np.argsort(-counts, kind="stable")[: np.count_nonzero(counts)]:
            colour = "#" + bytes(colours[index]).hex()
            rows.append(
                f'<tr><td><span style="display:inline-block;width:1em;height:1em;background:{colour}">'
                f"</span></td><td>{html.escape(self.class_names[index])}</td>"
                f"<td>{100 * counts[index] / counts.sum():.1f}%</td></tr>"
            )
        return "<table><tr><th></th><th>class</th><th>share of pixels</th></tr>" + "".join(rows) + "</table>"

    @staticmethod
    def k_map(segmentation: Segmentation, threshold: float) -> Image.Image:
        """K of each pixel: the size of the fuzzy positive set FPA gives at `threshold` on the model's own
        probabilities (the released code's semantics: K <= 3)."""
        _, k = fuzzy_positive_assignment(segmentation.probabilities, threshold)
        return colorize_k(k[0].numpy())

    @staticmethod
    def k_legend() -> str:
        names = ("K = 1: one class", "K = 2", "K = 3 or more")
        return " ".join(
            f'<span style="background:#{bytes(colour).hex()};color:white;padding:0 .4em">{name}</span>'
            for colour, name in zip(K_COLOURS, names)
        )


__all__ = ["DemoModel", "Segmentation", "displayable", "enlarged"]
