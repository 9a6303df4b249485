"""DeepLabv3+ configuration."""

from __future__ import annotations

import difflib
from typing import Any, Optional

from transformers import PretrainedConfig

OUTPUT_STRIDES = (8, 16)


class DeepLabV3PlusConfig(PretrainedConfig):
    r"""Configuration of a DeepLabv3+ segmentation network on a timm backbone.

    Args:
        backbone (`str`, defaults to `"resnet50"`):
            Any timm model name that supports `features_only=True` (`resnet101c` is the paper's deep-stem ResNet-101).
        backbone_kwargs (`dict`, *optional*):
            Extra keyword arguments for `timm.create_model` (e.g. `{"drop_path_rate": 0.1}`).
        num_channels (`int`, defaults to 3):
            Channels of the input image.
        out_indices (`tuple[int, int]`, *optional*):
            timm feature indices of the low-level and the high-level feature. `None` picks the feature of
            stride 4 and the deepest one from the backbone's `feature_info`.
        output_stride (`int`, defaults to 16):
            Stride of the high-level feature, 8 or 16 (dilated last stages).
        aspp_rates (`tuple[int, ...]`, defaults to `(6, 12, 18)`):
            Dilation rates of the ASPP branches (the paper's AEL setting at stride 8 uses 12/24/36).
        aspp_channels (`int`, defaults to 256):
            Channels of each ASPP branch and of its projection.
        decoder_channels (`int`, defaults to 256):
            Channels of the decoder's 3x3 convolutions.
        low_level_channels (`int`, defaults to 48):
            Channels the low-level feature is projected to before fusion.
        aspp_dropout (`float`, defaults to 0.5):
            Dropout after the ASPP projection.
        classifier_dropout (`float`, defaults to 0.1):
            Dropout before the classifier.
        semantic_loss_ignore_index (`int`, defaults to 255):
            Label value that the cross-entropy ignores.
        align_corners (`bool`, defaults to `False`):
            `align_corners` of every bilinear upsampling.
        inference_mode (`str`, defaults to `"whole"`):
            What the model's forward does in eval mode without labels (what `pipeline` calls): `"whole"`, one pass
            over the image; `"slide"`, `inference_crop_size` windows every `inference_stride` pixels, overlapping
            logits averaged (the paper's protocol for large images).
        inference_crop_size (`int`, *optional*):
            Window side for `inference_mode="slide"` (512 on VOC, 800 on Cityscapes).
        inference_stride (`int`, *optional*):
            Window step; defaults to 2/3 of the crop.
        inference_flip (`bool`, defaults to `False`):
            Also predict the horizontally flipped image and average.
    """

    model_type = "deeplabv3plus"

    backbone: str = "resnet50"
    backbone_kwargs: Optional[dict[str, Any]] = None
    num_channels: int = 3
    out_indices: Optional[list[int]] = None
    output_stride: int = 16
    aspp_rates: list[int] | tuple[int, ...] = (6, 12, 18)
    aspp_channels: int = 256
    decoder_channels: int = 256
    low_level_channels: int = 48
    aspp_dropout: float = 0.5
    classifier_dropout: float = 0.1
    semantic_loss_ignore_index: int = 255
    align_corners: bool = False
    inference_mode: str = "whole"
    inference_crop_size: Optional[int] = None
    inference_stride: Optional[int] = None
    inference_flip: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        self.aspp_rates = list(self.aspp_rates)
        if self.out_indices is not None:
            self.out_indices = list(self.out_indices)
        self.backbone_kwargs = dict(self.backbone_kwargs or {})
        self._validate()

    def _validate(self) -> None:
        import timm

        if not timm.is_model(self.backbone):
            close = difflib.get_close_matches(self.backbone, timm.list_models(), n=3)
            hint = f" Did you mean one of {close}?" if close else " See `timm.list_models()`."
            raise ValueError(f"`backbone`: {self.backbone!r} is not a timm model.{hint}")
        if self.num_labels is None or self.num_labels < 2:
            raise ValueError(f"`num_labels` must be >= 2 (background counts as a class), got {self.num_labels}.")
        if self.num_channels < 1:
            raise ValueError(f"`num_channels` must be >= 1, got {self.num_channels}.")
        self._validate_decoder()
        if self.inference_mode not in ("whole", "slide"):
            raise ValueError(f"`inference_mode` must be 'whole' or 'slide', got {self.inference_mode!r}.")
        if self.inference_mode == "slide" and not (self.inference_crop_size or 0) >= 1:
            raise ValueError("`inference_mode='slide'` needs `inference_crop_size` (e.g. 512 for VOC, 800 for Cityscapes).")
        if self.inference_stride is not None and not 1 <= self.inference_stride <= (self.inference_crop_size or 0):
            raise ValueError(f"`inference_stride` must be in [1, inference_crop_size], got {self.inference_stride}.")

    def _validate_decoder(self) -> None:
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"`output_stride` must be one of {OUTPUT_STRIDES}, got {self.output_stride}.")
        if self.out_indices is not None and (len(self.out_indices) != 2 or self.out_indices[0] >= self.out_indices[1]):
            raise ValueError(
                f"`out_indices` must be two increasing timm feature indices (low-level, high-level), got {self.out_indices}."
            )
        if not self.aspp_rates or any(rate < 1 for rate in self.aspp_rates):
            raise ValueError(f"`aspp_rates` must be positive dilation rates, got {self.aspp_rates}.")
        for name in ("aspp_channels", "decoder_channels", "low_level_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        for name in ("aspp_dropout", "classifier_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be in [0, 1), got {getattr(self, name)}.")


__all__ = ["DeepLabV3PlusConfig"]
