"""Any transformers semantic-segmentation model under FPLTrainer: SegFormer, UperNet with a DINOv2 backbone and DPT
from tiny random configs, trained, saved, reloaded with transformers alone, and run in `pipeline`."""

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import make_trainer, run_fpl, tiny_model_of, tiny_transformers_model
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from fpl_hf.data import make_fashion_scenes
from fpl_hf.evaluation import evaluate_model
from fpl_hf.modeling.transformers_segmenter import (
    TransformersSegmenter,
    as_segmenter,
    image_processor_for,
    pretrained_for_classes,
)

FAMILIES = ["segformer", "upernet_dinov2", "dpt"]


def trainer_for(family, scenes, tmp_path, **overrides):
    model = tiny_transformers_model(family)
    processor = image_processor_for(model, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return make_trainer(scenes, tmp_path, model=model, trainer_kwargs={"processing_class": processor}, **overrides)


def modules_in_a_forward(network):
    """The modules whose parameters a forward uses (transformers' DPT, for one, has a final LayerNorm its head
    never reads). Checked module by module: a tiny random SegFormer's LayerNorm weights get gradients near 1e-7,
    which a float32 step of 2 can round away, while their biases move."""
    network.zero_grad()
    outputs = network(pixel_values=torch.randn(2, 3, 32, 32))
    logits = outputs if isinstance(outputs, tuple) else (outputs.logits,)
    sum(branch.sum() for branch in logits).backward()
    return {
        name.rsplit(".", 1)[0]
        for name, value in network.named_parameters()
        if value.grad is not None and value.grad.abs().sum() > 0
    }


@pytest.mark.parametrize("framework", ["cps", "mean_teacher", "unimatch", "unimatch_v2"])
@pytest.mark.parametrize("family", FAMILIES)
def test_transformers_models_train_under_every_framework_with_fpl(scenes, tmp_path, family, framework):
    trainer = trainer_for(family, scenes, tmp_path, framework=framework)
    before = {name: value.detach().clone() for name, value in trainer.model.named_parameters()}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "unsup" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry["loss"]) for entry in logs) and "k1" in logs[-1]
    changed_modules = {
        name.rsplit(".", 1)[0]
        for name, value in trainer.model.named_parameters()
        if not torch.equal(value, before[name])
    }
    untrained = modules_in_a_forward(trainer.model) - changed_modules
    assert not untrained, untrained
    trainer.save_model()
    exported = type(trainer._inference_model(trainer.model))
    assert exported.__module__.startswith("transformers.")  # the user's own class is saved, no wrapper
    assert (tmp_path / "run" / "model.safetensors").is_file() and (tmp_path / "run" / "README.md").is_file()


def test_a_saved_model_loads_and_runs_in_pipeline_with_transformers_alone(scenes, tmp_path):
    trainer = trainer_for("segformer", scenes, tmp_path, framework="cps", eval_strategy="no")
    trainer.train()
    trainer.save_model()
    logits = trainer._inference_model(trainer.model).eval()(pixel_values=torch.zeros(1, 3, 32, 32)).logits
    script = (
        "import sys, json, numpy, torch\n"
        "from PIL import Image\n"
        "from transformers import AutoModelForSemanticSegmentation, pipeline\n"
        f"path = {str(tmp_path / 'run')!r}\n"
        "model = AutoModelForSemanticSegmentation.from_pretrained(path).eval()\n"
        "logits = model(pixel_values=torch.zeros(1, 3, 32, 32)).logits\n"
        "masks = pipeline('image-segmentation', model=path)(Image.fromarray(numpy.zeros((32, 32, 3), numpy.uint8)))\n"
        "print(json.dumps({'fpl_hf': 'fpl_hf' in sys.modules, 'class': type(model).__name__,"
        " 'sum': float(logits.sum()), 'labels': sorted(mask['label'] for mask in masks)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["fpl_hf"] is False and loaded["class"] == "SegformerForSemanticSegmentation"
    assert loaded["sum"] == pytest.approx(float(logits.detach().sum()), rel=1e-4)
    assert loaded["labels"] and all(label.startswith("class_") for label in loaded["labels"])
    card = (tmp_path / "run" / "README.md").read_text()
    assert "SegformerForSemanticSegmentation" in card and "import fpl_hf" not in card and "cps" in card


def test_resuming_a_transformers_model_gives_the_weights_of_an_uninterrupted_run(scenes, tmp_path):
    full = trainer_for("segformer", scenes, tmp_path / "full", framework="mean_teacher", max_steps=4)
    full.train()
    interrupted = trainer_for(
        "segformer",
        scenes,
        tmp_path / "cut",
        framework="mean_teacher",
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
    )
    interrupted.train()
    resumed = trainer_for("segformer", scenes, tmp_path / "cut", framework="mean_teacher", max_steps=4)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "run" / "checkpoint-2"))
    for uninterrupted, continued in ((full.model, resumed.model), (full.teacher, resumed.teacher)):
        state = continued.state_dict()
        for name, value in uninterrupted.state_dict().items():
            torch.testing.assert_close(state[name], value, msg=name)


