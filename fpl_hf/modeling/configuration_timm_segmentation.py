"""What fpl_hf's segmentation networks share in their configuration: a timm encoder, the labels and the inference
protocol. Each network's own configuration (`DeepLabV3PlusConfig`, `TimmDPTConfig`) adds its decoder's fields."""

from __future__ import annotations

import difflib
from typing import Any

from transformers import PretrainedConfig

from .inference import INFERENCE_MODES, window_stride


class TimmSegmentationConfig(PretrainedConfig):
    r"""The fields of a segmentation network on a timm encoder that do not depend on its decoder.

    Args:
        backbone (`str`):
            A timm model name; what it must support depends on the network (`features_only` for DeepLabv3+,
            `forward_intermediates` for DPT).
        backbone_kwargs (`dict`, *optional*):
            Extra keyword arguments for `timm.create_model` (e.g. `{"drop_path_rate": 0.1}`).
        num_channels (`int`, defaults to 3):
            Channels of the input image.
        out_indices (`list[int]`, *optional*):
            The encoder features the decoder reads; each network documents its own default.
        semantic_loss_ignore_index (`int`, defaults to 255):
            Label value that the cross-entropy ignores.
        align_corners (`bool`, defaults to `False`):
            `align_corners` of the bilinear upsampling of the logits.
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

    model_type = "timm_segmentation"

    backbone: str = "resnet50"
    backbone_kwargs: dict[str, Any] | None = None
    num_channels: int = 3
    out_indices: list[int] | None = None
    semantic_loss_ignore_index: int = 255
    align_corners: bool = False
    inference_mode: str = "whole"
    inference_crop_size: int | None = None
    inference_stride: int | None = None
    inference_flip: bool = False

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        if self.out_indices is not None:
            self.out_indices = list(self.out_indices)
        self.backbone_kwargs = dict(self.backbone_kwargs or {})
        self._validate()
        self._validate_decoder()

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
        if self.inference_mode not in INFERENCE_MODES:
            raise ValueError(f"`inference_mode` must be one of {INFERENCE_MODES}, got {self.inference_mode!r}.")
        if self.inference_mode == "slide" or self.inference_stride is not None:
            try:
                window_stride(self.inference_crop_size, self.inference_stride)
            except ValueError as error:
                raise ValueError(f"`inference_crop_size` / `inference_stride`: {error}") from None

    def _validate_decoder(self) -> None:
        """Checks of the network's own fields."""


__all__ = ["TimmSegmentationConfig"]
