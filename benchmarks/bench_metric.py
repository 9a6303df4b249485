"""Time and peak memory of the streaming confusion-matrix mIoU against a per-image histogram implementation.

    python benchmarks/bench_metric.py [--maps 200 --size 512 --classes 21]

The baseline computes the same definition as evaluate's `mean_iou` does: for every image, histograms of the
intersection, the prediction and the label areas (np.histogram), summed over images. Both run in one process
on the same int64 maps, as an argmax produces them, and must give equal results.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import torch
from _measure import peak_bytes

from fpl_hf.metrics import ConfusionMatrix


def per_image_histograms(predictions, references, num_labels: int, ignore_index: int = 255) -> dict:
    total_intersect = np.zeros(num_labels)
    total_prediction = np.zeros(num_labels)
    total_label = np.zeros(num_labels)
    for prediction, reference in zip(predictions, references):
        keep = reference != ignore_index
        prediction, reference = prediction[keep], reference[keep]
        intersect = prediction[prediction == reference]
        bins = num_labels
        total_intersect += np.histogram(intersect, bins=bins, range=(0, num_labels - 1))[0]
        total_prediction += np.histogram(prediction, bins=bins, range=(0, num_labels - 1))[0]
        total_label += np.histogram(reference, bins=bins, range=(0, num_labels - 1))[0]
    union = total_prediction + total_label - total_intersect
    return {"per_category_iou": total_intersect / union, "overall_accuracy": total_intersect.sum() / total_label.sum()}


def streaming(predictions, references, num_labels: int) -> dict:
    matrix = ConfusionMatrix(num_labels)
    for prediction, reference in zip(predictions, references):
        matrix.update(prediction, reference)
    return matrix.compute()


def best_seconds_in_turns(functions: list, repeats: int = 7) -> list[float]:
    """Best time of each function, run in turns so that the machine's drift touches all of them alike."""
    seconds = [[] for _ in functions]
    for _ in range(repeats):
        for times, fn in zip(seconds, functions):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return [min(times) for times in seconds]


def traced_peak(fn) -> int:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--classes", type=int, default=21)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    predictions = [rng.integers(0, args.classes, (args.size, args.size), dtype=np.int64) for _ in range(args.maps)]
    references = [rng.integers(0, args.classes, (args.size, args.size), dtype=np.int64) for _ in range(args.maps)]
    for reference in references:
        reference[:8] = 255
    tensors = [(torch.from_numpy(p), torch.from_numpy(r)) for p, r in zip(predictions, references)]

    run_baseline = lambda: per_image_histograms(predictions, references, args.classes)  # noqa: E731
    run_ours = lambda: streaming(*zip(*tensors), args.classes)  # noqa: E731
    baseline, ours = run_baseline(), run_ours()
    base_seconds, seconds = best_seconds_in_turns([run_baseline, run_ours])
    base_peak, peak = traced_peak(run_baseline), peak_bytes(run_ours, torch.device("cpu"))
    np.testing.assert_allclose(ours["per_category_iou"], baseline["per_category_iou"])
    np.testing.assert_allclose(ours["overall_accuracy"], baseline["overall_accuracy"])
    print(
        f"{args.maps} maps of {args.size}x{args.size}, {args.classes} classes, int64, {torch.get_num_threads()} threads"
    )
    print(f"per-image histograms: {base_seconds:.3f}s, peak {base_peak / 2**20:.1f} MiB (numpy, traced)")
    print(f"streaming confusion : {seconds:.3f}s, peak {peak / 2**20:.1f} MiB (torch profiler; one map's index buffer)")
    print(f"speed-up: {base_seconds / seconds:.1f}x, equal results: yes")


if __name__ == "__main__":
    main()
