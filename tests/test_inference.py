from types import SimpleNamespace

import pytest
import torch
from torch import nn

from fpl_hf.inference import predict_logits


class PointwiseModel(nn.Module):
    """Logits depend on each pixel alone, so every inference mode must agree exactly."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, pixel_values):
        return SimpleNamespace(logits=self.conv(pixel_values))


def test_sliding_window_equals_whole_image_when_the_crop_covers_it(tiny_model):
    pixels = torch.randn(2, 3, 64, 64)
    whole = predict_logits(tiny_model, pixels, mode="whole")
    slide = predict_logits(tiny_model, pixels, mode="slide", crop_size=64, stride=32)
    torch.testing.assert_close(slide, whole)
    assert whole.shape == (2, 4, 64, 64)


@pytest.mark.parametrize("size, crop, stride", [((50, 70), 32, 20), ((31, 33), 48, 16), ((64, 64), 24, 24)])
def test_overlapping_windows_are_averaged(size, crop, stride):
    model = PointwiseModel()
    pixels = torch.randn(1, 3, *size)
    expected = model(pixels).logits
    torch.testing.assert_close(predict_logits(model, pixels, mode="slide", crop_size=crop, stride=stride), expected)
    torch.testing.assert_close(predict_logits(model, pixels, mode="whole"), expected)
    torch.testing.assert_close(predict_logits(model, pixels, mode="slide", crop_size=crop, stride=stride, flip=True),
                               expected, rtol=1e-5, atol=1e-5)


def test_whole_image_pads_odd_sizes_and_crops_back(tiny_model):
    logits = predict_logits(tiny_model, torch.randn(1, 3, 37, 45), mode="whole", flip=True)
    assert logits.shape == (1, 4, 37, 45)


def test_bad_arguments_are_named():
    model = PointwiseModel()
    with pytest.raises(ValueError, match="mode"):
        predict_logits(model, torch.randn(1, 3, 8, 8), mode="tiles")
    with pytest.raises(ValueError, match="crop_size"):
        predict_logits(model, torch.randn(1, 3, 8, 8), mode="slide")
    with pytest.raises(ValueError, match="stride"):
        predict_logits(model, torch.randn(1, 3, 8, 8), mode="slide", crop_size=4, stride=8)