def test_feature_perturbation_elsewhere_names_the_frameworks_to_use(scenes, tmp_path):
    with pytest.raises(ValueError, match="'cps' or 'mean_teacher'"):
        trainer_for("mobilevit", scenes, tmp_path, framework="unimatch")
    trainer_for("mobilevit", scenes, tmp_path, framework="cps").train()  # CPS needs no features


def test_a_checkpoint_with_other_classes_gets_a_new_head_for_the_data(tmp_path, caplog):
    tiny_transformers_model("segformer", num_labels=5).save_pretrained(tmp_path / "ade")
    names = ("sky", "road", "car")
    model = pretrained_for_classes(str(tmp_path / "ade"), names)
    assert model.config.num_labels == 3 and model.config.id2label == {0: "sky", 1: "road", 2: "car"}
    assert model.decode_head.classifier.weight.shape[0] == 3


def test_uniMatch_views_of_a_vit_perturb_token_channels():
    model = TransformersSegmenter(tiny_transformers_model("dpt")).eval()
    seen = []
    output = model(torch.randn(2, 3, 32, 32), feature_perturbation=lambda f: seen.append(f.shape) or f * 0)
    assert seen and all(len(shape) == 4 and shape[1] == 16 and shape[3] == 1 for shape in seen)  # (B, C, N, 1)
    assert not torch.allclose(output.logits, output.perturbed_logits)


@pytest.mark.parametrize("family", ["segformer", "upernet_dinov2"])
def test_run_fpl_trains_a_transformers_folder_under_cps_and_fpl(tmp_path, family):
    folder = tmp_path / family
    model = tiny_transformers_model(family, num_labels=6)
    model.save_pretrained(folder)
    image_processor_for(model).save_pretrained(folder)
    output = tmp_path / "out"
    summary = run_fpl.main(
        *run_fpl.parse_arguments(
            [
                "--model_name_or_path",
                str(folder),
                "--framework",
                "cps",
                "--unsup_loss",
                "fpl",
                "--num_train_scenes",
                "24",
                "--num_validation_scenes",
                "4",
                "--scene_size",
                "32",
                "--crop_size",
                "32",
                "--num_labeled",
                "6",
                "--max_steps",
                "2",
                "--burn_in_steps",
                "1",
                "--per_device_train_batch_size",
                "2",
                "--eval_strategy",
                "no",
                "--save_strategy",
                "no",
                "--use_cpu",
                "true",
                "--output_dir",
                str(output),
            ]
        )
    )
    saved = AutoModelForSemanticSegmentation.from_pretrained(output)
    validation = make_fashion_scenes(4, size=32, split="validation")
    processor = AutoImageProcessor.from_pretrained(output)
    expected = evaluate_model(saved, validation, image_mean=processor.image_mean, image_std=processor.image_std)
    assert summary["final_mean_iou"] == pytest.approx(expected.compute()["mean_iou"], abs=1e-6)
    config = json.loads((output / "config.json").read_text())
    assert config["model_type"] == model.config.model_type and config["id2label"]["1"] == "top"
    assert (output / "preprocessor_config.json").is_file()


@pytest.mark.parametrize("family", ["segformer", "upernet_dinov2", "dpt", "mobilevit", "deeplabv3plus", "timm_dpt"])
def test_every_model_family_gives_logits_at_the_input_size(family):
    network = as_segmenter(tiny_model_of(family)).eval()
    pixels = torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        assert network.segment(pixels).shape == (2, 11, 40, 56)
        if network.supports_feature_perturbation:
            output = network(pixel_values=pixels, feature_perturbation=lambda features: features * 0.5)
            assert output.logits.shape == output.perturbed_logits.shape == (2, 11, 40, 56)


@pytest.mark.parametrize("family", ["segformer", "dpt"])
def test_a_transformers_models_logits_are_its_own_resized_bilinearly_to_the_input(family):
    """A tiny random model's logits hardly vary, so the model's own logits are replaced by random ones of a quarter
    of its input's size: what `segment` returns must be those, resized as a reference bilinear resize does."""
    from transformers.modeling_outputs import SemanticSegmenterOutput

    model = tiny_transformers_model(family).eval()
    own, inputs = [], []

    def forward(pixel_values):
        inputs.append(pixel_values.shape[-2:])
        own.append(torch.randn(pixel_values.shape[0], 11, pixel_values.shape[-2] // 4, pixel_values.shape[-1] // 4))
        return SemanticSegmenterOutput(logits=own[-1])

    model.forward = forward
    pixels = torch.randn(2, 3, 40, 56)
    logits = TransformersSegmenter(model).segment(pixels)
    # DPT takes square inputs: padded right and bottom to 56x56, the logits cropped back.
    assert inputs[-1] == ((56, 56) if family == "dpt" else (40, 56))
    reference = torch.nn.functional.interpolate(own[-1], size=inputs[-1], mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, reference[..., :40, :56])
