from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from torchvision import tv_tensors

from fpl_hf.data import (
    DIAGNOSTIC_LABEL,
    EMBEDDED_CLASSES,
    DataCheckError,
    EvaluationDataset,
    SemiSupervisedDataset,
    check_run_data,
    cutmix_mask,
    load_cityscapes,
    load_folders,
    load_hub,
    load_voc,
    make_fashion_scenes,
    normalize_images,
    prepared_batch,
    read_split_list,
    semi_supervised_collate,
    split_from_lists,
    split_labeled_unlabeled,
    strong_augmentation,
    to_normal_form,
    weak_augmentation,
)
from fpl_hf.data.embedded import GARMENT_TYPE

SPLITS = Path(__file__).resolve().parents[1] / "splits"


def _save(path: Path, array: np.ndarray, mode=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(path)


def _fake_pair(seed: int, size=(20, 24), num_labels=4):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (*size, 3), dtype=np.uint8), rng.integers(0, num_labels, size, dtype=np.uint8)


def test_split_lists_have_the_published_counts():
    expected = {
        "pascal": {"92": 92, "183": 183, "366": 366, "732": 732, "1464": 1464, "1_16": 662, "1_8": 1323, "1_4": 2646},
        "cityscapes": {"1_16": 186, "1_8": 372, "1_4": 744, "1_2": 1488},
    }
    for dataset, counts in expected.items():
        for split, count in counts.items():
            labeled = read_split_list(SPLITS / dataset / split / "labeled.txt")
            unlabeled = read_split_list(SPLITS / dataset / split / "unlabeled.txt")
            assert len(labeled) == count, (dataset, split)
            assert all(label is not None for _, label in labeled)
            assert not {i for i, _ in labeled} & {i for i, _ in unlabeled}
    assert len(read_split_list(SPLITS / "pascal" / "1_16" / "unlabeled.txt")) == 10582 - 662
    assert len(read_split_list(SPLITS / "cityscapes" / "1_16" / "unlabeled.txt")) == 2975 - 186


def test_split_list_with_root_finds_files_and_names_missing_ones(tmp_path):
    image, label = _fake_pair(0)
    _save(tmp_path / "JPEGImages" / "a.jpg", image)
    _save(tmp_path / "SegmentationClass" / "a.png", label)
    (tmp_path / "labeled.txt").write_text("JPEGImages/a.jpg SegmentationClass/a.png")
    (tmp_path / "unlabeled.txt").write_text("JPEGImages/a.jpg SegmentationClass/a.png\n")
    labeled, unlabeled = split_from_lists(tmp_path, tmp_path / "labeled.txt", tmp_path / "unlabeled.txt")
    assert labeled.column_names == ["image", "label"] and DIAGNOSTIC_LABEL in unlabeled.column_names
    assert np.array_equal(np.asarray(labeled[0]["label"]), label)
    (tmp_path / "bad.txt").write_text("JPEGImages/b.jpg SegmentationClass/b.png\n")
    with pytest.raises(FileNotFoundError, match="b.jpg"):
        read_split_list(tmp_path / "bad.txt", tmp_path)


@pytest.mark.parametrize("kwargs", [dict(num_labeled=7), dict(fraction=1 / 8), dict(fraction="1/8")])
def test_split_by_count_and_fraction_is_reproducible_disjoint_and_complete(kwargs):
    dataset = Dataset.from_dict({"image": list(range(56)), "label": list(range(56))})
    labeled, unlabeled = split_labeled_unlabeled(dataset, seed=3, **kwargs)
    again, _ = split_labeled_unlabeled(dataset, seed=3, **kwargs)
    other, _ = split_labeled_unlabeled(dataset, seed=4, **kwargs)
    assert len(labeled) == 7
    assert list(labeled["label"]) == list(again["label"]) and list(labeled["label"]) != list(other["label"])
    assert sorted(list(labeled["label"]) + list(unlabeled[DIAGNOSTIC_LABEL])) == list(range(56))
    assert "label" not in unlabeled.column_names


