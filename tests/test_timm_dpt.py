"""fpl_hf's DPT head on a timm DINOv2 ViT: shapes at any size, patch padding, saving, and training under every
framework."""

import math

import pytest
import torch
from conftest import ROOT, make_trainer, run_fpl, tiny_dinov2_dpt_config
from transformers import AutoModelForSemanticSegmentation, pipeline

from fpl_hf import TimmDPTConfig, TimmDPTForSemanticSegmentation


def tiny_dpt():
    torch.manual_seed(0)
    return TimmDPTForSemanticSegmentation(tiny_dinov2_dpt_config())


def test_any_size_is_padded_to_the_patch_and_cropped_back():
    model = tiny_dpt().eval()
    seen = []
    model.backbone.patch_embed.register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[-2:]))
    pixels = torch.randn(2, 3, 30, 45)
    with torch.no_grad():
        logits = model(pixels).logits
        padded = torch.nn.functional.pad(pixels, (0, 11, 0, 12))  # 42 x 56: multiples of 14
        reference = model(padded).logits[..., :30, :45]
    assert logits.shape == (2, 11, 30, 45) and seen[0] == (42, 56)
    torch.testing.assert_close(logits, reference)


def test_the_head_reads_four_normed_blocks_and_perturbs_each():
    model = tiny_dpt().eval()
    features = model._features(torch.randn(1, 3, 28, 28))
    assert len(features) == 4 and all(f.shape == (1, 32, 2, 2) for f in features)
    calls = []
    output = model(torch.randn(1, 3, 28, 28), feature_perturbation=lambda f: calls.append(f.shape) or f * 0)
    assert len(calls) == 4 and not torch.allclose(output.logits, output.perturbed_logits)


@pytest.mark.parametrize(
    "value, message",
    [
        (dict(out_indices=[1, 2, 3]), "four increasing"),
        (dict(backbone="resnet18"), "Vision Transformer"),
        (dict(out_indices=[0, 1, 2, 9]), "beyond"),
    ],
)
def test_bad_configs_are_named(value, message):
    with pytest.raises(ValueError, match=message):
        TimmDPTForSemanticSegmentation(tiny_dinov2_dpt_config(**value))


def test_saved_and_reloaded_through_the_auto_classes_and_pipeline(tmp_path):
    import numpy as np
    from PIL import Image

    from fpl_hf import TimmSegmentationImageProcessor

    model = tiny_dpt().eval()
    model.save_pretrained(tmp_path)
    TimmSegmentationImageProcessor().save_pretrained(tmp_path)
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    pixels = torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, model(pixels).logits)
    masks = pipeline("image-segmentation", model=str(tmp_path))(Image.fromarray(np.zeros((30, 40, 3), np.uint8)))
    assert masks and masks[0]["mask"].size == (40, 30)


@pytest.mark.parametrize("framework", ["supervised", "cps", "mean_teacher", "unimatch", "unimatch_v2"])
def test_the_dpt_head_trains_under_every_framework(scenes, tmp_path, framework):
    trainer = make_trainer(scenes, tmp_path, model=tiny_dpt(), framework=framework, crop_size=28)
    before = {name: value.detach().clone() for name, value in trainer.model.named_parameters()}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry["loss"]) for entry in logs)
    unchanged = [name for name, value in trainer.model.named_parameters() if torch.equal(value, before[name])]
    # DINOv2's mask token serves masked-image pretraining only.
    assert all(name.endswith("mask_token") for name in unchanged), unchanged


def test_every_dpt_recipe_builds_a_valid_config(tmp_path):
    recipes = sorted((ROOT / "examples" / "configs").glob("*dinov2*.yaml"))
    assert len(recipes) == 4
    for path in recipes:
        model_args, _, args, _ = run_fpl.parse_arguments(["--config", str(path), "--output_dir", str(tmp_path)])
        assert model_args.architecture == "dpt" and args.framework == "unimatch_v2" and args.encoder_lr_ratio == 0.025
        config = TimmDPTConfig(
            backbone=model_args.backbone,
            out_indices=model_args.out_indices,
            num_labels=21,
            dpt_out_channels=model_args.dpt_out_channels,
            dpt_features=model_args.dpt_features,
        )
        assert args.crop_size % 14 == 0 and config.out_indices == [2, 5, 8, 11]
