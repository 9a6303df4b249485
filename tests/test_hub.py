import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL_FLAGS, make_trainer
from hub_server import TOKEN
from huggingface_hub import ModelCard, constants, hf_hub_download, metadata_load
from PIL import Image
from transformers import AutoModelForSemanticSegmentation, pipeline

from fpl_hf import TimmSegmentationImageProcessor
from fpl_hf.hub import HubPushError, ModelCardInfo, main, push_output_dir

ROOT = Path(__file__).resolve().parents[1]
REPO = "tester/fpl-tiny"


def trained_run(scenes, tmp_path, **overrides):
    """A finished CPS run in tmp_path/run: evaluated, saved, with its card."""
    processor = TimmSegmentationImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3)
    info = ModelCardInfo(
        dataset_name="fashion-scenes", dataset_split="validation", labeled_split="6 scenes", demo_space="tester/demo"
    )
    trainer = make_trainer(
        scenes,
        tmp_path,
        framework="cps",
        eval_strategy="steps",
        eval_steps=2,
        trainer_kwargs={"processing_class": processor, "model_card_info": info},
        **overrides,
    )
    trainer.train()
    trainer.save_model()
    return trainer


def logits_of(model, pixels):
    with torch.no_grad():
        return model.eval()(pixels).logits


def directory_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in path.rglob("*") if p.is_file()
    }


def test_trainer_pushes_model_card_and_checkpoints_that_from_pretrained_loads(scenes, tmp_path, hub):
    trainer = trained_run(
        scenes,
        tmp_path,
        push_to_hub=True,
        hub_model_id=REPO,
        hub_strategy="checkpoint",
        save_strategy="steps",
        save_steps=2,
    )
    files = hub.repos[REPO].files
    for name in (
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "README.md",
        "modeling_deeplabv3plus.py",
        "modeling_timm_segmentation.py",
        "image_processing_timm_segmentation.py",
        "last-checkpoint/model.safetensors",
        "last-checkpoint/branch_2.safetensors",
        "validation_curve.png",
        "k_shares.png",
    ):
        assert name in files, name
    assert not any(name.startswith("checkpoint-") for name in files)
    card = Path(hf_hub_download(REPO, "README.md")).read_text()
    assert "](validation_curve.png)" in card and "](k_shares.png)" in card
    assert "[demo](https://huggingface.co/spaces/tester/demo)" in card
    for name in ("validation_curve.png", "k_shares.png"):
        assert Image.open(hf_hub_download(REPO, name)).size[0] > 100

    model = AutoModelForSemanticSegmentation.from_pretrained(REPO)
    pixels = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(logits_of(model, pixels), logits_of(trainer.model.branch_1, pixels), rtol=0, atol=0)

    metadata = metadata_load(hf_hub_download(REPO, "README.md"))
    assert metadata["pipeline_tag"] == "image-segmentation" and "fpl" in metadata["tags"]
    (result,) = ModelCard.load(REPO).data.eval_results
    assert result.metric_type == "mean_iou" and result.dataset_name == "fashion-scenes"
    assert result.dataset_split == "validation"
    assert result.metric_value == round(trainer.last_metrics["mean_iou"], 4)


def test_pipeline_on_a_hub_id_with_fpl_hf_needs_no_remote_code(scenes, tmp_path, hub, monkeypatch):
    trained_run(scenes, tmp_path)
    push_output_dir(str(tmp_path / "run"), REPO)
    prompts = []
    monkeypatch.setattr("builtins.input", lambda *args: prompts.append(args) or "n")
    segmenter = pipeline("image-segmentation", model=REPO)
    masks = segmenter(Image.fromarray(np.full((20, 30, 3), 90, np.uint8)))
    assert prompts == []
    assert isinstance(segmenter.image_processor, TimmSegmentationImageProcessor)
    assert masks and all(mask["mask"].size == (30, 20) for mask in masks)


def test_hub_model_loads_with_trust_remote_code_where_fpl_hf_is_absent(scenes, tmp_path, hub):
    trainer = trained_run(scenes, tmp_path)
    main([str(tmp_path / "run"), REPO])
    pixels = torch.randn(1, 3, 32, 32)
    np.save(tmp_path / "pixels.npy", pixels.numpy())
    script = f"""
import sys
sys.modules["fpl_hf"] = None  # as if fpl_hf were not installed
import numpy as np, torch
from PIL import Image
from transformers import AutoModelForSemanticSegmentation, pipeline
model = AutoModelForSemanticSegmentation.from_pretrained({REPO!r}, trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(torch.from_numpy(np.load(sys.argv[1]))).logits
np.save(sys.argv[2], logits.numpy())
segmenter = pipeline("image-segmentation", model={REPO!r}, trust_remote_code=True)
masks = segmenter(Image.new("RGB", (30, 20)))
print(type(model).__module__, type(segmenter.image_processor).__module__, len(masks))
"""
    env = {
        **os.environ,
        "HF_ENDPOINT": constants.ENDPOINT,
        "HF_HUB_OFFLINE": "0",
        "HF_HOME": str(tmp_path / "home"),
        "HF_TOKEN": TOKEN,
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pixels.npy"), str(tmp_path / "logits.npy")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    model_module, processor_module, num_masks = result.stdout.split()[-3:]
    assert model_module.startswith("transformers_modules") and processor_module.startswith("transformers_modules")
    assert int(num_masks) >= 1
    expected = logits_of(trainer.model.branch_1, pixels)
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "logits.npy")), expected, rtol=0, atol=1e-6)


