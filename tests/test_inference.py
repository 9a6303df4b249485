from types import SimpleNamespace

import pytest
import torch
from torch import nn

from fpl_hf.evaluation import EvaluationProtocol, center_crop
from fpl_hf.modeling.inference import predict_logits


class PointwiseModel(nn.Module):
    """Logits depend on each pixel alone, so every inference mode must agree exactly."""

    encoder_module = None
    supports_feature_perturbation = False

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 1)

    def segment(self, pixel_values):
        return self.conv(pixel_values)

    def forward(self, pixel_values):
        return SimpleNamespace(logits=self.segment(pixel_values))


def test_a_module_that_is_no_segmentation_network_is_named():
    with pytest.raises(TypeError, match="Conv2d is neither a transformers model nor a SegmentationNetwork"):
        predict_logits(nn.Conv2d(3, 5, 1), torch.randn(1, 3, 8, 8), mode="whole")


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
    torch.testing.assert_close(
        predict_logits(model, pixels, mode="slide", crop_size=crop, stride=stride, flip=True),
        expected,
        rtol=1e-5,
        atol=1e-5,
    )


def test_overlapping_windows_are_averaged_when_outputs_depend_on_the_window():
    def window_mean(pixels):  # every logit of a window is the window's mean input: windows disagree
        return pixels[:, :1].mean(dim=(2, 3), keepdim=True).expand(-1, 2, *pixels.shape[-2:])

    pixels = torch.arange(10.0).repeat(3, 4, 1).unsqueeze(0)  # (1, 3, 4, 10): the value is the column
    logits = predict_logits(window_mean, pixels, mode="slide", crop_size=4, stride=3)
    # Windows start at columns 0, 3 and 6 (means 1.5, 4.5, 7.5); columns 3 and 6 lie in two windows each.
    expected_row = torch.tensor([1.5, 1.5, 1.5, 3.0, 4.5, 4.5, 6.0, 7.5, 7.5, 7.5])
    torch.testing.assert_close(logits[0, 0], expected_row.expand(4, -1))


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


def test_center_crop_takes_the_middle_and_pads_short_sides_with_ignore():
    pixels = torch.arange(2 * 3 * 6 * 4, dtype=torch.float32).view(2, 3, 6, 4)
    labels = torch.arange(2 * 6 * 4).view(2, 6, 4)
    cropped_pixels, cropped_labels = center_crop(pixels, labels, 2)
    assert torch.equal(cropped_pixels, pixels[..., 2:4, 1:3]) and torch.equal(cropped_labels, labels[..., 2:4, 1:3])
    # Width 4 < 5: padded to 5 on the right (image 0, label ignore), then the middle 5 columns of 6 x 5.
    padded_pixels, padded_labels = center_crop(pixels, labels, 5, ignore_index=255)
    assert padded_labels.shape == (2, 5, 5) and padded_pixels.shape == (2, 3, 5, 5)
    assert torch.equal(padded_labels[..., :4], labels[..., 0:5, :]) and (padded_labels[..., 4] == 255).all()
    assert (padded_pixels[..., 4] == 0).all()


def test_each_evaluation_protocol_scores_what_it_says():
    model = PointwiseModel()
    pixels, labels = torch.randn(1, 3, 40, 30), torch.randint(0, 5, (1, 40, 30))
    for protocol in (EvaluationProtocol(), EvaluationProtocol("slide", 16, 8, flip=True)):
        logits, scored = protocol(model, pixels, labels)
        torch.testing.assert_close(logits, model(pixels).logits, rtol=1e-5, atol=1e-5)
        assert scored is labels
    logits, scored = EvaluationProtocol("center", 20)(model, pixels, labels)
    torch.testing.assert_close(logits, model(pixels[..., 10:30, 5:25]).logits)
    assert torch.equal(scored, labels[..., 10:30, 5:25])


def test_protocols_record_only_what_they_use_and_name_bad_settings():
    assert EvaluationProtocol("whole", crop_size=512, stride=100).to_dict() == {
        "mode": "whole",
        "crop_size": None,
        "stride": None,
        "flip": False,
        "description": "single scale, whole images",
    }
    assert EvaluationProtocol("slide", 800).stride == 534
    assert EvaluationProtocol("center", 513, stride=100, flip=True).description == "single scale, center crop 513, flip"
    with pytest.raises(ValueError, match="mode must be one of"):
        EvaluationProtocol("tiles")
    with pytest.raises(ValueError, match="'center' evaluation needs a crop size"):
        EvaluationProtocol("center")
    with pytest.raises(ValueError, match="stride must be in"):
        EvaluationProtocol("slide", 32, stride=0)


def test_the_models_own_forward_follows_its_inference_mode(tiny_model, tmp_path):
    pixels = torch.randn(1, 3, 70, 90)
    expected = predict_logits(tiny_model, pixels, mode="slide", crop_size=48, stride=32, flip=True)
    tiny_model.config.update(
        {"inference_mode": "slide", "inference_crop_size": 48, "inference_stride": 32, "inference_flip": True}
    )
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(pixels).logits, expected)
        whole = tiny_model.segment(pixels)
        assert not torch.allclose(whole, expected)
        # With labels (a loss) or in training the forward stays one whole-image pass.
        torch.testing.assert_close(tiny_model(pixels, labels=torch.zeros(1, 70, 90, dtype=torch.long)).logits, whole)


def test_pipeline_slides_when_the_model_is_loaded_with_an_inference_mode(tiny_model, tmp_path):
    import numpy as np
    from PIL import Image
    from transformers import pipeline

    from fpl_hf import TimmSegmentationImageProcessor

    processor = TimmSegmentationImageProcessor()
    tiny_model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (70, 90, 3), dtype=np.uint8))
    segmenter = pipeline(
        "image-segmentation", model=str(tmp_path), model_kwargs={"inference_mode": "slide", "inference_crop_size": 32}
    )
    assert segmenter.model.config.inference_mode == "slide"
    pixels = processor(image, return_tensors="pt")["pixel_values"]
    expected = predict_logits(tiny_model, pixels, mode="slide", crop_size=32).argmax(1)[0]
    masks = segmenter(image)
    predicted = torch.full((70, 90), -1)
    for mask in masks:
        predicted[torch.from_numpy(np.array(mask["mask"]) > 0)] = tiny_model.config.label2id[mask["label"]]
    assert torch.equal(predicted, expected)


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"inference_mode": "tiles"}, "inference_mode"),
        ({"inference_mode": "slide"}, "inference_crop_size"),
        ({"inference_crop_size": 32, "inference_stride": 40}, "inference_stride"),
    ],
)
def test_bad_inference_settings_name_the_field(overrides, field):
    from conftest import tiny_config

    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)
