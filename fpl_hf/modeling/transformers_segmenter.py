"""Any transformers semantic-segmentation model as a network `FPLTrainer` trains.

fpl_hf's own models give logits at the input size, `segment` (one plain pass) and an optional
`feature_perturbation` of their encoder features; `TransformersSegmenter` gives the same to an
`AutoModelForSemanticSegmentation` model, whose class, weights and saving stay the user's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation, PreTrainedModel
from transformers.image_processing_utils import BaseImageProcessor
from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING
from transformers.utils import logging

from .segmentation_network import FeaturePerturbation, SegmentationNetwork, SegmenterOutput

logger = logging.get_logger(__name__)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

# Per model family: the encoder module, and the field of its output that holds the features the decoder reads
# (None where fpl_hf does not perturb them). The encoder learns at `encoder_lr_ratio` and CPS's second branch
# keeps it while its head is initialised anew.
ENCODERS: dict[str, tuple[str, str | None]] = {
    "segformer": ("segformer", "hidden_states"),
    "upernet": ("backbone", "feature_maps"),
    "dpt": ("dpt", "hidden_states"),
    "beit": ("beit", None),
    "data2vec-vision": ("data2vec_vision", None),
    "mobilevit": ("mobilevit", None),
    "mobilevitv2": ("mobilevitv2", None),
}
PERTURBABLE_FAMILIES = "DeepLabv3+, SegFormer, UperNet and DPT"
# Families whose transformers implementation reads a square grid of patches: other sizes are padded to a square.
SQUARE_INPUTS = ("dpt",)


class TransformersSegmenter(nn.Module):
    """Wraps a `*ForSemanticSegmentation` model: logits brought to the input size (bilinear, as transformers'
    semantic-segmentation example does), `segment`, and UniMatch's feature perturbation for the families whose
    encoder features are known (SegFormer, UperNet, DPT).

    Args:
        model: the transformers model; `model` is what is saved and exported.
    """

    def __init__(self, model: PreTrainedModel):
        super().__init__()
        self.model = model
        self.config = model.config
        encoder, self.feature_field = ENCODERS.get(model.config.model_type, (None, None))
        self.encoder_module = f"model.{encoder}" if encoder else None

    @property
    def supports_feature_perturbation(self) -> bool:
        return self.feature_field is not None

    def forward(
        self, pixel_values: torch.Tensor, feature_perturbation: FeaturePerturbation | None = None
    ) -> SegmenterOutput:
        """`logits` (B, num_labels, H, W); with a `feature_perturbation`, also `perturbed_logits`: the decoder's
        output on the perturbed encoder features (both in one decoder pass over the doubled batch, as UniMatch)."""
        if feature_perturbation is None:
            return SegmenterOutput(logits=self.segment(pixel_values))
        if not self.supports_feature_perturbation:
            raise ValueError(
                f"Feature perturbation needs encoder features that fpl_hf reads for {PERTURBABLE_FAMILIES}, "
                f"not for {self.config.model_type!r}."
            )

        def perturbed(features: torch.Tensor) -> torch.Tensor:
            if features.dim() == 3:  # ViT tokens (B, N, C), perturbed as the map (B, C, N, 1)
                return feature_perturbation(features.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
            return feature_perturbation(features)

        def clean_and_perturbed(module: nn.Module, inputs: tuple, output):
            output[self.feature_field] = tuple(torch.cat([f, perturbed(f)]) for f in output[self.feature_field])
            return output

        hook = self.get_submodule(self.encoder_module).register_forward_hook(clean_and_perturbed)
        try:
            logits, perturbed_logits = self.segment(pixel_values).chunk(2)
        finally:
            hook.remove()
        return SegmenterOutput(logits=logits, perturbed_logits=perturbed_logits)

    def segment(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits of one pass at the input size."""
        height, width = pixel_values.shape[-2:]
        if self.config.model_type in SQUARE_INPUTS and height != width:
            side = max(height, width)
            pixel_values = F.pad(pixel_values, (0, side - width, 0, side - height))
        logits = self.model(pixel_values=pixel_values).logits
        logits = F.interpolate(logits, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :height, :width]


def as_segmenter(model: nn.Module) -> SegmentationNetwork:
    """`model` itself when it is a `SegmentationNetwork` (fpl_hf's networks are), else a `TransformersSegmenter`."""
    if isinstance(model, SegmentationNetwork):
        return model
    if not isinstance(model, PreTrainedModel):
        raise TypeError(
            f"{type(model).__name__} is neither a transformers model nor a SegmentationNetwork: give it `segment`, "
            "`encoder_module` and `supports_feature_perturbation` (fpl_hf.modeling.SegmentationNetwork) or pass a "
            "`*ForSemanticSegmentation` model"
        )
    return TransformersSegmenter(model)


def exported(network: nn.Module) -> nn.Module:
    """The model a network saves and exports: the user's own transformers model for a `TransformersSegmenter`."""
    return network.model if isinstance(network, TransformersSegmenter) else network


def label_fields(class_names: Sequence[str]) -> dict:
    """`num_labels`, `id2label` and `label2id` of a config for these classes."""
    return dict(
        num_labels=len(class_names),
        id2label=dict(enumerate(class_names)),
        label2id={name: index for index, name in enumerate(class_names)},
    )


def pretrained_for_classes(name_or_path: str, class_names: Sequence[str]) -> PreTrainedModel:
    """An `AutoModelForSemanticSegmentation` checkpoint (folder or Hub id) labelled with the data's classes; where
    the checkpoint predicts another number of classes, its classifier head is initialised anew (logged)."""
    config = AutoConfig.from_pretrained(name_or_path)
    if config.num_labels != len(class_names):
        logger.warning(
            f"{name_or_path} predicts {config.num_labels} classes and the data has {len(class_names)}: a new "
            f"classifier head is initialised for {list(class_names)}."
        )
    return AutoModelForSemanticSegmentation.from_pretrained(
        name_or_path, ignore_mismatched_sizes=True, **label_fields(class_names)
    )


def new_model_for_classes(config_name_or_path: str, class_names: Sequence[str]) -> PreTrainedModel:
    """A randomly initialised `AutoModelForSemanticSegmentation` model of a config (folder, JSON file or Hub id)."""
    config = AutoConfig.from_pretrained(config_name_or_path, **label_fields(class_names))
    return AutoModelForSemanticSegmentation.from_config(config)


def image_processor_for(
    model: PreTrainedModel,
    name_or_path: str | None = None,
    image_mean: Sequence[float] = IMAGENET_MEAN,
    image_std: Sequence[float] = IMAGENET_STD,
) -> BaseImageProcessor:
    """The checkpoint's own image processor where `name_or_path` has one, else a new one of the model's family
    normalising with (`image_mean`, `image_std`), so that the saved model runs in `pipeline`."""
    if name_or_path is not None:
        try:
            return AutoImageProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError):
            logger.warning(
                f"{name_or_path} has no image processor; a new one normalises with {image_mean}, {image_std}."
            )
    processor_classes = IMAGE_PROCESSOR_MAPPING[type(model.config)]
    return processor_classes["torchvision"](image_mean=list(image_mean), image_std=list(image_std))


__all__ = [
    "ENCODERS",
    "PERTURBABLE_FAMILIES",
    "TransformersSegmenter",
    "as_segmenter",
    "exported",
    "image_processor_for",
    "label_fields",
    "new_model_for_classes",
    "pretrained_for_classes",
]
