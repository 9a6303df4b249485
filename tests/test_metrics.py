import numpy as np
import pytest
import torch

from fpl_hf.metrics import ConfusionMatrix


def naive_mean_iou(predictions, references, num_labels, ignore_index=255):
    """Per class, over all pixels at once, from the definitions."""
    predictions, references = (
        np.concatenate([p.ravel() for p in predictions]),
        np.concatenate([r.ravel() for r in references]),
    )
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
        metric.update(
            torch.as_tensor(np.stack(predictions[start : start + 2])), np.stack(references[start : start + 2])
        )
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


def _documented_example():
    predictions = [
        np.array([[1, 2], [3, 4], [5, 255]]),
        np.array([[2, 7], [9, 2], [3, 6]]),
        np.array([[2, 2, 3], [8, 2, 4], [3, 255, 2]]),
    ]
    references = [
        np.array([[0, 3], [5, 4], [6, 255]]),
        np.array([[1, 7], [9, 2], [3, 6]]),
        np.array([[1, 2, 2], [8, 2, 1], [3, 255, 1]]),
    ]
    return predictions, references


# The output printed in evaluate's mean_iou card for the example above.
DOCUMENTED = {
    "mean_iou": 0.47750000000000004,
    "mean_accuracy": 0.5916666666666666,
    "overall_accuracy": 0.5263157894736842,
    "per_category_iou": [0.0, 0.0, 0.375, 0.4, 0.5, 0.0, 0.5, 1.0, 1.0, 1.0],
    "per_category_accuracy": [0.0, 0.0, 0.75, 0.66666667, 1.0, 0.0, 0.5, 1.0, 1.0, 1.0],
}


def test_confusion_matrix_matches_evaluates_documented_example():
    metric = ConfusionMatrix(num_labels=10, ignore_index=255)
    for prediction, reference in zip(*_documented_example()):
        metric.update(prediction, reference)
    result = metric.compute()
    for key, value in DOCUMENTED.items():
        np.testing.assert_allclose(result[key], value, rtol=1e-6)


def test_evaluate_module_loads_offline_and_matches_the_documented_example(monkeypatch):
    import evaluate

    from fpl_hf.metrics import MEAN_IOU_PATH

    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    metric = evaluate.load(MEAN_IOU_PATH)
    predictions, references = _documented_example()
    for prediction, reference in zip(predictions, references):
        metric.add_batch(predictions=[prediction], references=[reference])
    result = metric.compute(num_labels=10, ignore_index=255, reduce_labels=False)
    for key, value in DOCUMENTED.items():
        np.testing.assert_allclose(result[key], value, rtol=1e-6)
    # one-shot compute, reduce_labels and label_map agree with the streaming matrix
    rng = np.random.default_rng(1)
    maps = [rng.integers(0, 6, (9, 7)) for _ in range(4)]
    labels = [rng.integers(0, 6, (9, 7)) for _ in range(4)]
    for options in (dict(reduce_labels=True), dict(label_map={5: 0})):
        expected = ConfusionMatrix(num_labels=6, **options)
        for prediction, reference in zip(maps, labels):
            expected.update(prediction, reference)
        got = metric.compute(predictions=maps, references=labels, num_labels=6, ignore_index=255, **options)
        np.testing.assert_allclose(got["per_category_iou"], expected.compute()["per_category_iou"])
        np.testing.assert_allclose(got["overall_accuracy"], expected.compute()["overall_accuracy"])


def test_evaluate_module_memory_does_not_grow_with_batches():
    import evaluate

    from fpl_hf.metrics import MEAN_IOU_PATH

    metric = evaluate.load(MEAN_IOU_PATH)
    for _ in range(30):
        metric.add_batch(
            predictions=[np.random.randint(0, 5, (16, 16))], references=[np.random.randint(0, 5, (16, 16))]
        )
    assert metric._raw_counts.shape == (5, 5) and int(metric._raw_counts.sum()) == 30 * 256
    assert metric.compute(num_labels=5, ignore_index=255)["overall_accuracy"] > 0


def test_negative_references_raise():
    with pytest.raises(ValueError, match="negative"):
        ConfusionMatrix(num_labels=3).update(np.zeros((2, 2), dtype=int), np.full((2, 2), -1))
