import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer, tiny_config
from PIL import Image

from fpl_hf import DeepLabV3PlusForSemanticSegmentation, TimmSegmentationImageProcessor
from fpl_hf.data import EvaluationDataset, load_folders, make_fashion_scenes
from fpl_hf.evaluation import EvaluationProtocol, evaluate_model, write_report
from fpl_hf.metrics import ConfusionMatrix
from fpl_hf.viz import colorize, gradient_score_figure, k_map_figure, k_shares_figure, overlay, palette

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config(num_labels=11))
    model.save_pretrained(directory)
    TimmSegmentationImageProcessor(image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(directory)
    return directory


def test_report_files_are_written_and_parse(tmp_path):
    confusion = ConfusionMatrix(3)
    confusion.update(np.array([[0, 1, 2, 2]]), np.array([[0, 1, 1, 255]]))
    protocol = EvaluationProtocol("slide", 512, 341)
    report = write_report(confusion, ["a", "b", "c"], tmp_path, protocol=protocol, model_name="m", dataset_name="d")
    parsed = json.loads((tmp_path / "report.json").read_text())
    assert parsed == report
    assert parsed["evaluation"] == {
        "mode": "slide",
        "crop_size": 512,
        "stride": 341,
        "flip": False,
        "description": "single scale, sliding window 512 stride 341",
    }
    assert parsed["per_class"]["b"] == {"iou": 0.5, "accuracy": 0.5, "pixels": 2}
    assert parsed["per_class"]["c"]["iou"] == 0.0 and parsed["mean_iou"] == pytest.approx(0.5)
    table = (tmp_path / "report.md").read_text()
    assert "| b | 50.00 | 50.00 | 2 |" in table and "sliding window 512 stride 341" in table
    with Image.open(tmp_path / "confusion_matrix.png") as picture:
        assert picture.format == "PNG" and min(picture.size) >= 300


def test_evaluate_model_streams_the_whole_data_set():
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config(num_labels=11))
    scenes = make_fashion_scenes(3, size=32, split="validation")

    def score(protocol):
        return evaluate_model(
            model,
            scenes,
            image_mean=[0.5] * 3,
            image_std=[0.5] * 3,  # noqa: E731
            protocol=protocol,
        ).counts

    whole = score(EvaluationProtocol())
    assert whole.sum() == 3 * 32 * 32
    assert torch.equal(score(EvaluationProtocol("slide", 32)), whole)  # the crop covers the image
    assert score(EvaluationProtocol("center", 16)).sum() == 3 * 16 * 16
    assert score(EvaluationProtocol("center", 40)).sum() == 3 * 32 * 32  # padding is never scored


def test_pictures_are_valid_pngs_of_the_expected_size(tmp_path):
    image = Image.new("RGB", (32, 32))
    k_map_figure(image, np.random.randint(1, 4, (32, 32)), tmp_path / "k.png")
    gradient_score_figure(image, np.random.randn(32, 32), np.random.randint(0, 4, (32, 32)), tmp_path / "r.png")
    history = [{"step": s, "k1": 0.5 + s / 100, "k2": 0.3, "k3+": 0.2 - s / 100} for s in (10, 20)] + [{"step": 20}]
    k_shares_figure(history, tmp_path / "shares.png")
    for name, size in (("k.png", (800, 400)), ("r.png", (1200, 400)), ("shares.png", (600, 400))):
        with Image.open(tmp_path / name) as picture:
            assert picture.format == "PNG" and picture.size == size
    with pytest.raises(ValueError, match="K shares"):
        k_shares_figure([{"step": 1, "loss": 1.0}], tmp_path / "none.png")


def test_colours_are_distinct_and_overlays_keep_the_size():
    colours = palette(21)
    assert len({tuple(c) for c in colours}) == 21
    mask = np.array([[0, 1], [255, 2]])
    assert np.asarray(colorize(mask, 3))[1, 0].tolist() == [255, 255, 255]
    assert overlay(Image.new("RGB", (8, 6)), np.zeros((6, 8), dtype=int), 3).size == (8, 6)


