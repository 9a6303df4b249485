"""DeepLabv3+ configuration."""

from __future__ import annotations

from typing import Any

from .configuration_timm_segmentation import TimmSegmentationConfig

OUTPUT_STRIDES = (8, 16)


class DeepLabV3PlusConfig(TimmSegmentationConfig):
    r"""Configuration of a DeepLabv3+ segmentation network on a timm backbone; the encoder, label and inference
    fields are `TimmSegmentationConfig`'s.

    Args:
        backbone (`str`, defaults to `"resnet50"`):
            Any timm model name that supports `features_only=True` (`resnet101c` is the paper's deep-stem ResNet-101).
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
    """

    model_type = "deeplabv3plus"

    output_stride: int = 16
    aspp_rates: list[int] | tuple[int, ...] = (6, 12, 18)
    aspp_channels: int = 256
    decoder_channels: int = 256
    low_level_channels: int = 48
    aspp_dropout: float = 0.5
    classifier_dropout: float = 0.1

    def __post_init__(self, **kwargs: Any) -> None:
        self.aspp_rates = list(self.aspp_rates)
        super().__post_init__(**kwargs)

    def _validate_decoder(self) -> None:
        if self.output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"`output_stride` must be one of {OUTPUT_STRIDES}, got {self.output_stride}.")
        if self.out_indices is not None and (len(self.out_indices) != 2 or self.out_indices[0] >= self.out_indices[1]):
            raise ValueError(
                "`out_indices` must be two increasing timm feature indices (low-level, high-level), "
                f"got {self.out_indices}."
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
