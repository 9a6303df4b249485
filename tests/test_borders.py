"""How plainly the images show their class borders, and the warning a semi-supervised run gets where they do not."""

import numpy as np
import pytest
from conftest import make_trainer
from datasets import Dataset, Features, Image

from fpl_hf.data import FAINT_CONTRAST, border_contrast, faint_border_note, split_labeled_unlabeled

SIZE = 24


def halves(drawn: bool, count: int = 6, seed: int = 0) -> Dataset:
    """Images whose left half is class 0 and right half class 1, with a column of ignored pixels; `drawn`: the
    halves differ in grey level (a border the image shows), else one noisy grey throughout (a border by position)."""
    generator = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(count):
        grey = generator.normal(128, 6, (SIZE, SIZE))
        if drawn:
            grey[:, SIZE // 2 :] += 60
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[:, SIZE // 2 :] = 1
        label[:, 3] = 255
        images.append(Image().encode_example(np.clip(grey, 0, 255).astype(np.uint8)))
        labels.append(Image().encode_example(label))
    features = Features({"image": Image(), "label": Image()})
    return Dataset.from_dict({"image": images, "label": labels}, features=features)


def test_a_drawn_border_is_plain_and_a_border_by_position_is_not():
    drawn, positional = border_contrast(halves(drawn=True), 2), border_contrast(halves(drawn=False), 2)
    # One pair of touching classes: the ignored column makes no border with either.
    assert [border.classes for border in drawn] == [(0, 1)] == [border.classes for border in positional]
    assert drawn[0].length == positional[0].length == 6 * SIZE
    assert drawn[0].contrast > 3 * FAINT_CONTRAST  # a step of 60 grey levels against noise of 6
    assert 0.7 < positional[0].contrast < 1.3


def encoded(images: list[np.ndarray], labels: list[np.ndarray]) -> Dataset:
    columns = {
        "image": [Image().encode_example(i) for i in images],
        "label": [Image().encode_example(m) for m in labels],
    }
    return Dataset.from_dict(columns, features=Features({"image": Image(), "label": Image()}))


def test_a_pair_of_classes_is_one_border_whichever_side_each_is_on():
    # Class 1 right of class 0 in the top half and left of it in the bottom half.
    label = np.zeros((SIZE, SIZE), np.uint8)
    label[: SIZE // 2, SIZE // 2 :] = label[SIZE // 2 :, : SIZE // 2] = 1
    grey = np.where(label == 1, 180, 60).astype(np.uint8)
    borders = border_contrast(encoded([grey], [label]), 2)
    assert [(border.classes, border.length) for border in borders] == [((0, 1), 2 * SIZE)]


def corner_block(side: int, count: int = 4) -> Dataset:
    """Class 0 left, class 1 right (a border of 60 grey levels), and a block of class 2 in class 1's corner, as grey
    as class 1 (a border by position) whose border is `2 * side` pixels of each image's `SIZE + 2 * side`."""
    generator, images, labels = np.random.default_rng(0), [], []
    for _ in range(count):
        label = np.zeros((SIZE, SIZE), np.uint8)
        label[:, SIZE // 2 :] = 1
        label[SIZE - side :, SIZE - side :] = 2
        grey = generator.normal(100, 6, (SIZE, SIZE)) + 60 * (label > 0)
        images.append(np.clip(grey, 0, 255).astype(np.uint8))
        labels.append(label)
    return encoded(images, labels)


def test_the_note_comes_from_35_percent_of_the_border_length_on():
    names = ["left", "right", "corner"]
    assert faint_border_note(corner_block(6), names) is None  # 12 of 36 pixels of border faint: 33%, as CamVid's most
    note = faint_border_note(corner_block(7), names)  # 14 of 38: 37%
    assert note.startswith("37% of the labeled images' class borders barely show") and "right/corner" in note


def test_the_inside_of_both_classes_sets_the_scale_of_a_border():
    # Class 0 flat at 100 on the left; class 1 on the right in columns of 140 and 160: only class 1 varies inside.
    grey = np.full((SIZE, SIZE), 100, np.uint8)
    grey[:, SIZE // 2 :: 2], grey[:, SIZE // 2 + 1 :: 2] = 140, 160
    label = (np.arange(SIZE) >= SIZE // 2).astype(np.uint8)[None].repeat(SIZE, 0)
    (border,) = border_contrast(encoded([grey], [label]), 2)
    half = SIZE // 2
    # Inside steps of both classes, pooled: 20 between class 1's columns, 0 elsewhere (rows and columns both).
    inside = (SIZE * (half - 1) * 20) / (2 * SIZE * (half - 1) + 2 * (SIZE - 1) * half)
    assert border.contrast == pytest.approx(40 / inside)  # across: |100 - 140| = 40


def test_a_border_of_hue_alone_is_plain_in_colour():
    # Red against green of the same grey level (ITU-R 601 luma 0.299 R = 0.587 G): no step in grey, a large one in
    # colour; the noise inside is the same in both.
    generator = np.random.default_rng(0)
    label = (np.arange(SIZE) >= SIZE // 2).astype(np.uint8)[None].repeat(SIZE, 0)
    colour = np.where(label[..., None] == 1, [0, 102, 0], [200, 0, 0]) + generator.normal(0, 3, (SIZE, SIZE, 3))
    image = np.clip(colour, 0, 255).astype(np.uint8)
    (border,) = border_contrast(encoded([image], [label]), 2)
    assert border.contrast > 3 * FAINT_CONTRAST
    assert faint_border_note(encoded([image], [label]), ["red", "green"]) is None


def test_the_note_names_the_faint_borders_only_where_they_are_a_large_share():
    names = ["left", "right"]
    assert faint_border_note(halves(drawn=True), names) is None
    note = faint_border_note(halves(drawn=False), names)
    assert note.startswith("100% of the labeled images' class borders barely show")
    assert "left/right" in note and "compare.py" in note


def test_a_semi_supervised_run_on_faint_borders_is_warned_and_a_supervised_one_is_not(tmp_path, caplog):
    labeled, unlabeled = split_labeled_unlabeled(halves(drawn=False, count=8), num_labeled=4, seed=0)
    data = (labeled, unlabeled, halves(drawn=False, count=2, seed=1))
    with caplog.at_level("WARNING"):
        make_trainer(data, tmp_path, framework="supervised", crop_size=SIZE)
    assert "barely show" not in caplog.text
    with caplog.at_level("WARNING"):
        make_trainer(data, tmp_path, framework="unimatch", crop_size=SIZE)
    assert "barely show" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        make_trainer(data, tmp_path, framework="unimatch", crop_size=SIZE, skip_data_check=True)
    assert "barely show" not in caplog.text
