"""fpl-hf: Fuzzy Positive Learning for semi-supervised semantic segmentation on the Hugging Face stack."""

from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation

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
    DeepLabV3PlusImageProcessor,
    DeepLabV3PlusPreTrainedModel,
)
from .trainer import FPLConfig, FPLTrainer

__version__ = "0.1.0"

AutoConfig.register(DeepLabV3PlusConfig.model_type, DeepLabV3PlusConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation, exist_ok=True)
AutoImageProcessor.register(
    DeepLabV3PlusConfig, image_processor_classes={"torchvision": DeepLabV3PlusImageProcessor}, exist_ok=True
)
# Saved models carry their code (the image processor's included, see the model's `save_pretrained`), so they
# also load with trust_remote_code=True where fpl_hf is absent.
DeepLabV3PlusConfig.register_for_auto_class()
DeepLabV3PlusForSemanticSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")

__all__ = [
    "DeepLabV3PlusConfig",
    "DeepLabV3PlusForSemanticSegmentation",
    "DeepLabV3PlusImageProcessor",
    "DeepLabV3PlusPreTrainedModel",
    "FPLConfig",
    "FPLTrainer",
    "PseudoLabelLossOutput",
    "adaptive_weight",
    "fuzzy_positive_assignment",
    "fuzzy_positive_loss",
    "k_shares",
    "positive_gradient_score",
    "pseudo_label_cross_entropy",
]
