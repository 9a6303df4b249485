from .configuration_deeplabv3plus import DeepLabV3PlusConfig
from .image_processing_deeplabv3plus import DeepLabV3PlusImageProcessor
from .modeling_deeplabv3plus import DeepLabV3PlusForSemanticSegmentation, DeepLabV3PlusPreTrainedModel

__all__ = [
    "DeepLabV3PlusConfig",
    "DeepLabV3PlusImageProcessor",
    "DeepLabV3PlusForSemanticSegmentation",
    "DeepLabV3PlusPreTrainedModel",
]
