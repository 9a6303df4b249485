"""examples/run_fpl.py end to end on tiny models: real data-set layouts, nothing lost on a failure."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import run_fpl
from fpl_hf import DeepLabV3PlusForSemanticSegmentation

TINY = ["--backbone", "test_resnet", "--backbone_weights", "none", "--aspp_channels", "16", "--decoder_channels", "16",
        "--crop_size", "32", "--per_device_train_batch_size", "2", "--max_steps", "2", "--save_strategy", "no",
        "--eval_strategy", "no", "--disable_tqdm", "true", "--report_to", "none"]


def write_slices(folder, count, with_masks=True, seed=0):
    """Grey slices in three orientations (181x217, 181x181 and 217x181 pixels, scaled down), 8 classes."""
    rng = np.random.default_rng(seed)
    (folder / "images").mkdir(parents=True)
    if with_masks:
        (folder / "masks").mkdir()
    for index in range(count):
        height, width = [(36, 44), (36, 36), (44, 36)][index % 3]
        Image.fromarray(rng.integers(0, 255, (height, width), dtype=np.uint8)).save(folder / "images" / f"{index}.png")
        if with_masks:
            Image.fromarray(rng.integers(0, 8, (height, width), dtype=np.uint8)).save(folder / "masks" / f"{index}.png")


def test_a_folder_data_set_of_three_image_sizes_trains_and_scores_alike_at_eval_batch_8_and_1(tmp_path):
    write_slices(tmp_path / "labeled", 6)
    write_slices(tmp_path / "unlabeled", 9, with_masks=False, seed=1)
    write_slices(tmp_path / "validation", 9, seed=2)
    folders = ["--dataset", "folders", "--num_labels", "8", "--images_dir", str(tmp_path / "labeled" / "images"),
               "--masks_dir", str(tmp_path / "labeled" / "masks"), "--unlabeled_dir", str(tmp_path / "unlabeled" / "images"),
               "--validation_images_dir", str(tmp_path / "validation" / "images"),
               "--validation_masks_dir", str(tmp_path / "validation" / "masks"), "--framework", "mean_teacher"]
    summary = run_fpl.main(*run_fpl.parse_arguments(TINY + folders + ["--per_device_eval_batch_size", "8",
                                                                          "--output_dir", str(tmp_path / "run")]))
    model_path = tmp_path / "run"
    again = run_fpl.main(*run_fpl.parse_arguments(TINY + folders + ["--per_device_eval_batch_size", "1",
                                                                        "--output_dir", str(tmp_path / "again")]))
    assert summary["final_mean_iou"] == pytest.approx(again["final_mean_iou"], abs=1e-6)
    assert json.loads((model_path / "run_summary.json").read_text())["final_mean_iou"] == summary["final_mean_iou"]
    DeepLabV3PlusForSemanticSegmentation.from_pretrained(model_path)


def test_a_failing_final_evaluation_leaves_the_trained_model_saved(tmp_path, monkeypatch):
    from fpl_hf.trainer import FPLTrainer

    def broken(self, *args, **kwargs):
        raise RuntimeError("injected evaluation failure")

    monkeypatch.setattr(FPLTrainer, "prediction_step", broken)
    flags = TINY + ["--num_train_scenes", "12", "--num_validation_scenes", "2", "--scene_size", "32", "--num_labeled",
                    "4", "--output_dir", str(tmp_path / "run")]
    with pytest.raises(RuntimeError, match="injected"):
        run_fpl.main(*run_fpl.parse_arguments(flags))
    DeepLabV3PlusForSemanticSegmentation.from_pretrained(tmp_path / "run")


def test_an_unlabeled_pool_of_parquet_shards_is_streamed_at_two_unlabeled_per_labeled(tmp_path):
    from datasets import Dataset, IterableDataset

    from fpl_hf.data import DataSource, load_training_data

    pool = tmp_path / "pool"
    pool.mkdir()
    for shard in range(2):
        images = [Image.fromarray(np.full((40, 40, 3), 40 * shard + i, np.uint8)) for i in range(6)]
        Dataset.from_dict({"img": images, "caption": ["x"] * 6}).to_parquet(str(pool / f"train-{shard}.parquet"))
    scenes = ["--num_train_scenes", "12", "--num_validation_scenes", "2", "--scene_size", "32", "--num_labeled", "4"]
    source = DataSource(num_train_scenes=12, scene_size=32, num_labeled=4, unlabeled_dataset=str(pool))
    assert isinstance(load_training_data(source).unlabeled, IterableDataset)
    with pytest.raises(ValueError, match="drop the split lists, the unlabeled folder or `unlabeled_dataset`"):
        load_training_data(DataSource(num_train_scenes=12, scene_size=32, all_labeled=True, unlabeled_dataset=str(pool)))
    summary = run_fpl.main(*run_fpl.parse_arguments(TINY + scenes + [
        "--unlabeled_dataset", str(pool), "--framework", "cps", "--per_device_unlabeled_batch_size", "4",
        "--burn_in_steps", "0", "--unsup_rampup_steps", "0", "--logging_steps", "1",
        "--output_dir", str(tmp_path / "run"),
    ]))
    assert summary["unlabeled_images"] == "a streamed pool of"
    assert [entry["step"] for entry in summary["log_history"] if "unsup" in entry] == [1, 2]