def test_push_without_a_token_says_how_to_get_one(scenes, tmp_path, hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(HubPushError, match="hf auth login"):
        make_trainer(scenes, tmp_path, push_to_hub=True, hub_model_id=REPO)
    assert hub.repos == {}


def test_failed_pushes_are_explained_and_leave_the_output_directory_whole(scenes, tmp_path, hub, monkeypatch):
    trained_run(scenes, tmp_path)
    run = tmp_path / "run"
    before = directory_digest(run)
    hub.refuse_commits = True
    with pytest.raises(HubPushError, match=r"(?s)answered 403.*write access.*Nothing in .* was changed"):
        push_output_dir(str(run), REPO)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    with pytest.raises(HubPushError, match="unreachable"):
        push_output_dir(str(run), REPO)
    assert directory_digest(run) == before
    with pytest.raises(FileNotFoundError, match="not a finished fpl_hf run"):
        push_output_dir(str(tmp_path), REPO)


def test_the_push_command_prints_the_reason_and_exits_1(tmp_path, hub, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), REPO])
    error = capsys.readouterr().err
    assert exit_info.value.code == 1 and error.startswith("fpl-hf-push: ") and "not a finished fpl_hf run" in error


def test_card_of_an_unevaluated_model_has_no_results(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="mean_teacher", burn_in_steps=1, unsup_rampup_steps=3)
    trainer.train()
    trainer.save_model()
    card = ModelCard.load(tmp_path / "run" / "README.md")
    assert card.data.eval_results is None and "Not evaluated yet" in card.text
    assert "EMA of the student" in card.text
    assert (
        "| burn-in | supervised training alone for the first 1 steps |" in card.text
        and "ramped up linearly over 3 steps" in card.text
    )


def test_card_template_ships_with_the_package_and_model_cards_points_at_it():
    from fpl_hf.hub import TEMPLATE

    assert TEMPLATE.is_file()
    assert (ROOT / "model_cards" / "template.md").resolve() == TEMPLATE.resolve()
    example = ROOT / "model_cards" / "fpl-embedded-example.md"
    metadata = metadata_load(example)
    (entry,) = metadata["model-index"]
    assert entry["results"][0]["metrics"][0]["type"] == "mean_iou"
    assert metadata["pipeline_tag"] == "image-segmentation"


def test_a_push_refused_during_training_warns_and_the_run_still_saves_everything(scenes, tmp_path, hub, caplog):
    from transformers.utils import logging as hf_logging

    hub.refuse_commits = True
    hf_logging.enable_propagation()
    try:
        with pytest.raises(HubPushError, match="answered 403"):
            trained_run(scenes, tmp_path, push_to_hub=True, hub_model_id=REPO, save_strategy="steps", save_steps=1)
    finally:
        hf_logging.disable_propagation()
    assert "background push to tester/fpl-tiny failed" in caplog.text
    run = tmp_path / "run"
    for name in ("model.safetensors", "config.json", "README.md", "checkpoint-2/branch_2.safetensors"):
        assert (run / name).is_file(), name


def test_a_save_through_the_python_api_runs_in_pipeline_without_a_not_supported_line(scenes, tmp_path, monkeypatch):
    from transformers.pipelines import base

    trainer = make_trainer(scenes, tmp_path, framework="cps")  # no image processor given: the family's is saved
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    errors = []
    monkeypatch.setattr(base.logger, "error", lambda message, *args, **kwargs: errors.append(message))
    segmenter = pipeline("image-segmentation", model=str(tmp_path / "saved"))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    masks = segmenter(image)
    assert not errors
    assert isinstance(segmenter.image_processor, TimmSegmentationImageProcessor)
    assert list(segmenter.image_processor.image_mean) == [0.5] * 3  # the training set's normalisation
    pixels = torch.from_numpy((np.asarray(image, dtype=np.float32) / 255 - 0.5) / 0.5).permute(2, 0, 1)[None]
    expected = logits_of(trainer.model.branch_1, pixels).argmax(1)[0]
    predicted = torch.full((32, 32), -1)
    for mask in masks:
        predicted[torch.from_numpy(np.array(mask["mask"]) > 0)] = trainer.model.branch_1.config.label2id[mask["label"]]
    assert torch.equal(predicted, expected)


def test_checkpoint_pushes_carry_the_run_summary(hub, tmp_path):
    import run_fpl

    run_fpl.main(
        *run_fpl.parse_arguments(
            [
                *TINY_MODEL_FLAGS,
                "--num_train_scenes",
                "12",
                "--num_validation_scenes",
                "2",
                "--scene_size",
                "32",
                "--crop_size",
                "32",
                "--num_labeled",
                "4",
                "--per_device_train_batch_size",
                "2",
                "--max_steps",
                "2",
                "--burn_in_steps",
                "1",
                "--save_strategy",
                "steps",
                "--save_steps",
                "1",
                "--eval_strategy",
                "no",
                "--report_to",
                "none",
                "--push_to_hub",
                "true",
                "--hub_model_id",
                REPO,
                "--hub_strategy",
                "checkpoint",
                "--output_dir",
                str(tmp_path / "run"),
            ]
        )
    )
    files = hub.repos[REPO].files
    assert "run_summary.json" in files and "last-checkpoint/model.safetensors" in files
    assert files["run_summary.json"] == (tmp_path / "run" / "run_summary.json").read_bytes()
