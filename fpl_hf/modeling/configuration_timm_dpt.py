"""Configuration of a DPT head on a timm ViT (UniMatch V2's model)."""

from __future__ import annotations

from typing import Any

from .configuration_timm_segmentation import TimmSegmentationConfig


class TimmDPTConfig(TimmSegmentationConfig):
    r"""Configuration of a DPT segmentation head (Ranftl et al., ICCV 2021) on four intermediate layers of a timm
    Vision Transformer, as UniMatch V2 builds it on DINOv2; the encoder, label and inference fields are
    `TimmSegmentationConfig`'s.

    Args:
        backbone (`str`, defaults to `"vit_small_patch14_dinov2"`):
            A timm ViT with `forward_intermediates` (DINOv2: `vit_small_patch14_dinov2`, `vit_base_patch14_dinov2`).
        out_indices (`list[int]`, defaults to `[2, 5, 8, 11]`):
            The four blocks whose outputs (after the final norm, class token dropped) the head reads: [2, 5, 8, 11]
            for ViT-S and -B, [4, 11, 17, 23] for -L.
        dpt_out_channels (`list[int]`, defaults to `[48, 96, 192, 384]`):
            Channels the four maps are projected to before reassembly at 4x, 2x, 1x and 1/2 the patch grid
            (ViT-B: 96, 192, 384, 768).
        dpt_features (`int`, defaults to 64):
            Channels of the fusion stages (ViT-B: 128).
        backbone_kwargs (`dict`, defaults to `dict(dynamic_img_size=True)`):
            Extra arguments of `timm.create_model`; `dynamic_img_size` lets the ViT take any crop.
    """

    model_type = "timm_dpt"

    backbone: str = "vit_small_patch14_dinov2"
    dpt_out_channels: list[int] | tuple[int, ...] = (48, 96, 192, 384)
    dpt_features: int = 64

    def __post_init__(self, **kwargs: Any) -> None:
        self.out_indices = list(self.out_indices) if self.out_indices is not None else [2, 5, 8, 11]
        self.dpt_out_channels = list(self.dpt_out_channels)
        self.backbone_kwargs = {"dynamic_img_size": True, **(self.backbone_kwargs or {})}
        super().__post_init__(**kwargs)

    def _validate_decoder(self) -> None:
        if len(self.out_indices) != 4 or sorted(self.out_indices) != self.out_indices:
            raise ValueError(f"`out_indices` must be four increasing ViT block indices, got {self.out_indices}.")
        if len(self.dpt_out_channels) != 4 or min(self.dpt_out_channels) < 1 or self.dpt_features < 1:
            raise ValueError("`dpt_out_channels` must be four positive channel counts and `dpt_features` >= 1.")


__all__ = ["TimmDPTConfig"]
