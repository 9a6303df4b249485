"""DeepLabv3+ (Chen et al., ECCV 2018) on any timm backbone, as a transformers model."""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .configuration_deeplabv3plus import DeepLabV3PlusConfig
from .modeling_timm_segmentation import TimmSegmentationModel


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Sequential:
    padding = dilation * (kernel_size - 1) // 2
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DeepLabV3PlusASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, dilated 3x3 branches and image pooling."""

    def __init__(self, in_channels: int, channels: int, rates: list[int], dropout: float, align_corners: bool):
        super().__init__()
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            [_conv_bn_relu(in_channels, channels)] + [_conv_bn_relu(in_channels, channels, 3, rate) for rate in rates]
        )
        self.image_pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), _conv_bn_relu(in_channels, channels))
        self.project = nn.Sequential(_conv_bn_relu(channels * (len(rates) + 2), channels), nn.Dropout(dropout))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = F.interpolate(
            self.image_pooling(features), size=features.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        return self.project(torch.cat([branch(features) for branch in self.branches] + [pooled], dim=1))


class DeepLabV3PlusForSemanticSegmentation(TimmSegmentationModel):
    """DeepLabv3+: timm encoder (`features_only`), ASPP on the deep feature, decoder fusing a stride-4 feature."""

    config_class = DeepLabV3PlusConfig
    base_model_prefix = "deeplabv3plus"

    def __init__(self, config: DeepLabV3PlusConfig):
        super().__init__(config)
        channels = dict(zip(self.backbone.feature_info.out_indices, self.backbone.feature_info.channels()))
        low_channels, high_channels = (channels[index] for index in config.out_indices)
        self.aspp = DeepLabV3PlusASPP(
            high_channels, config.aspp_channels, config.aspp_rates, config.aspp_dropout, config.align_corners
        )
        self.low_level_projection = _conv_bn_relu(low_channels, config.low_level_channels)
        self.decoder = nn.Sequential(
            _conv_bn_relu(config.aspp_channels + config.low_level_channels, config.decoder_channels, 3),
            _conv_bn_relu(config.decoder_channels, config.decoder_channels, 3),
            nn.Dropout(config.classifier_dropout),
        )
        self.classifier = nn.Conv2d(config.decoder_channels, config.num_labels, 1)
        self.post_init()

    @staticmethod
    def _timm_kwargs(config: DeepLabV3PlusConfig) -> dict:
        """The `timm.create_model` arguments of the encoder: a `features_only` extractor."""
        kwargs = dict(
            features_only=True,
            in_chans=config.num_channels,
            output_stride=config.output_stride,
            **config.backbone_kwargs,
        )
        if config.out_indices is not None:
            kwargs["out_indices"] = tuple(config.out_indices)
        return kwargs

    @classmethod
    def _create_backbone(cls, config: DeepLabV3PlusConfig) -> nn.Module:
        """Builds the timm feature extractor and fills `config.out_indices` when it is `None`."""
        try:
            backbone = timm.create_model(config.backbone, **cls._timm_kwargs(config))
        except (RuntimeError, TypeError, ValueError, AssertionError) as error:
            raise ValueError(
                f"`backbone`: timm could not build {config.backbone!r} with features_only=True and "
                f"output_stride={config.output_stride} ({error}). Pick a timm model that supports features_only."
            ) from error
        if config.out_indices is None:
            reductions = backbone.feature_info.reduction()
            low = min(range(len(reductions)), key=lambda i: (abs(reductions[i] - 4), i))
            config.out_indices = [backbone.feature_info.out_indices[low], backbone.feature_info.out_indices[-1]]
        return backbone

    @property
    def input_multiple(self) -> int:
        """Inputs are padded to a multiple of this (the encoder's largest stride) so that features align."""
        return max(self.backbone.feature_info.reduction())

    def _features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """The encoder features the decoder reads: the low-level and the high-level one."""
        features = dict(zip(self.backbone.feature_info.out_indices, self.backbone(pixel_values)))
        return [features[index] for index in self.config.out_indices]

    def _decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        low, high = features
        context = self.aspp(high)
        low = self.low_level_projection(low)
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=self.config.align_corners)
        logits = self.classifier(self.decoder(torch.cat([context, low], dim=1)))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.config.align_corners)


__all__ = ["DeepLabV3PlusASPP", "DeepLabV3PlusForSemanticSegmentation"]