def test_split_rejects_impossible_requests():
    dataset = Dataset.from_dict({"image": list(range(10)), "label": list(range(10))})
    with pytest.raises(ValueError, match="num_labeled"):
        split_labeled_unlabeled(dataset, num_labeled=10)
    with pytest.raises(ValueError, match="num_labeled"):
        split_labeled_unlabeled(dataset, num_labeled=50)
    with pytest.raises(ValueError, match="exactly one"):
        split_labeled_unlabeled(dataset)


def test_normal_form_maps_hub_column_names():
    dataset = Dataset.from_dict(
        {"pixel_values": [Image.new("RGB", (4, 4))], "annotation": [Image.new("L", (4, 4))], "id": [1]}
    )
    normal = to_normal_form(dataset)
    assert normal.column_names == ["image", "label"]
    with pytest.raises(ValueError, match="label_column"):
        to_normal_form(Dataset.from_dict({"pixel_values": [Image.new("RGB", (4, 4))]}))


def test_fake_voc_tree_loads(tmp_path):
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for name in ("2007_000032", "2007_000039"):
        image, label = _fake_pair(len(name))
        label[0, 0] = 255
        _save(root / "JPEGImages" / f"{name}.jpg", image)
        palette_mask = Image.fromarray(label, "P")
        palette_mask.putpalette([0, 0, 0, 128, 0, 0] * 128)
        (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
        palette_mask.save(root / "SegmentationClass" / f"{name}.png")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n2007_000039\n")
    dataset = load_voc(tmp_path)
    assert len(dataset) == 2
    assert np.asarray(dataset[0]["label"])[0, 0] == 255
    with pytest.raises(FileNotFoundError, match="SegmentationClassAug"):
        load_voc(tmp_path, aug=True) if (root / "ImageSets/Segmentation/train_aug.txt").write_text(
            "2007_000032"
        ) else None


def test_fake_cityscapes_tree_maps_label_ids_to_train_ids(tmp_path):
    image, _ = _fake_pair(0)
    label_ids = np.full((20, 24), 7, dtype=np.uint8)  # road -> 0
    label_ids[:5] = 26  # car -> 13
    label_ids[5:8] = 3  # out of roi -> ignore
    _save(tmp_path / "leftImg8bit/train/aachen/aachen_000000_000019_leftImg8bit.png", image)
    _save(tmp_path / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds.png", label_ids)
    label = np.asarray(load_cityscapes(tmp_path)[0]["label"])
    assert (label[:5] == 13).all() and (label[5:8] == 255).all() and (label[8:] == 0).all()


def test_custom_folders_with_an_unlabeled_folder_without_masks(tmp_path):
    for index in range(3):
        image, label = _fake_pair(index)
        _save(tmp_path / "images" / f"{index}.jpg", image)
        _save(tmp_path / "masks" / f"{index}.png", label)
        _save(tmp_path / "unlabeled" / f"u{index}.jpg", image)
    labeled, unlabeled = load_folders(tmp_path / "images", tmp_path / "masks", tmp_path / "unlabeled")
    assert len(labeled) == 3 and len(unlabeled) == 3 and unlabeled.column_names == ["image"]
    pairs = SemiSupervisedDataset(
        labeled, unlabeled, num_labels=4, crop_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    item = pairs[0]
    assert (item["unlabeled_diagnostic_labels"] == 255).all()
    (tmp_path / "masks" / "2.png").unlink()
    with pytest.raises(FileNotFoundError, match="2.jpg"):
        load_folders(tmp_path / "images", tmp_path / "masks")


def _one_pair_dataset(tmp_path, image, label, mode=None):
    _save(tmp_path / "i.png", image)
    _save(tmp_path / "m.png", label, mode)
    return to_normal_form(Dataset.from_dict({"image": [str(tmp_path / "i.png")], "label": [str(tmp_path / "m.png")]}))


@pytest.mark.parametrize(
    "label, message",
    [
        (np.zeros((10, 12), dtype=np.uint8), "same size"),
        (np.full((20, 24), 9, dtype=np.uint8), r"class ids \[9\]"),
        (np.zeros((20, 24, 3), dtype=np.uint8), "color image"),
    ],
)
def test_bad_masks_raise_errors_that_name_the_sample(tmp_path, label, message):
    image, _ = _fake_pair(0)
    dataset = _one_pair_dataset(tmp_path, image, label)
    evaluation = EvaluationDataset(dataset, num_labels=4, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    with pytest.raises(ValueError, match=message) as error:
        evaluation[0]
    assert "m.png" in str(error.value) or "i.png" in str(error.value)


def test_color_mask_with_palette_is_mapped(tmp_path):
    image, _ = _fake_pair(0)
    rgb = np.zeros((20, 24, 3), dtype=np.uint8)
    rgb[:10] = (128, 0, 0)
    dataset = _one_pair_dataset(tmp_path, image, rgb)
    evaluation = EvaluationDataset(
        dataset, num_labels=4, image_mean=[0.5] * 3, image_std=[0.5] * 3, palette={(0, 0, 0): 0, (128, 0, 0): 1}
    )
    labels = evaluation[0]["labels"]
    assert (labels[:10] == 1).all() and (labels[10:] == 0).all()


def test_corrupt_image_names_the_sample(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    _save(tmp_path / "m.png", np.zeros((4, 4), dtype=np.uint8))
    dataset = to_normal_form(
        Dataset.from_dict({"image": [str(tmp_path / "broken.jpg")], "label": [str(tmp_path / "m.png")]})
    )
    with pytest.raises(ValueError, match="broken.jpg"):
        EvaluationDataset(dataset, num_labels=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)[0]


def test_empty_parts_are_rejected():
    data = Dataset.from_dict({"image": [Image.new("RGB", (4, 4))], "label": [Image.new("L", (4, 4))]})
    with pytest.raises(ValueError, match="unlabeled part is empty"):
        SemiSupervisedDataset(data, data.select([]), num_labels=2, crop_size=4, image_mean=[0] * 3, image_std=[1] * 3)


def test_embedded_scenes_are_deterministic_and_realistic():
    first = make_fashion_scenes(20, size=64, seed=1)
    second = make_fashion_scenes(20, size=64, seed=1)
    other = make_fashion_scenes(20, size=64, seed=2)
    validation = make_fashion_scenes(20, size=64, seed=1, split="validation")
    arrays = lambda d, c: np.stack([np.asarray(x) for x in d[c]])  # noqa: E731
    assert np.array_equal(arrays(first, "image"), arrays(second, "image"))
    assert np.array_equal(arrays(first, "label"), arrays(second, "label"))
    assert not np.array_equal(arrays(first, "image"), arrays(other, "image"))
    assert not np.array_equal(arrays(first, "image"), arrays(validation, "image"))
    labels = arrays(first, "label")
    assert set(np.unique(labels)) == set(range(len(EMBEDDED_CLASSES)))
    assert 0.2 < (labels > 0).mean() < 0.8
    images = arrays(first, "image").astype(float)
    # the background varies, not a constant that a threshold would separate
    assert images[labels == 0].std() > 20
    # Fashion-MNIST labels become garment types, each type equally likely to be drawn
    assert [EMBEDDED_CLASSES[t] for t in GARMENT_TYPE[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]] == [
        "top",
        "trouser",
        "top",
        "dress",
        "top",
        "footwear",
        "top",
        "footwear",
        "bag",
        "footwear",
    ]
    many = arrays(make_fashion_scenes(200, size=32, seed=3), "label")
    shares = np.bincount(many[many > 0], minlength=6)[1:] / (many > 0).sum()
    assert shares.min() > 0.12 and shares.max() < 0.3, shares


def test_augmentations_keep_image_and_mask_aligned():
    torch.manual_seed(0)
    size = 40
    image = torch.zeros(3, size, size, dtype=torch.uint8)
    image[:, 8:30, 5:22] = 200
    mask = (image[0] > 100).long()  # the mask is derived from the image content
    weak, strong = weak_augmentation(32), strong_augmentation()
    for _ in range(20):
        out_image, out_mask = weak(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert out_image.shape[-2:] == out_mask.shape == (32, 32)
        bright, inside = out_image[0] > 100, out_mask == 1
        assert bright.any() == inside.any()
        if inside.sum() > 20:
            # resampling blurs the edge symmetrically; any shift between image and mask moves the centroids apart
            rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
            for grid in (rows, cols):
                assert abs(grid[bright].mean() - grid[inside].mean()) <= 0.5  # one pixel off would be >= 1
        strong_image, strong_mask = strong(out_image, out_mask)
        assert torch.equal(strong_mask, out_mask)


def test_unlabeled_padding_is_marked_invalid():
    data = Dataset.from_dict({"image": [Image.new("RGB", (8, 8), "white")], "label": [Image.new("L", (8, 8))]})
    pairs = SemiSupervisedDataset(
        data,
        data.rename_column("label", DIAGNOSTIC_LABEL),
        num_labels=2,
        crop_size=24,
        image_mean=[0] * 3,
        image_std=[1] * 3,
        scale_range=(1.0, 1.0),
    )
    item = pairs[0]
    valid = item["unlabeled_valid"][0, 0]
    assert valid.sum() == 64
    assert (item["unlabeled_pixel_values"][0, 0][:, ~valid] == 0).all()
    assert (item["labels"] == 255).sum() == 24 * 24 - 64


@pytest.mark.parametrize("num_boxes, area_range", [(1, (0.02, 0.4)), (3, (0.25, 0.5))])
def test_cutmix_areas_fall_in_range(num_boxes, area_range):
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        mask = cutmix_mask(64, 64, num_boxes=num_boxes, area_range=area_range, generator=generator)
        share = mask.mean().item()
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        assert share <= area_range[1] * 1.1
        if num_boxes == 1:
            assert share >= area_range[0] * 0.8
        else:
            assert share >= area_range[0] / num_boxes * 0.8
    assert cutmix_mask(8, 8, probability=0.0).sum() == 0


def test_hub_loader_reads_a_local_copy_offline(tmp_path):
    data = Dataset.from_dict(
        {"pixel_values": [Image.new("RGB", (4, 4))] * 3, "segmentation": [Image.new("L", (4, 4))] * 3}
    )
    data.to_parquet(str(tmp_path / "train.parquet"))
    dataset = load_hub("parquet", data_files={"train": str(tmp_path / "train.parquet")})
    assert dataset.column_names == ["image", "label"] and len(dataset) == 3


def test_a_scene_parse_150_style_copy_loads_with_reduced_labels(tmp_path):
    from fpl_hf.data import DataSource, load_training_data

    masks = [Image.fromarray(np.array([[0, 1], [2, 3]], dtype=np.uint8).repeat(4, 0).repeat(4, 1))] * 4
    for split in ("train", "validation"):
        (tmp_path / "ade" / "data").mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(
            {"image": [Image.new("RGB", (8, 8))] * 4, "annotation": masks, "scene_category": [0] * 4}
        ).to_parquet(str(tmp_path / "ade" / "data" / f"{split}-00000-of-00001.parquet"))
    source = DataSource(
        dataset=str(tmp_path / "ade"),
        image_column="image",
        label_column="annotation",
        reduce_labels=True,
        num_labels=3,
        num_labeled=2,
    )
    data = load_training_data(source)
    assert (len(data.labeled), len(data.unlabeled), len(data.validation)) == (2, 2, 4)
    assert np.asarray(data.validation[0]["label"])[::4, ::4].tolist() == [[255, 0], [1, 2]]
    assert data.class_names == ("class_0", "class_1", "class_2")


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    from fpl_hf.data import embedded

    monkeypatch.setattr(embedded, "FASHION_MNIST_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        embedded.load_fashion_mnist("train")


def test_paired_dataset_repeats_the_labeled_part_to_the_unlabeled_length():
    images = [Image.fromarray(np.full((8, 8, 3), 10 * i, dtype=np.uint8)) for i in range(7)]
    labels = [Image.fromarray(np.full((8, 8), i % 2, dtype=np.uint8)) for i in range(7)]
    data = Dataset.from_dict({"image": images, "label": labels})
    labeled, unlabeled = data.select(range(2)), data.select(range(2, 7)).rename_column("label", DIAGNOSTIC_LABEL)
    pairs = SemiSupervisedDataset(
        labeled,
        unlabeled,
        num_labels=2,
        crop_size=8,
        image_mean=[0] * 3,
        image_std=[1] * 3,
        scale_range=(1.0, 1.0),
        num_unlabeled=2,
        num_cutmix_masks=1,
    )
    assert len(pairs) == 5
    items = [pairs[i] for i in range(5)]
    # labeled index wraps around (0, 1, 0, 1, 0); the first unlabeled image follows the item index
    assert [int(item["labels"].max()) for item in items] == [0, 1, 0, 1, 0]
    assert [int(item["unlabeled_pixel_values"][0, 0].max()) for item in items] == [20, 30, 40, 50, 60]
    assert items[0]["unlabeled_pixel_values"].shape == (1, 2, 3, 8, 8) and items[0]["cutmix_masks"].shape == (
        1,
        1,
        8,
        8,
    )


def test_items_are_reproducible_per_epoch_and_leave_the_global_rng_alone():
    data = make_fashion_scenes(6, size=32, seed=0)
    labeled, unlabeled = split_labeled_unlabeled(data, num_labeled=2, seed=0)
    pairs = SemiSupervisedDataset(
        labeled,
        unlabeled,
        num_labels=11,
        crop_size=24,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        num_unlabeled=2,
        num_cutmix_masks=1,
    )
    state = torch.random.get_rng_state()
    first = pairs[1]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(first[key], pairs[1][key]) for key in first)
    pairs.set_epoch(1)
    assert not torch.equal(first["pixel_values"], pairs[1]["pixel_values"])


def _evaluation_item(tmp_path, image_path, label_path, num_labels=4):
    dataset = to_normal_form(Dataset.from_dict({"image": [str(image_path)], "label": [str(label_path)]}))
    return EvaluationDataset(dataset, num_labels=num_labels, image_mean=[0.5] * 3, image_std=[0.5] * 3)[0]


def test_sixteen_bit_and_palette_masks_load_their_class_ids(tmp_path):
    image, label = _fake_pair(0)
    _save(tmp_path / "i.png", image)
    Image.fromarray(label.astype(np.uint16)).save(tmp_path / "m16.png")
    palette_mask = Image.fromarray(label, "P")
    palette_mask.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0] + [0] * 756)
    palette_mask.save(tmp_path / "mp.png")
    for mask in ("m16.png", "mp.png"):
        assert np.array_equal(_evaluation_item(tmp_path, tmp_path / "i.png", tmp_path / mask)["labels"].numpy(), label)
    Image.fromarray(np.full((20, 24), 300, dtype=np.uint16)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match=r"big.png|i.png") as error:
        _evaluation_item(tmp_path, tmp_path / "i.png", tmp_path / "big.png")
    assert "300" in str(error.value) and "num_labels" in str(error.value)


def test_exif_rotated_jpegs_are_turned_upright_and_a_mismatch_says_why(tmp_path):
    image = np.zeros((20, 24, 3), dtype=np.uint8)
    image[:5] = 255  # a white band at the top of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 3  # orientation: rotated 180 degrees
    Image.fromarray(image).save(tmp_path / "r.jpg", exif=exif, quality=95)
    _save(tmp_path / "m.png", np.zeros((20, 24), dtype=np.uint8))
    pixels = _evaluation_item(tmp_path, tmp_path / "r.jpg", tmp_path / "m.png")["pixel_values"]
    assert pixels[:, -5:].mean() > pixels[:, :5].mean()  # the band is at the bottom once upright
    exif[0x0112] = 6  # rotated 90 degrees: upright it is 20 wide and 24 high
    Image.fromarray(image).save(tmp_path / "q.jpg", exif=exif)
    with pytest.raises(ValueError, match="EXIF orientation"):
        _evaluation_item(tmp_path, tmp_path / "q.jpg", tmp_path / "m.png")


@pytest.mark.parametrize("mode", ["RGBA", "CMYK", "L", "I;16"])
def test_image_modes_convert_where_nothing_is_lost_and_name_the_problem_otherwise(tmp_path, mode):
    image, label = _fake_pair(0)
    _save(tmp_path / "m.png", label)
    converted = Image.fromarray(image).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        converted = Image.fromarray(np.full((20, 24), 4000, dtype=np.uint16))
    suffix = ".jpg" if mode == "CMYK" else ".png"
    converted.save(tmp_path / f"i{suffix}")
    if mode == "I;16":
        with pytest.raises(ValueError, match="8-bit"):
            _evaluation_item(tmp_path, tmp_path / f"i{suffix}", tmp_path / "m.png")
        return
    assert _evaluation_item(tmp_path, tmp_path / f"i{suffix}", tmp_path / "m.png")["pixel_values"].shape == (3, 20, 24)
    if mode == "RGBA":
        rgba = np.dstack([image, np.full((20, 24), 255, dtype=np.uint8)])
        rgba[0, 0, 3] = 0
        Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
        with pytest.raises(ValueError, match="transparent"):
            _evaluation_item(tmp_path, tmp_path / "t.png", tmp_path / "m.png")


def test_folders_with_other_files_or_unmatched_masks_say_which(tmp_path):
    for index in range(2):
        image, label = _fake_pair(index)
        _save(tmp_path / "images" / f"{index}.png", image)
        _save(tmp_path / "masks" / f"{index}.png", label)
    (tmp_path / "images" / ".DS_Store").write_text("hidden files are ignored")
    assert len(load_folders(tmp_path / "images", tmp_path / "masks")[0]) == 2
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="notes.txt"):
        load_folders(tmp_path / "images", tmp_path / "masks")
    (tmp_path / "images" / "notes.txt").unlink()
    _save(tmp_path / "masks" / "extra.png", np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(FileNotFoundError, match="extra.png"):
        load_folders(tmp_path / "images", tmp_path / "masks")


def test_corrupt_mask_and_empty_split_list_name_the_file(tmp_path):
    image, _ = _fake_pair(0)
    _save(tmp_path / "i.png", image)
    (tmp_path / "m.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match="m.png"):
        _evaluation_item(tmp_path, tmp_path / "i.png", tmp_path / "m.png")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ValueError, match="empty.txt.* is empty"):
        read_split_list(tmp_path / "empty.txt")


def test_cityscapes_label_train_ids_are_used_as_they_are(tmp_path):
    image, _ = _fake_pair(0)
    train_ids = np.full((20, 24), 13, dtype=np.uint8)  # car, already a trainId
    train_ids[:4] = 255
    _save(tmp_path / "leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png", image)
    _save(tmp_path / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelTrainIds.png", train_ids)
    _save(tmp_path / "gtFine/val/lindau/lindau_000000_000019_gtFine_labelIds.png", np.full((20, 24), 26, np.uint8))
    label = np.asarray(load_cityscapes(tmp_path, "val")[0]["label"])
    assert np.array_equal(label, train_ids)


def test_items_travel_as_bytes_and_the_step_sees_what_per_item_normalisation_gives():
    data = make_fashion_scenes(8, size=32, seed=0)
    labeled, unlabeled = split_labeled_unlabeled(data, num_labeled=3, seed=0)
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.3, 0.25]
    items = SemiSupervisedDataset(
        labeled,
        unlabeled,
        num_labels=6,
        crop_size=24,
        image_mean=mean,
        image_std=std,
        num_unlabeled=2,
        num_strong_views=2,
        num_cutmix_masks=2,
    )
    features = [items[index] for index in range(4)]
    assert {name: value.dtype for name, value in features[0].items()} == {
        "pixel_values": torch.uint8,
        "labels": torch.uint8,
        "unlabeled_pixel_values": torch.uint8,
        "unlabeled_strong_pixel_values": torch.uint8,
        "unlabeled_valid": torch.bool,
        "unlabeled_diagnostic_labels": torch.uint8,
        "cutmix_masks": torch.bool,
    }
    batch = prepared_batch(semi_supervised_collate(features), mean, std)
    for name in ("pixel_values", "unlabeled_pixel_values", "unlabeled_strong_pixel_values"):
        one_by_one = torch.stack([normalize_images(feature[name], mean, std) for feature in features])
        assert batch[name].dtype == torch.float32 and torch.equal(
            batch[name], one_by_one.flatten(0, 1) if name != "pixel_values" else one_by_one
        )
    assert batch["labels"].dtype == torch.int64 and torch.equal(
        batch["labels"], torch.stack([feature["labels"].long() for feature in features])
    )
    # A float32 image, int64 masks and a float mask per item, as before, were this many times larger:
    as_floats = sum(
        value.numel()
        * (
            1
            if value.dtype == torch.bool
            else 4
            if value.is_floating_point() or value.dtype == torch.uint8 and "label" not in name
            else 8
        )
        for name, value in features[0].items()
    )
    as_bytes = sum(value.numel() * value.element_size() for value in features[0].values())
    assert as_floats / as_bytes >= 3.5


def _write_folder_data_set(root, bad):
    """Labeled and validation folders of 8-class grey slices; `bad` names the broken files to write."""
    rng = np.random.default_rng(0)
    for part, count in (("train", 6), ("validation", 3)):
        (root / part / "images").mkdir(parents=True)
        (root / part / "masks").mkdir()
        for index in range(count):
            _save(root / part / "images" / f"{index}.png", rng.integers(0, 255, (20, 24), dtype=np.uint8))
            _save(root / part / "masks" / f"{index}.png", rng.integers(0, 8, (20, 24), dtype=np.uint8))
    if "id" in bad:
        _save(root / "train" / "masks" / "0.png", np.full((20, 24), 200, dtype=np.uint8))
    if "truncated" in bad:
        data = (root / "train" / "images" / "1.png").read_bytes()
        (root / "train" / "images" / "1.png").write_bytes(data[: len(data) // 2])
    if "text" in bad:
        (root / "train" / "images" / "2.png").write_text("not an image")
    if "size" in bad:
        _save(root / "train" / "masks" / "3.png", np.zeros((24, 20), dtype=np.uint8))
    if "validation" in bad:
        _save(root / "validation" / "masks" / "1.png", np.full((20, 24), 99, dtype=np.uint8))


def test_bad_samples_are_all_reported_before_training_and_the_output_folder_is_left_alone(tmp_path):
    import run_fpl

    _write_folder_data_set(tmp_path, {"id", "truncated", "text", "size", "validation"})
    output = tmp_path / "run"
    flags = [
        "--dataset",
        "folders",
        "--num_labels",
        "8",
        "--images_dir",
        str(tmp_path / "train" / "images"),
        "--masks_dir",
        str(tmp_path / "train" / "masks"),
        "--num_labeled",
        "3",
        "--validation_images_dir",
        str(tmp_path / "validation" / "images"),
        "--validation_masks_dir",
        str(tmp_path / "validation" / "masks"),
        "--backbone",
        "test_resnet",
        "--backbone_weights",
        "none",
        "--crop_size",
        "16",
        "--max_steps",
        "2",
        "--burn_in_steps",
        "0",
        "--per_device_train_batch_size",
        "2",
        "--report_to",
        "none",
        "--output_dir",
        str(output),
    ]
    with pytest.raises(DataCheckError) as error:
        run_fpl.main(*run_fpl.parse_arguments(flags))
    report = str(error.value)
    assert report.startswith("5 of the 9 samples checked")
    for name, problem in [
        ("0.png", "class ids [200]"),
        ("1.png", "could not read the image"),
        ("2.png", "could not read the image"),
        ("3.png", "but its mask is 20x24"),
        ("validation/masks/1.png", "class ids [99]"),
    ]:
        assert any(name in line and problem in line for line in report.splitlines()), (name, problem)
    assert "--skip_data_check" in report
    assert not output.exists()
    # Told to skip the check, the run meets the first bad sample it reads, and stops there.
    with pytest.raises(ValueError, match="could not read|class ids|its mask is") as error:
        run_fpl.main(*run_fpl.parse_arguments(flags + ["--skip_data_check", "true"]))
    assert not isinstance(error.value, DataCheckError)


def test_the_check_passes_good_samples_and_names_each_bad_one(tmp_path):
    _write_folder_data_set(tmp_path, {"id"})
    labeled, _ = load_folders(tmp_path / "train" / "images", tmp_path / "train" / "masks")
    check_run_data(labeled.select([1, 2, 3]), None, None, num_labels=8)
    with pytest.raises(
        DataCheckError, match=r"1 of the 6 samples.*\n.*labeled sample 0 \(.*0.png\): mask holds class ids"
    ):
        check_run_data(labeled, None, None, num_labels=8)


def test_spread_indices_cover_the_data_set_evenly_and_never_repeat():
    from fpl_hf.data.samples import spread_indices

    assert spread_indices(10, 4) == [0, 3, 6, 9]
    assert spread_indices(3, 1000) == [0, 1, 2]
    assert spread_indices(0, 5) == []


def test_decoded_samples_are_read_once_and_items_are_the_same_as_without(tmp_path, monkeypatch):
    from fpl_hf.data import training_items

    rng = np.random.default_rng(0)
    for index in range(6):
        _save(tmp_path / "images" / f"{index}.png", rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
        _save(tmp_path / "masks" / f"{index}.png", rng.integers(0, 3, (30, 40), dtype=np.uint8))
    folders = load_folders(tmp_path / "images", tmp_path / "masks")[0]
    labeled, unlabeled = split_labeled_unlabeled(folders, num_labeled=2, seed=0)
    loads = []
    counted = training_items.load_sample

    def counting(dataset, index, *rest):
        loads.append(index)
        return counted(dataset, index, *rest)

    monkeypatch.setattr(training_items, "load_sample", counting)

    def items(cache_bytes: int) -> list[dict]:
        data = SemiSupervisedDataset(
            labeled, unlabeled, num_labels=3, crop_size=16, image_mean=[0.5] * 3, image_std=[0.5] * 3,
            num_unlabeled=2, num_strong_views=2, num_cutmix_masks=2, image_size=20, scale_range=(1.0, 1.0),
            decoded_cache_bytes=cache_bytes,
        )  # fmt: skip
        made = []
        for epoch in range(3):
            data.set_epoch(epoch)
            made += [data[index] for index in range(len(data))]
        return made

    uncached = items(0)
    uncached_loads, loads[:] = len(loads), []
    cached = items(2**20)
    assert len(loads) <= len(labeled) + len(unlabeled) < uncached_loads  # each file decoded once, not at every use
    for plain, kept in zip(uncached, cached, strict=True):  # the same items, epoch after epoch: no view written to
        assert plain.keys() == kept.keys() and all(torch.equal(plain[key], kept[key]) for key in plain)
    loads[:] = []
    items(1)  # a budget too small for one sample: decoded at every use, as without
    assert len(loads) == uncached_loads