def test_evaluate_and_predict_commands(saved_model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for index, scene in enumerate(make_fashion_scenes(2, size=32, split="validation")["image"]):
        scene.save(images / f"{index}.png")
    run = lambda *args: subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)  # noqa: E731
    report = run(
        "examples/evaluate.py",
        "--model",
        str(saved_model),
        "--num_validation_scenes",
        "4",
        "--mode",
        "center",
        "--crop_size",
        "16",
        "--output_dir",
        str(tmp_path / "r"),
    )
    assert report.returncode == 0, report.stderr[-2000:]
    parsed = json.loads((tmp_path / "r" / "report.json").read_text())
    assert parsed["dataset"] == "embedded" and parsed["evaluation"]["mode"] == "center"
    assert sum(values["pixels"] for values in parsed["per_class"].values()) == 4 * 16 * 16
    refused = run("examples/evaluate.py", "--model", str(saved_model), "--mode", "slide")
    assert refused.returncode == 2 and "needs a crop size" in refused.stderr
    slide = run(
        "examples/evaluate.py",
        "--model",
        str(saved_model),
        "--num_validation_scenes",
        "3",
        "--mode",
        "slide",
        "--crop_size",
        "24",
        "--stride",
        "12",
        "--output_dir",
        str(tmp_path / "s"),
    )
    assert slide.returncode == 0, slide.stderr[-2000:]
    parsed = json.loads((tmp_path / "s" / "report.json").read_text())
    assert (parsed["evaluation"]["mode"], parsed["evaluation"]["crop_size"], parsed["evaluation"]["stride"]) == (
        "slide",
        24,
        12,
    )
    assert sum(values["pixels"] for values in parsed["per_class"].values()) == 3 * 64 * 64  # every pixel, once
    state = tmp_path / "state.json"
    state.write_text(
        json.dumps(
            {
                "log_history": [
                    {"step": 10, "k1": 0.5, "k2": 0.3, "k3+": 0.2},
                    {"step": 20, "k1": 0.7, "k2": 0.2, "k3+": 0.1},
                ]
            }
        )
    )
    pictures = run(
        "examples/fpl_pictures.py",
        "--model",
        str(saved_model),
        "--images",
        "2",
        "--trainer_state",
        str(state),
        "--output_dir",
        str(tmp_path / "f"),
    )
    assert pictures.returncode == 0, pictures.stderr[-2000:]
    for name in ("k_map_0.png", "k_map_1.png", "gradient_score_1.png", "k_shares.png"):
        with Image.open(tmp_path / "f" / name) as picture:
            assert picture.size[0] > 100 and picture.size[1] > 100, name
    predicted = run(
        "examples/predict.py", "--model", str(saved_model), "--images", str(images), "--output_dir", str(tmp_path / "p")
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    with Image.open(tmp_path / "p" / "1_overlay.png") as picture:
        assert picture.size == (32, 32)  # the size of the input image


def write_mixed_size_folders(root):
    """Images in three sizes (as slices of a volume in three orientations), with their masks: 28 and 40 pixels, on
    both sides of the test network's stride of 32, so that padding to the largest of a batch changes what it sees."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index, (height, width) in enumerate([(28, 40), (28, 28), (40, 28)] * 3):
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / "images" / f"{index}.png")
        mask = rng.integers(0, 11, (height, width), dtype=np.uint8)
        mask[:3] = 255
        Image.fromarray(mask).save(root / "masks" / f"{index}.png")
    return load_folders(root / "images", root / "masks")[0]


@pytest.mark.parametrize(
    "protocol",
    [dict(eval_mode="whole"), dict(eval_mode="slide", eval_crop_size=24), dict(eval_mode="center", eval_crop_size=40)],
)
def test_images_of_several_sizes_give_the_same_miou_at_any_eval_batch_size(scenes, tmp_path, protocol):
    validation = write_mixed_size_folders(tmp_path / "folders")
    results = []
    for batch_size in (1, 4):
        trainer = make_trainer(
            scenes,
            tmp_path / str(batch_size),
            framework="supervised",
            per_device_eval_batch_size=batch_size,
            **protocol,
        )
        with torch.no_grad():  # shifted BatchNorms: zero padding no longer maps to zero features
            generator = torch.Generator().manual_seed(0)
            for module in trainer.model.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.bias.copy_(torch.randn(module.bias.shape, generator=generator))
        trainer.eval_dataset = EvaluationDataset(validation, num_labels=11, image_mean=[0.5] * 3, image_std=[0.5] * 3)
        results.append(trainer.evaluate())
    # The padding a batch of mixed sizes would add changes what this network predicts on the image itself.
    network = trainer.model.eval()
    image = EvaluationDataset(validation, num_labels=11, image_mean=[0.5] * 3, image_std=[0.5] * 3)[1]["pixel_values"]
    with torch.no_grad():
        alone, padded = network.segment(image[None]), network.segment(F.pad(image, (0, 12, 0, 12))[None])
    assert not torch.equal(alone.argmax(1), padded[..., :28, :28].argmax(1))
    assert results[0]["eval_mean_iou"] == pytest.approx(results[1]["eval_mean_iou"], abs=1e-6)
    assert results[0]["eval_overall_accuracy"] == pytest.approx(results[1]["eval_overall_accuracy"], abs=1e-6)
    expected = evaluate_model(
        trainer.model, validation, image_mean=[0.5] * 3, image_std=[0.5] * 3, protocol=trainer.args.evaluation_protocol
    ).compute()
    assert results[1]["eval_mean_iou"] == pytest.approx(expected["mean_iou"], abs=1e-6)


def test_importing_fpl_hf_leaves_the_matplotlib_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg'); import fpl_hf, fpl_hf.viz, fpl_hf.evaluation; "
        "print(matplotlib.get_backend())"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "svg", result.stderr[-2000:]


def test_pictures_and_reports_read_folder_data_as_run_fpl_does(saved_model, tmp_path):
    write_mixed_size_folders(tmp_path / "validation")
    folders = [
        "--dataset",
        "folders",
        "--num_labels",
        "11",
        "--validation_images_dir",
        str(tmp_path / "validation" / "images"),
        "--validation_masks_dir",
        str(tmp_path / "validation" / "masks"),
    ]
    run = lambda *args: subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)  # noqa: E731
    pictures = run(
        "examples/fpl_pictures.py",
        "--model",
        str(saved_model),
        "--images",
        "2",
        *folders,
        "--output_dir",
        str(tmp_path / "f"),
    )
    assert pictures.returncode == 0, pictures.stderr[-2000:]
    with Image.open(tmp_path / "f" / "k_map_0.png") as picture:
        assert picture.size[0] > 100
    report = run("examples/evaluate.py", "--model", str(saved_model), *folders, "--output_dir", str(tmp_path / "r"))
    assert report.returncode == 0, report.stderr[-2000:]
    parsed = json.loads((tmp_path / "r" / "report.json").read_text())
    # every labeled pixel of the nine slices (the top three rows of each are 255)
    assert sum(values["pixels"] for values in parsed["per_class"].values()) == 3 * (25 * 40 + 25 * 28 + 37 * 28)
