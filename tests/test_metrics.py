import numpy as np
import pytest
import torch

from fpl_hf.metrics import ConfusionMatrix


def naive_mean_iou(predictions, references, num_labels, ignore_index=255):
    """Per class, over all pixels at once, from the definitions."""
    predictions, references = np.concatenate([p.ravel() for p in predictions]), np.concatenate([r.ravel() for r in references])
    keep = references != ignore_index
    predictions, references = predictions[keep], references[keep]
    ious, accuracies = [], []
    for c in range(num_labels):
        inter = np.sum((predictions == c) & (references == c))
        union = np.sum((predictions == c) | (references == c))
        label = np.sum(references == c)
        ious.append(inter / union if union else np.nan)
        accuracies.append(inter / label if label else np.nan)
    return np.array(ious), np.array(accuracies), np.mean(predictions == references)


def test_streaming_equals_naive_reference_with_ignored_and_absent_classes():
    rng = np.random.default_rng(0)
    predictions = [rng.integers(0, 5, (13, 17)) for _ in range(6)]  # class 5 never predicted
    references = [rng.integers(0, 5, (13, 17)) for _ in range(6)]
    references[0][:4] = 255
    references[1][0, 0] = 5  # class 5 is in a reference but never predicted -> IoU 0
    metric = ConfusionMatrix(num_labels=7)  # class 6 absent everywhere -> NaN
    for start in range(0, 6, 2):
        metric.update(torch.as_tensor(np.stack(predictions[start : start + 2])), np.stack(references[start : start + 2]))
    result = metric.compute()
    iou, accuracy, overall = naive_mean_iou(predictions, references, 7)
    np.testing.assert_allclose(result["per_category_iou"], iou)
    np.testing.assert_allclose(result["per_category_accuracy"], accuracy)
    assert np.isnan(result["per_category_iou"][6]) and result["per_category_iou"][5] == 0
    assert result["mean_iou"] == pytest.approx(np.nanmean(iou))
    assert result["overall_accuracy"] == pytest.approx(overall)
    assert metric.compute(nan_to_num=0)["per_category_iou"][6] == 0


def test_reduce_labels_and_label_map():
    references = np.array([[0, 1, 2, 3]])
    predictions = np.array([[0, 0, 1, 2]])
    reduced = ConfusionMatrix(num_labels=3, reduce_labels=True)
    reduced.update(predictions, references)  # 0 -> ignored, 1..3 -> 0..2
    assert reduced.compute()["overall_accuracy"] == 1.0
    mapped = ConfusionMatrix(num_labels=3, label_map={3: 0})
    mapped.update(np.array([[0, 1, 2, 0]]), references)
    assert mapped.compute()["overall_accuracy"] == 1.0


def test_memory_does_not_grow_with_batches():
    metric = ConfusionMatrix(num_labels=21)
    size = metric.counts.numel()
    for _ in range(20):
        metric.update(torch.randint(0, 21, (2, 32, 32)), torch.randint(0, 21, (2, 32, 32)))
    assert metric.counts.numel() == size and metric.counts.sum() == 20 * 2 * 32 * 32


def test_bad_inputs_raise():
    metric = ConfusionMatrix(num_labels=3)
    with pytest.raises(ValueError, match="same shape"):
        metric.update(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="references hold ids"):
        metric.update(np.zeros((2, 2)), np.full((2, 2), 7))
