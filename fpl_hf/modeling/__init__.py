from .configuration_deeplabv3plus import DeepLabV3PlusConfig
from .configuration_timm_dpt import TimmDPTConfig
from .image_processing_deeplabv3plus import DeepLabV3PlusImageProcessor
from .modeling_deeplabv3plus import DeepLabV3PlusForSemanticSegmentation, DeepLabV3PlusPreTrainedModel
from .modeling_timm_dpt import TimmDPTForSemanticSegmentation

__all__ = [
    "DeepLabV3PlusConfig",
    "DeepLabV3PlusImageProcessor",
    "DeepLabV3PlusForSemanticSegmentation",
    "DeepLabV3PlusPreTrainedModel",
    "TimmDPTConfig",
    "TimmDPTForSemanticSegmentation",
]
