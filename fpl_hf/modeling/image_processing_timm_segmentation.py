"""Image processor of fpl_hf's networks (DeepLabv3+, DPT): rescale, normalize, pad; and the semantic post-processing."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from transformers.image_processing_backends import TorchvisionBackend
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling


def grey(images: torch.Tensor) -> torch.Tensor:
    """Float colour images (..., 3, H, W) as grey (..., 1, H, W): ITU-R 601 luma, whose weights add up to 1, so
    that an image saved as three equal channels keeps its grey levels."""
    luma = images.new_tensor([0.299, 0.587, 0.114])
    return (images * luma[:, None, None]).sum(-3, keepdim=True)


class TimmSegmentationImageProcessor(TorchvisionBackend):
    r"""Turns images into `pixel_values` for fpl_hf's networks (`DeepLabV3PlusForSemanticSegmentation`,
    `TimmDPTForSemanticSegmentation`).

    By default images keep their size (the network takes any size), are rescaled to [0, 1], normalized with the
    ImageNet mean and std (pass the backbone's, e.g. 0.5/0.5 for `tf_efficientnet_lite0`), and padded to the
    largest image of the batch. `do_resize=True` with `size={"height": h, "width": w}` resizes first, with
    `size={"max_height": s, "max_width": s}` so that the longer side is s (as training's `image_size`). With one
    `image_mean` (a one-channel network) colour images become grey (ITU-R 601 luma; equal channels stay exact).
    """

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    do_resize = False
    do_rescale = True
    do_normalize = True
    do_pad = True

    def process_image(self, *args, **kwargs) -> torch.Tensor:
        image = super().process_image(*args, **kwargs)
        mean = self.image_mean
        if isinstance(mean, (list, tuple)) and len(mean) == 1 and image.shape[0] in (3, 4):
            image = grey(image[:3].float()).round().clamp(0, 255).to(image.dtype)
        return image

    def to_dict(self) -> dict:
        # No `image_processor_type`: AutoImageProcessor then reads the model's config.json, whose auto_map lets
        # users without fpl_hf load this class with trust_remote_code (see the model's `save_pretrained`).
        output = super().to_dict()
        output.pop("image_processor_type", None)
        return output

    def post_process_semantic_segmentation(
        self, outputs, target_sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[torch.Tensor]:
        """One (H, W) map of class ids per image; logits are resized to `target_sizes[i]` first when given."""
        logits = outputs.logits
        if target_sizes is not None and len(target_sizes) != len(logits):
            raise ValueError(f"Got {len(target_sizes)} target sizes for {len(logits)} images.")
        maps = []
        for index, image_logits in enumerate(logits):
            if target_sizes is not None:
                size = tuple(int(s) for s in target_sizes[index])
                image_logits = F.interpolate(
                    image_logits[None].float(), size=size, mode="bilinear", align_corners=False
                )[0]
            maps.append(image_logits.argmax(dim=0))
        return maps


__all__ = ["TimmSegmentationImageProcessor", "grey"]
