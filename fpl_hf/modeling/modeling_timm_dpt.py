"""A DPT head (Ranftl et al., ICCV 2021) on a timm Vision Transformer, as UniMatch V2 builds it on DINOv2."""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn

from .configuration_timm_dpt import TimmDPTConfig
from .modeling_timm_segmentation import TimmSegmentationModel


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x)))), two 3x3 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionStage(nn.Module):
    """Adds a refined skip feature to the coarser path, refines the sum, resizes it to the next (finer) level and
    mixes its channels with a 1x1 convolution."""

    def __init__(self, channels: int, has_skip: bool):
        super().__init__()
        self.skip_unit = ResidualConvUnit(channels) if has_skip else None
        self.unit = ResidualConvUnit(channels)
        self.project = nn.Conv2d(channels, channels, 1)

    def forward(self, path: torch.Tensor, skip: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        if skip is not None:
            path = path + self.skip_unit(skip)
        path = F.interpolate(self.unit(path), size=size, mode="bilinear", align_corners=True)
        return self.project(path)


class TimmDPTForSemanticSegmentation(TimmSegmentationModel):
    """DPT on a timm ViT: four intermediate block outputs (final norm applied, class token dropped, taken with
    `forward_intermediates`) are projected, reassembled at 4x, 2x, 1x and 1/2 of the patch grid, fused coarse to
    fine, and classified; inputs are padded to a multiple of the patch size."""

    config_class = TimmDPTConfig
    base_model_prefix = "timm_dpt"

    def __init__(self, config: TimmDPTConfig):
        super().__init__(config)
        width, (c1, c2, c3, c4), features = self.backbone.embed_dim, config.dpt_out_channels, config.dpt_features
        self.projections = nn.ModuleList([nn.Conv2d(width, channels, 1) for channels in (c1, c2, c3, c4)])
        self.reassemble = nn.ModuleList(
            [
                nn.ConvTranspose2d(c1, c1, 4, stride=4),
                nn.ConvTranspose2d(c2, c2, 2, stride=2),
                nn.Identity(),
                nn.Conv2d(c4, c4, 3, stride=2, padding=1),
            ]
        )
        self.to_features = nn.ModuleList([nn.Conv2d(c, features, 3, padding=1, bias=False) for c in (c1, c2, c3, c4)])
        self.fusion = nn.ModuleList([FusionStage(features, has_skip=level < 3) for level in range(4)])
        self.head = nn.Sequential(nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(features, config.num_labels, 1)
        self.post_init()

    @staticmethod
    def _timm_kwargs(config: TimmDPTConfig) -> dict:
        """A whole ViT (no classifier): its blocks are read through `forward_intermediates`."""
        return dict(num_classes=0, in_chans=config.num_channels, **config.backbone_kwargs)

    @classmethod
    def _create_backbone(cls, config: TimmDPTConfig) -> nn.Module:
        not_a_vit = ValueError(
            f"`backbone`: {config.backbone!r} is not a timm Vision Transformer with "
            "`forward_intermediates` and `dynamic_img_size` (e.g. vit_small_patch14_dinov2)."
        )
        try:
            backbone = timm.create_model(config.backbone, **cls._timm_kwargs(config))
        except TypeError as error:  # a CNN refuses `dynamic_img_size`
            raise not_a_vit from error
        if not hasattr(backbone, "forward_intermediates") or not hasattr(backbone, "patch_embed"):
            raise not_a_vit
        if max(config.out_indices) >= len(backbone.blocks):
            raise ValueError(
                f"`out_indices` {config.out_indices} name blocks beyond the {len(backbone.blocks)} of "
                f"{config.backbone}."
            )
        return backbone

    @property
    def input_multiple(self) -> int:
        return max(self.backbone.patch_embed.patch_size)

    def _features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone.forward_intermediates(
            pixel_values, indices=self.config.out_indices, norm=True, intermediates_only=True
        )

    def _decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        levels = [
            to_features(reassemble(project(feature)))
            for feature, project, reassemble, to_features in zip(
                features, self.projections, self.reassemble, self.to_features
            )
        ]
        # Coarse to fine: each stage ends at the size of the next finer level; the finest doubles it.
        path = None
        for level in (3, 2, 1, 0):
            target = levels[level - 1].shape[-2:] if level else tuple(2 * side for side in levels[0].shape[-2:])
            path = self.fusion[level](
                levels[level] if path is None else path, None if path is None else levels[level], target
            )
        logits = self.classifier(self.head(path))
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=self.config.align_corners)


__all__ = ["TimmDPTForSemanticSegmentation"]
