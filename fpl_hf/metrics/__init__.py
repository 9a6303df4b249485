from pathlib import Path

from .confusion import ConfusionMatrix, metrics_from_matrix, remap_references

# `evaluate.load(MEAN_IOU_PATH)` loads the streaming mean IoU module shipped with fpl_hf, offline.
MEAN_IOU_PATH = str(Path(__file__).parent / "mean_iou")

__all__ = ["ConfusionMatrix", "MEAN_IOU_PATH", "metrics_from_matrix", "remap_references"]
