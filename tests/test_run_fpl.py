"""examples/run_fpl.py end to end on tiny models: real data-set layouts, nothing lost on a failure."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_MODEL_FLAGS, run_fpl
from PIL import Image

from fpl_hf import DeepLabV3PlusForSemanticSegmentation

TINY = [
    *TINY_MODEL_FLAGS,
    "--crop_size",
    "32",
    "--per_device_train_batch_size",
    "2",
    "--max_steps",
    "2",
    "--burn_in_steps",
    "0",
    "--unsup_rampup_steps",
    "0",
    "--save_strategy",
    "no",
    "--eval_strategy",
    "no",
    "--disable_tqdm",
    "true",
    "--report_to",
    "none",
]


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
    folders = [
        "--dataset",
        "folders",
        "--num_labels",
        "8",
        "--images_dir",
        str(tmp_path / "labeled" / "images"),
        "--masks_dir",
        str(tmp_path / "labeled" / "masks"),
        "--unlabeled_dir",
        str(tmp_path / "unlabeled" / "images"),
        "--validation_images_dir",
        str(tmp_path / "validation" / "images"),
        "--validation_masks_dir",
        str(tmp_path / "validation" / "masks"),
        "--framework",
        "mean_teacher",
    ]
    summary = run_fpl.main(
        *run_fpl.parse_arguments(
            TINY + folders + ["--per_device_eval_batch_size", "8", "--output_dir", str(tmp_path / "run")]
        )
    )
    model_path = tmp_path / "run"
    again = run_fpl.main(
        *run_fpl.parse_arguments(
            TINY + folders + ["--per_device_eval_batch_size", "1", "--output_dir", str(tmp_path / "again")]
        )
    )
    assert summary["final_mean_iou"] == pytest.approx(again["final_mean_iou"], abs=1e-6)
    assert json.loads((model_path / "run_summary.json").read_text())["final_mean_iou"] == summary["final_mean_iou"]
    DeepLabV3PlusForSemanticSegmentation.from_pretrained(model_path)


def test_a_failing_final_evaluation_leaves_the_trained_model_saved(tmp_path, monkeypatch):
    from fpl_hf.trainer import FPLTrainer

    def broken(self, *args, **kwargs):
        raise RuntimeError("injected evaluation failure")

    monkeypatch.setattr(FPLTrainer, "prediction_step", broken)
    flags = TINY + [
        "--num_train_scenes",
        "12",
        "--num_validation_scenes",
        "2",
        "--scene_size",
        "32",
        "--num_labeled",
        "4",
        "--output_dir",
        str(tmp_path / "run"),
    ]
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
        load_training_data(
            DataSource(num_train_scenes=12, scene_size=32, all_labeled=True, unlabeled_dataset=str(pool))
        )
    summary = run_fpl.main(
        *run_fpl.parse_arguments(
            TINY
            + scenes
            + [
                "--unlabeled_dataset",
                str(pool),
                "--framework",
                "cps",
                "--per_device_unlabeled_batch_size",
                "4",
                "--burn_in_steps",
                "0",
                "--unsup_rampup_steps",
                "0",
                "--logging_steps",
                "1",
                "--output_dir",
                str(tmp_path / "run"),
            ]
        )
    )
    assert (summary["unlabeled_images"], summary["unlabeled_pool"]) == (None, "streamed")
    assert [entry["step"] for entry in summary["log_history"] if "unsup" in entry] == [1, 2]


def folder_flags(tmp_path, *extra):
    write_slices(tmp_path / "labeled", 6)
    write_slices(tmp_path / "validation", 3, seed=2)
    return TINY + [
        "--dataset",
        "folders",
        "--num_labels",
        "8",
        "--images_dir",
        str(tmp_path / "labeled" / "images"),
        "--masks_dir",
        str(tmp_path / "labeled" / "masks"),
        "--validation_images_dir",
        str(tmp_path / "validation" / "images"),
        "--validation_masks_dir",
        str(tmp_path / "validation" / "masks"),
        "--output_dir",
        str(tmp_path / "run"),
        *extra,
    ]


def test_a_labeled_folder_alone_trains_on_every_label_and_says_so(tmp_path, capsys):
    flags = folder_flags(tmp_path, "--framework", "supervised")
    summary = run_fpl.main(*run_fpl.parse_arguments(flags))
    assert (summary["framework"], summary["unsup_loss"], summary["labeled_images"], summary["unlabeled_images"]) == (
        "supervised",
        None,
        6,
        None,
    )  # every label, none drawn away as unlabeled (no embedded default leaks in)
    assert (summary["steps"], summary["burn_in_steps"], summary["semi_supervised_steps"]) == (2, 0, 0)
    assert "supervised, 2 steps, 6 labeled images alone: final mIoU" in capsys.readouterr().out
    card = (tmp_path / "run" / "README.md").read_text()
    assert "trained on the labeled images of **folders** alone" in card
    assert "| data | folders: 6 labeled images (every training image labeled) |" in card
    assert "semi-supervised" not in card and "Fuzzy Positive" not in card and "unsupervised loss" not in card
    with pytest.raises(ValueError, match="`--unlabeled_dir`.*`--num_labeled`.*`--framework supervised`"):
        run_fpl.main(*run_fpl.parse_arguments(flags + ["--framework", "cps"]))


def test_the_summary_and_card_say_each_phase_of_a_semi_supervised_run(tmp_path, capsys):
    flags = folder_flags(
        tmp_path,
        "--framework",
        "mean_teacher",
        "--num_labeled",
        "2",
        "--max_steps",
        "5",
        "--burn_in_steps",
        "2",
        "--logging_steps",
        "1",
    )
    summary = run_fpl.main(*run_fpl.parse_arguments(flags))
    assert (summary["labeled_images"], summary["unlabeled_images"], summary["unlabeled_pool"]) == (2, 4, "map-style")
    assert (summary["steps"], summary["burn_in_steps"], summary["semi_supervised_steps"]) == (5, 2, 3)
    assert [entry["step"] for entry in summary["log_history"] if "unsup" in entry] == [3, 4, 5]
    assert (
        "mean_teacher + fpl, 5 steps (2 of supervised burn-in, then 3 semi-supervised), 2 labeled and 4 unlabeled "
        "images: final mIoU"
    ) in capsys.readouterr().out
    card = (tmp_path / "run" / "README.md").read_text()
    assert "2 labeled and 4 unlabeled images (2 drawn from train with data seed 0)" in card
    assert "5 steps (2 of supervised burn-in, then 3 semi-supervised)" in card and "Fuzzy Positive Learning" in card


def test_a_burn_in_that_covers_the_whole_run_is_refused_before_the_first_step(tmp_path):
    flags = folder_flags(
        tmp_path, "--framework", "cps", "--num_labeled", "2", "--max_steps", "2", "--burn_in_steps", "50"
    )
    with pytest.raises(ValueError, match=r"`burn_in_steps` \(50\) covers all 2 steps"):
        run_fpl.main(*run_fpl.parse_arguments(flags))
    assert not list((tmp_path / "run").glob("*"))  # nothing written


def test_a_burn_in_one_step_short_of_the_run_is_accepted_and_one_equal_to_it_refused(tmp_path):
    flags = folder_flags(tmp_path, "--framework", "cps", "--num_labeled", "2", "--max_steps", "2")
    with pytest.raises(ValueError, match=r"`burn_in_steps` \(2\) covers all 2 steps"):
        run_fpl.parse_arguments([*flags, "--burn_in_steps", "2"])
    summary = run_fpl.main(*run_fpl.parse_arguments([*flags, "--burn_in_steps", "1"]))
    assert (summary["burn_in_steps"], summary["semi_supervised_steps"]) == (1, 1)
    # Without max_steps the trainer knows the length only at the start: the same boundary, before the first step.
    # An epoch is 2 steps: 4 unlabeled images, 2 a step.
    by_epochs = [*flags, "--max_steps", "-1", "--num_train_epochs", "1", "--burn_in_steps", "2"]
    with pytest.raises(ValueError, match=r"`burn_in_steps` \(2\) covers all 2 steps"):
        run_fpl.main(*run_fpl.parse_arguments(by_epochs))


def test_the_data_seed_draws_the_labeled_images_and_the_seed_does_not(tmp_path, monkeypatch):
    from datasets import Image as ImageFeature

    from fpl_hf.data import DataSource, load_training_data
    from fpl_hf.trainer import FPLTrainer

    class Drawn(Exception):
        pass

    def names(dataset):
        return sorted(
            Path(cell["path"]).name for cell in dataset.cast_column("image", ImageFeature(decode=False))["image"]
        )

    def trained_on(self, *args, **kwargs):  # what the trainer was given, read where training would start
        raise Drawn(names(self.train_dataset.labeled))

    monkeypatch.setattr(FPLTrainer, "train", trained_on)
    flags = folder_flags(tmp_path, "--framework", "supervised", "--num_labeled", "2", "--seed", "1")
    source = DataSource(
        dataset="folders",
        images_dir=str(tmp_path / "labeled" / "images"),
        masks_dir=str(tmp_path / "labeled" / "masks"),
        validation_images_dir=str(tmp_path / "validation" / "images"),
        validation_masks_dir=str(tmp_path / "validation" / "masks"),
        num_labeled=2,
        num_labels=8,
    )
    by_data_seed, by_seed = (names(load_training_data(source, seed=seed).labeled) for seed in (4, 1))
    assert by_data_seed != by_seed  # the two seeds draw different images: the test can tell them apart
    with pytest.raises(Drawn) as drawn:
        run_fpl.main(*run_fpl.parse_arguments([*flags, "--data_seed", "4"]))
    assert drawn.value.args[0] == by_data_seed
    with pytest.raises(Drawn) as drawn:  # without a data seed, the seed draws
        run_fpl.main(*run_fpl.parse_arguments(flags))
    assert drawn.value.args[0] == by_seed


def test_the_model_is_saved_before_the_final_evaluation_by_run_fpl_itself(tmp_path, monkeypatch):
    from fpl_hf.trainer import FPLTrainer

    def broken(self, *args, **kwargs):  # bypasses the trainer's own save-on-failure
        raise RuntimeError("injected evaluation failure")

    monkeypatch.setattr(FPLTrainer, "evaluate", broken)
    with pytest.raises(RuntimeError, match="injected"):
        run_fpl.main(*run_fpl.parse_arguments(folder_flags(tmp_path, "--framework", "supervised")))
    DeepLabV3PlusForSemanticSegmentation.from_pretrained(tmp_path / "run")


def test_the_last_save_holds_the_final_evaluation(tmp_path):
    summary = run_fpl.main(*run_fpl.parse_arguments(folder_flags(tmp_path, "--framework", "supervised")))
    card = (tmp_path / "run" / "README.md").read_text()
    assert f"value: {round(summary['final_mean_iou'], 4)}" in card
    # A folder run's card names the photographs' recipe it started from, and the sizes it trained at.
    assert "real_images.yaml`, flags over it |" in card and "longer side of 240, crop 32," in card
    assert (
        json.loads((tmp_path / "run" / "run_summary.json").read_text())["final_mean_iou"] == summary["final_mean_iou"]
    )


def test_masks_of_unlabeled_images_feed_the_statistics_and_leave_training_bitwise_alone(tmp_path):
    write_slices(tmp_path / "labeled", 4)
    write_slices(tmp_path / "unlabeled", 6, seed=1)
    (tmp_path / "unlabeled" / "masks" / "0.png").unlink()  # masks of some unlabeled images only
    write_slices(tmp_path / "validation", 3, seed=2)
    flags = TINY + [
        "--dataset",
        "folders",
        "--num_labels",
        "8",
        "--framework",
        "unimatch_v2",
        "--max_steps",
        "3",
        "--burn_in_steps",
        "1",
        "--logging_steps",
        "1",
        "--images_dir",
        str(tmp_path / "labeled" / "images"),
        "--masks_dir",
        str(tmp_path / "labeled" / "masks"),
        "--unlabeled_dir",
        str(tmp_path / "unlabeled" / "images"),
        "--validation_images_dir",
        str(tmp_path / "validation" / "images"),
        "--validation_masks_dir",
        str(tmp_path / "validation" / "masks"),
    ]
    plain = run_fpl.main(*run_fpl.parse_arguments(flags + ["--output_dir", str(tmp_path / "plain")]))
    diagnosed = run_fpl.main(
        *run_fpl.parse_arguments(
            flags
            + [
                "--unlabeled_masks_dir",
                str(tmp_path / "unlabeled" / "masks"),
                "--output_dir",
                str(tmp_path / "diagnosed"),
            ]
        )
    )
    assert (tmp_path / "plain" / "model.safetensors").read_bytes() == (
        tmp_path / "diagnosed" / "model.safetensors"
    ).read_bytes()
    logged = [entry for entry in diagnosed["log_history"] if "unsup" in entry]
    assert len(logged) == 2 and all(0 <= entry["pseudo_label_accuracy"] <= 1 for entry in logged)
    assert not any("pseudo_label_accuracy" in entry for entry in plain["log_history"])
    assert [entry["loss"] for entry in plain["log_history"] if "loss" in entry] == [
        entry["loss"] for entry in diagnosed["log_history"] if "loss" in entry
    ]


@pytest.mark.parametrize("launched", [True, False])
def test_a_process_accelerate_launched_on_one_cpu_thread_takes_every_core(monkeypatch, launched):
    import torch

    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    if launched:
        monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    else:
        monkeypatch.delenv("ACCELERATE_DYNAMO_BACKEND", raising=False)
    torch.set_num_threads(1)
    try:
        run_fpl.use_every_core()
        assert torch.get_num_threads() == (len(os.sched_getaffinity(0)) if launched else 1)
    finally:
        torch.set_num_threads(threads)
