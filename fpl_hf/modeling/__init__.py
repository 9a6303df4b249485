from .configuration_deeplabv3plus import DeepLabV3PlusConfig
from .configuration_timm_dpt import TimmDPTConfig
from .configuration_timm_segmentation import TimmSegmentationConfig
from .image_processing_timm_segmentation import TimmSegmentationImageProcessor
from .modeling_deeplabv3plus import DeepLabV3PlusForSemanticSegmentation
from .modeling_timm_dpt import TimmDPTForSemanticSegmentation
from .modeling_timm_segmentation import TimmSegmentationModel
from .segmentation_network import SegmentationNetwork, SegmenterOutput

__all__ = [
    "DeepLabV3PlusConfig",
    "DeepLabV3PlusForSemanticSegmentation",
    "SegmentationNetwork",
    "SegmenterOutput",
    "TimmDPTConfig",
    "TimmDPTForSemanticSegmentation",
    "TimmSegmentationConfig",
    "TimmSegmentationImageProcessor",
    "TimmSegmentationModel",
]
