"""The INIA19 development set, grey one-channel input, and the medical preset's options."""

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from conftest import run_fpl, tiny_config
from PIL import Image
from torchvision import tv_tensors
from transformers import pipeline

from fpl_hf.data import (
    DIAGNOSTIC_LABEL,
    INIA19_NUM_CLASSES,
    DataSource,
    inia19_slices,
    load_training_data,
    normalize_images,
    region_groups,
    slice_plan,
    strong_augmentation,
    weak_augmentation,
)
from fpl_hf.data.inia19 import DEFAULT_INIA19_DIR, INIA19_FILES
from fpl_hf.evaluation import EvaluationProtocol
from fpl_hf.trainer.argument_parser import load_preset

nibabel = pytest.importorskip("nibabel")


def write_volume(folder: Path, shape=(24, 28, 20)) -> tuple[np.ndarray, np.ndarray]:
    """A small T1-like volume and an atlas of 20 regions, left ids n and right ids 1000 + n, as NIfTI files."""
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    centre = np.array(shape) / 2
    brain = ((x - centre[0]) / 9) ** 2 + ((y - centre[1]) / 11) ** 2 + ((z - centre[2]) / 8) ** 2 < 1
    t1 = np.where(brain, 100 + 50 * rng.random(shape), 0).astype(np.float32)
    region = 1 + (y // 3) * 2 + (z > centre[2])  # bands along y, split top and bottom
    atlas = np.where(brain, np.where(x >= centre[0], region + 1000, region), 0).astype(np.int16)
    for name, volume in zip(INIA19_FILES, (t1, atlas)):
        nibabel.save(nibabel.Nifti1Image(volume, np.diag([0.5, 0.5, 0.5, 1])), folder / name)
    return t1, atlas.astype(np.int64)


def test_region_groups_are_deterministic_bilateral_and_spatially_ordered(tmp_path):
    _, atlas = write_volume(tmp_path)
    table = region_groups(atlas, num_groups=4)
    assert np.array_equal(table, region_groups(atlas, num_groups=4))
    regions = np.unique(atlas[(atlas > 0) & (atlas < 1000)])
    assert (table[regions] == table[regions + 1000]).all()  # a region's left and right halves share a class
    assert table[0] == 0 and set(table[regions]) == {1, 2, 3, 4}
    classes = table[atlas]
    # Classes are numbered from back to front: their mean position along axis 1 rises with the class.
    means = [np.nonzero(classes == c)[1].mean() for c in range(1, 5)]
    assert means == sorted(means)


def test_regions_that_differ_only_in_distance_from_the_midline_fall_in_different_groups():
    # Region 1 hugs the midline, region 2 lies far out, in both hemispheres (right ids + 1000), at the same height
    # and depth: mirrored into one hemisphere their centroids differ; unmirrored both sit on the midline.
    x = np.arange(40)[:, None, None] + np.zeros((1, 10, 10), dtype=int)
    distance = np.abs(x - 19.5)
    region = np.where(distance < 5, 1, np.where(distance > 14, 2, 0))
    atlas = np.where((x >= 20) & (region > 0), region + 1000, region)
    table = region_groups(atlas, num_groups=2)
    assert table[1] == table[1001] and table[2] == table[1002] and table[1] != table[2]


def test_slice_plan_keeps_validation_slabs_apart_from_training_slices():
    brain = np.zeros((40, 50, 30), dtype=bool)
    brain[5:35, 5:45, 3:27] = True
    plan = slice_plan(brain, slice_step=1, num_slabs=10, validation_slabs=(2, 6), gap=2)
    for axis in range(3):
        train = {index for part, a, index in plan if a == axis and part == "train"}
        held = {index for part, a, index in plan if a == axis and part == "validation"}
        assert train and held and not train & held
        # No training slice within 2 voxels of a validation slice.
        assert min(abs(t - v) for t in train for v in held) > 2
    assert len({(a, i) for _, a, i in plan}) == len(plan)


def test_the_validation_slices_are_those_of_the_named_slabs():
    brain = np.zeros((40, 8, 8), dtype=bool)
    brain[5:35] = True  # 30 slices along axis 0: ten slabs of 3
    plan = slice_plan(brain, slice_step=1, num_slabs=10, validation_slabs=(2, 6), gap=0)
    assert sorted(index for part, axis, index in plan if axis == 0 and part == "validation") == [11, 12, 13, 23, 24, 25]


def test_slices_show_the_top_of_the_head_at_the_top():
    from fpl_hf.data.inia19 import _slice

    # Grey level = height (axis 2, superior upwards) or, for axial slices, the forward axis 1 (anterior).
    height = np.broadcast_to(np.arange(6)[None, None, :], (4, 5, 6))
    forward = np.broadcast_to(np.arange(5)[None, :, None], (4, 5, 6))
    for axis in (0, 1):
        image = _slice(height, axis, 2)
        assert (image[0] == 5).all() and (image[-1] == 0).all()
    image = _slice(forward, 2, 3)
    assert image.shape == (5, 4) and (image[0] == 4).all() and (image[-1] == 0).all()


def test_slices_are_grey_pairs_of_the_atlas_classes(tmp_path):
    t1, atlas = write_volume(tmp_path)
    train, validation = inia19_slices(folder=tmp_path, gap_mm=0.5)
    assert len(train) > len(validation) > 0
    sizes = set()
    for row in train:
        image, label = row["image"], row["label"]
        assert image.mode == "L" and image.size == label.size
        sizes.add(image.size)
        ids = np.asarray(label)
        assert ids.max() < INIA19_NUM_CLASSES
        assert ((np.asarray(image) > 0) | (ids == 0)).all()  # a region's pixels are brain
    assert sizes == {(28, 20), (24, 20), (24, 28)}  # one size per axis
    # Grey levels span 0-255: the brain's brightest voxels (its 99.5th percentile and above) are white.
    assert max(np.asarray(row["image"]).max() for row in train) == 255


def test_missing_inia19_files_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("FPL_INIA19_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="apt-get install mricron-data"):
        inia19_slices()


@pytest.mark.skipif(
    not all((Path(DEFAULT_INIA19_DIR) / name).is_file() for name in INIA19_FILES), reason="mricron-data absent"
)
def test_the_inia19_development_set_from_debians_files(monkeypatch):
    monkeypatch.delenv("FPL_INIA19_DIR", raising=False)
    data = load_training_data(DataSource(dataset="inia19"), seed=10)
    assert len(data.labeled) == 16 and len(data.class_names) == INIA19_NUM_CLASSES
    assert len(data.unlabeled) > 200 and len(data.validation) > 60
    # The unlabeled part's masks are diagnostics only: no `label` column reaches training.
    assert "label" not in data.unlabeled.column_names and DIAGNOSTIC_LABEL in data.unlabeled.column_names
    sizes = {image.size for image in data.validation["image"]}
    assert sizes == {(206, 128), (168, 128), (168, 206)}
    labels = np.concatenate([np.asarray(m).ravel() for m in data.validation["label"]])
    assert set(np.unique(labels)) == set(range(INIA19_NUM_CLASSES))  # every class is scored
    other = load_training_data(DataSource(dataset="inia19"), seed=11)
    assert [np.asarray(i).tobytes() for i in data.labeled["image"]] != [
        np.asarray(i).tobytes() for i in other.labeled["image"]
    ]


def test_one_channel_normalisation_keeps_equal_channels_grey_and_weighs_colours():
    grey = torch.randint(0, 256, (2, 1, 6, 7), dtype=torch.uint8)
    three = grey.expand(2, 3, 6, 7)
    normalized = normalize_images(three, [0.5], [0.25])
    assert normalized.shape == (2, 1, 6, 7)
    torch.testing.assert_close(normalized, (grey.float() / 255 - 0.5) / 0.25)
    red = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    red[:, 0] = 255
    torch.testing.assert_close(normalize_images(red, [0.0], [1.0]), torch.full((1, 1, 2, 2), 0.299))
    assert normalize_images(three, [0.5] * 3, [0.25] * 3).shape == (2, 3, 6, 7)


def test_a_one_channel_model_takes_imagenet_weights_summed_over_colours(tmp_path):
    from fpl_hf import DeepLabV3PlusForSemanticSegmentation

    classifier = timm.create_model("test_resnet").state_dict()
    weights = {name: torch.randn_like(v) if v.is_floating_point() else v for name, v in classifier.items()}
    torch.save(weights, tmp_path / "w.pt")
    grey = DeepLabV3PlusForSemanticSegmentation(tiny_config(num_channels=1))
    grey.load_backbone_weights(tmp_path / "w.pt")
    stem = next(name for name, value in grey.backbone.state_dict().items() if value.dim() == 4)
    torch.testing.assert_close(grey.backbone.state_dict()[stem], weights[stem].sum(1, keepdim=True))
    assert grey.eval()(torch.randn(1, 1, 32, 32)).logits.shape == (1, 4, 32, 32)


def test_a_one_channel_encoder_takes_the_mean_of_the_colours_statistics():
    from fpl_hf import DeepLabV3PlusForSemanticSegmentation
    from fpl_hf.modeling.pretrained import encoder_statistics

    # An encoder trained on ImageNet (test_efficientnet_ln's config says so): three different means and stds.
    colour = DeepLabV3PlusForSemanticSegmentation(tiny_config(backbone="test_efficientnet_ln"))
    grey = DeepLabV3PlusForSemanticSegmentation(tiny_config(backbone="test_efficientnet_ln", num_channels=1))
    assert encoder_statistics(colour) == {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
    statistics = encoder_statistics(grey)
    assert statistics["image_mean"] == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    assert statistics["image_std"] == pytest.approx([(0.229 + 0.224 + 0.225) / 3])


def test_whole_resized_views_hold_the_whole_image_at_the_longer_side():
    image = torch.zeros(3, 60, 30, dtype=torch.uint8)
    image[:, 10:50, 5:25] = 200
    mask = (image[0] > 0).long()
    view = weak_augmentation(32, (1.0, 1.0), image_size=32, horizontal_flip=False)
    out_image, out_mask = view(tv_tensors.Image(image), tv_tensors.Mask(mask))
    assert out_image.shape[-2:] == (32, 32)
    # 60x30 becomes 32x16: the whole image inside the crop, padding (mask 255) on the rest.
    assert (out_mask != 255).sum() == 32 * 16
    assert (out_mask == 1).sum() == pytest.approx(40 * 20 * (32 / 60) ** 2, rel=0.15)


def test_rotation_turns_training_views_and_no_flip_never_mirrors():
    image = torch.zeros(3, 32, 32, dtype=torch.uint8)
    image[:, 4:10, 2:30] = 200  # a horizontal bar, off centre
    mask = (image[0] > 0).long()
    plain = weak_augmentation(32, (1.0, 1.0), horizontal_flip=False)
    turned = weak_augmentation(32, (1.0, 1.0), rotation_degrees=30, horizontal_flip=False)
    torch.manual_seed(0)
    for _ in range(10):
        out_image, out_mask = plain(tv_tensors.Image(image), tv_tensors.Mask(mask))
        assert torch.equal(out_mask, mask)  # no flip, no rotation: the view is the image
    changed = 0
    for _ in range(10):
        out_image, out_mask = turned(tv_tensors.Image(image), tv_tensors.Mask(mask))
        changed += not torch.equal(out_mask, mask)
        assert ((out_image[0] > 100) == (out_mask == 1)).float().mean() > 0.97  # image and mask turn together
    assert changed >= 8


def test_rotation_angles_spread_over_both_directions_up_to_the_limit():
    # A vertical line through the centre: the tilt of the turned line is the angle of the view.
    mask = torch.zeros(65, 65, dtype=torch.long)
    mask[8:57, 32] = 1
    turned = weak_augmentation(65, (1.0, 1.0), rotation_degrees=30, horizontal_flip=False)
    torch.manual_seed(0)
    angles = []
    for _ in range(40):
        _, out_mask = turned(tv_tensors.Image(torch.zeros(3, 65, 65, dtype=torch.uint8)), tv_tensors.Mask(mask))
        rows, columns = (out_mask == 1).nonzero(as_tuple=True)
        slope = np.polyfit(rows.numpy(), columns.numpy(), 1)[0]
        angles.append(np.degrees(np.arctan(slope)))
    assert max(abs(angle) for angle in angles) <= 31
    assert min(angles) < -15 and max(angles) > 15  # both ways, over most of the range


def test_intensity_gammas_spread_on_both_sides_of_one_within_the_range():
    from fpl_hf.data import RandomIntensity

    torch.manual_seed(0)
    gammas = [RandomIntensity((0.7, 1.5)).make_params([])["gamma"] for _ in range(200)]
    assert 0.7 <= min(gammas) < 0.8 and 1.4 < max(gammas) <= 1.5
    # Drawn on a log scale: as many darker as lighter views (gamma 1 is the middle of log 0.7 and log 1.5, nearly).
    assert 0.35 < np.mean(np.array(gammas) < 1) < 0.65


def test_intensity_strong_views_perturb_grey_levels_and_keep_grey_grey():
    torch.manual_seed(0)
    flat = tv_tensors.Image(torch.full((3, 24, 24), 120, dtype=torch.uint8))
    intensity, colour = strong_augmentation("intensity"), strong_augmentation("color")
    views = [intensity(flat) for _ in range(10)]
    assert all(torch.equal(view[0], view[1]) and torch.equal(view[0], view[2]) for view in views)
    # Noise makes a flat image uneven; every colour perturbation keeps it flat.
    assert sum(int(view.unique().numel() > 1) for view in views) >= 5
    assert all(colour(flat).unique().numel() == 1 for _ in range(10))
    with pytest.raises(ValueError, match="strong views must be one of"):
        strong_augmentation("hue")


def test_the_evaluation_resizes_to_the_longer_side_and_scores_at_the_mask_size():
    seen = []

    def model(pixels):
        seen.append(pixels.shape[-2:])
        return torch.stack([pixels[:, 0], -pixels[:, 0]], 1)

    pixels = torch.randn(1, 3, 40, 20)
    labels = torch.zeros(1, 40, 20, dtype=torch.long)
    logits, scored = EvaluationProtocol(image_size=16)(model, pixels, labels)
    assert seen[-1] == (16, 8) and logits.shape[-2:] == (40, 20) and torch.equal(scored, labels)
    small = torch.nn.functional.interpolate(pixels, size=(16, 8), mode="bilinear", antialias=True)
    reference = torch.nn.functional.interpolate(
        torch.stack([small[:, 0], -small[:, 0]], 1), size=(40, 20), mode="bilinear", align_corners=False
    )
    torch.testing.assert_close(logits, reference)
    assert "longer side 16" in EvaluationProtocol(image_size=16).description


def test_the_medical_preset_sets_its_keys_under_flags_and_under_the_file_that_names_it(tmp_path):
    preset = load_preset("medical")
    assert preset == {"num_channels": 1, "cutmix_probability": 0}

    def parsed(*flags):
        model_args, _, args, _ = run_fpl.parse_arguments([*flags, "--output_dir", str(tmp_path)])
        return model_args.num_channels, args.cutmix_probability

    channels, probability = parsed()
    assert channels == 3 and probability > 0  # the default framework's own CutMix
    assert parsed("--preset", "medical") == (1, 0)
    assert parsed("--preset", "medical", "--cutmix_probability", "0.5") == (1, 0.5)  # a flag over the preset
    config = tmp_path / "mine.yaml"
    config.write_text("base: " + str(run_fpl.DEFAULT_CONFIG) + "\npreset: medical\nnum_channels: 3\n")
    assert parsed("--config", str(config)) == (3, 0)  # the file's own key over its preset
    with pytest.raises(SystemExit):
        run_fpl.parse_arguments(["--preset", "radiology", "--output_dir", str(tmp_path)])


def test_a_grey_folder_trains_a_one_channel_model_resized_whole(tmp_path):
    rng = np.random.default_rng(0)
    for part, count in (("train", 6), ("val", 2)):
        for kind in ("images", "masks"):
            (tmp_path / part / kind).mkdir(parents=True)
        for index in range(count):
            mask = np.zeros((30, 40), dtype=np.uint8)
            mask[5:20, 8 + index : 30] = 1
            grey = (mask * 150 + rng.integers(0, 40, mask.shape)).astype(np.uint8)
            Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / part / "images" / f"{index}.png")
            Image.fromarray(mask).save(tmp_path / part / "masks" / f"{index}.png")
    flags = [
        *"--dataset folders --num_labels 2 --num_labeled 2 --framework unimatch_v2 --preset medical".split(),
        *"--backbone test_resnet --backbone_weights none --aspp_channels 16 --decoder_channels 16".split(),
        *"--image_size 32 --crop_size 32 --max_steps 2 --burn_in_steps 1 --eval_steps 2 --logging_steps 1".split(),
        *"--save_strategy no --per_device_train_batch_size 2 --per_device_eval_batch_size 2".split(),
        *("--images_dir", str(tmp_path / "train/images"), "--masks_dir", str(tmp_path / "train/masks")),
        *(
            "--validation_images_dir",
            str(tmp_path / "val/images"),
            "--validation_masks_dir",
            str(tmp_path / "val/masks"),
        ),
        *("--output_dir", str(tmp_path / "out")),
    ]
    summary = run_fpl.main(*run_fpl.parse_arguments(flags))
    assert 0 <= summary["final_mean_iou"] <= 1
    from fpl_hf import DeepLabV3PlusForSemanticSegmentation

    model = DeepLabV3PlusForSemanticSegmentation.from_pretrained(tmp_path / "out")
    assert model.config.num_channels == 1
    processor = json.loads((tmp_path / "out" / "preprocessor_config.json").read_text())
    colours = timm.create_model("test_resnet").pretrained_cfg  # what run_fpl.py gives the processor: the encoder's
    assert processor["image_mean"] == pytest.approx([sum(colours["mean"]) / 3])
    assert processor["do_resize"] and processor["size"]["max_height"] == 32
    # The saved model segments an RGB file of equal channels through `pipeline`, at the file's own size.
    segments = pipeline("image-segmentation", model=str(tmp_path / "out"))(str(tmp_path / "val/images/0.png"))
    assert segments and all(segment["mask"].size == (40, 30) for segment in segments)


def epoch_views(labeled, unlabeled, epochs, **options):
    """The first training item of a two-class set of `labeled` and `unlabeled` images at each of `epochs` epochs,
    with 32-pixel crops at scale 1 and `options` (FPLConfig fields)."""
    from fpl_hf.data import training_dataset
    from fpl_hf.trainer import FPLConfig

    args = FPLConfig(crop_size=32, scale_range=[1.0, 1.0], **options)
    dataset = training_dataset(
        labeled, unlabeled, num_labels=2, image_mean=[0.5], image_std=[0.5], **args.train_dataset_options()
    )
    views = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        views.append(dataset[0])
    return views


def test_the_configs_view_options_reach_the_training_items(tmp_path):
    from datasets import Dataset

    from fpl_hf.data import DIAGNOSTIC_LABEL
    from fpl_hf.trainer import FPLConfig

    image = np.zeros((60, 30), dtype=np.uint8)
    image[5:25, 3:12] = 200  # off centre, so that a flip or a turn shows
    labeled = Dataset.from_dict(
        {"image": [Image.fromarray(image)], "label": [Image.fromarray((image > 0).astype(np.uint8))]}
    )
    flat = Dataset.from_dict(
        {DIAGNOSTIC_LABEL: [Image.fromarray(np.zeros((32, 32), np.uint8))], "image": [Image.new("L", (32, 32), 120)]}
    )

    def items(**options):
        return epoch_views(labeled, flat, 8, output_dir=str(tmp_path), framework="unimatch_v2", **options)

    def content(view):  # the mask inside the crop's padding (the crop places the image anywhere in it)
        rows, columns = (view["labels"] != 255).nonzero(as_tuple=True)
        return view["labels"][rows.min() : rows.max() + 1, columns.min() : columns.max() + 1]

    assert FPLConfig(output_dir=str(tmp_path), image_size=40).evaluation_protocol.image_size == 40
    plain = items(image_size=32, horizontal_flip=False)
    assert all((view["labels"] != 255).sum() == 32 * 16 for view in plain)  # the whole image, longer side 32
    assert all(torch.equal(content(view), content(plain[0])) for view in plain)  # never flipped nor turned
    flipped = items(image_size=32)
    assert any(torch.equal(content(view), content(plain[0]).flip(-1)) for view in flipped)
    turned = items(image_size=32, horizontal_flip=False, rotation_degrees=30)
    assert any((view["labels"] != 255).sum() < 32 * 16 * 0.97 for view in turned)  # corners turned out of the image
    noisy = items(image_size=32, strong_view_kind="intensity")
    strong = [view["unlabeled_strong_pixel_values"] for view in noisy]
    assert any(
        view.unique().numel() > 1 for views in strong for view in views.flatten(0, -4)
    )  # a flat grey image (32x32, no padding) turned uneven
    coloured = [view["unlabeled_strong_pixel_values"] for view in items(image_size=32)]
    assert all(view.unique().numel() == 1 for views in coloured for view in views.flatten(0, -4))


@pytest.mark.parametrize("framework", ["supervised", "cps", "mean_teacher", "unimatch", "unimatch_v2"])
def test_the_medical_view_options_reach_the_items_of_every_framework(framework, tmp_path):
    from datasets import Dataset

    from fpl_hf.data import DIAGNOSTIC_LABEL
    from fpl_hf.trainer import FPLConfig

    labeled = Dataset.from_dict({"image": [Image.new("L", (30, 60), 90)], "label": [Image.new("L", (30, 60), 1)]})
    flat = Dataset.from_dict(
        {DIAGNOSTIC_LABEL: [Image.new("L", (32, 32), 0)], "image": [Image.new("L", (32, 32), 120)]}
    )
    options = dict(framework=framework, image_size=32, rotation_degrees=30, strong_view_kind="intensity")
    views = epoch_views(labeled, flat, 6, output_dir=str(tmp_path), **options)
    # The labeled 60x30 image resized whole to 32x16, and turned: some corners leave the image.
    assert all((view["labels"] != 255).sum() <= 32 * 16 for view in views)
    assert any((view["labels"] != 255).sum() < 32 * 16 * 0.97 for view in views)
    args = FPLConfig(output_dir=str(tmp_path), framework=framework)
    if args.framework_declaration.data_options(args.cutmix, args.framework_options).get("num_strong_views"):
        # The flat image's centre, inside the image whatever the turn: noise makes it uneven, colour jitter would not.
        strong = [view["unlabeled_strong_pixel_values"].flatten(0, -4)[..., 10:22, 10:22] for view in views]
        assert any(image.unique().numel() > 1 for images in strong for image in images)
    else:
        assert "unlabeled_strong_pixel_values" not in views[0]
