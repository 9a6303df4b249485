"""fpl-hf: Fuzzy Positive Learning for semi-supervised semantic segmentation on the Hugging Face stack."""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation
from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

from .losses import (
    PseudoLabelLossOutput,
    adaptive_weight,
    fuzzy_positive_assignment,
    fuzzy_positive_loss,
    k_shares,
    positive_gradient_score,
    pseudo_label_cross_entropy,
)
from .modeling import (
    DeepLabV3PlusConfig,
    DeepLabV3PlusForSemanticSegmentation,
    SegmentationNetwork,
    TimmDPTConfig,
    TimmDPTForSemanticSegmentation,
    TimmSegmentationConfig,
    TimmSegmentationImageProcessor,
    TimmSegmentationModel,
)
from .trainer import FPLConfig, FPLTrainer

__version__ = "0.1.0"

for config_class, model_class in (
    (DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation),
    (TimmDPTConfig, TimmDPTForSemanticSegmentation),
):
    AutoConfig.register(config_class.model_type, config_class, exist_ok=True)
    AutoModelForSemanticSegmentation.register(config_class, model_class, exist_ok=True)
    # The image-segmentation pipeline checks models against these names (not the registered classes).
    MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES.setdefault(config_class.model_type, model_class.__name__)
    # One image processor serves both: it normalizes and pads, and the networks take any size.
    AutoImageProcessor.register(
        config_class, image_processor_classes={"torchvision": TimmSegmentationImageProcessor}, exist_ok=True
    )
    # Saved models carry their code (the image processor's included, see the model's `save_pretrained`), so they
    # also load with trust_remote_code=True where fpl_hf is absent.
    config_class.register_for_auto_class()
    model_class.register_for_auto_class("AutoModelForSemanticSegmentation")

__all__ = [
    "DeepLabV3PlusConfig",
    "DeepLabV3PlusForSemanticSegmentation",
    "FPLConfig",
    "FPLTrainer",
    "SegmentationNetwork",
    "TimmDPTConfig",
    "TimmDPTForSemanticSegmentation",
    "TimmSegmentationConfig",
    "TimmSegmentationImageProcessor",
    "TimmSegmentationModel",
    "PseudoLabelLossOutput",
    "adaptive_weight",
    "fuzzy_positive_assignment",
    "fuzzy_positive_loss",
    "k_shares",
    "positive_gradient_score",
    "pseudo_label_cross_entropy",
]
