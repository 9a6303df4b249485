import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch

import fpl_hf  # noqa: F401  (registers the Auto classes)

torch.set_num_threads(2)


def tiny_config(**overrides):
    from fpl_hf import DeepLabV3PlusConfig

    values = dict(
        backbone="test_resnet",
        num_labels=4,
        aspp_channels=16,
        decoder_channels=16,
        low_level_channels=8,
        aspp_rates=[1, 2, 3],
    )
    values.update(overrides)
    return DeepLabV3PlusConfig(**values)


@pytest.fixture
def tiny_model():
    from fpl_hf import DeepLabV3PlusForSemanticSegmentation

    torch.manual_seed(0)
    return DeepLabV3PlusForSemanticSegmentation(tiny_config()).eval()
