"""What the logs say about an unsupervised loss's targets: pure functions of the sets the loss trained."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .losses import PseudoLabelLossOutput, k_share_tensors


def _against_labels(
    output: PseudoLabelLossOutput, diagnostic_labels: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, H, W) bool each: the valid pixels whose label is known, those whose teacher's top class is the label, and
    those whose label is inside the trained set."""
    known = output.valid_mask & (diagnostic_labels != ignore_index)
    right = output.positive_classes[:, 0] == diagnostic_labels
    in_set = ((output.positive_classes == diagnostic_labels.unsqueeze(1)) & output.in_set).any(1)
    return known, right, in_set


@torch.no_grad()
def pseudo_label_statistics(
    output: PseudoLabelLossOutput, diagnostic_labels: torch.Tensor, ignore_index: int = 255
) -> dict[str, torch.Tensor]:
    """The statistics of one loss term over its valid pixels, as 0-dim tensors on the loss's device: a trainer that
    records them every step reads them only when it logs, so that a GPU step never waits for them.

    Always: the shares of pixels with K = 1, 2, 3+ and the mean adaptive weight. Against the unlabeled pixels' own
    labels (`diagnostic_labels` (B, H, W), `ignore_index` where unknown), the cases of the paper's section 3.4 for
    the sets the loss trained: `pseudo_label_accuracy` (the teacher's top class is right), `case_wrong_in_set`
    (wrong, the truth inside the set) and `case_outside_set` (the truth outside it; for the cross-entropy, whose set
    is the pseudo-label alone, every wrong pixel). They are NaN where no valid pixel's label is known.
    """
    valid = output.valid_mask
    weight = torch.where(valid, output.weight.float(), 0.0).sum() / valid.sum().clamp(min=1)
    known, right, in_set = _against_labels(output, diagnostic_labels, ignore_index)
    total = known.sum().float()  # 0 / 0: NaN, no pixel known
    return {
        **k_share_tensors(output.k, valid),
        "weight": weight,
        "pseudo_label_accuracy": (right & known).sum() / total,
        "case_wrong_in_set": (~right & in_set & known).sum() / total,
        "case_outside_set": (~in_set & known).sum() / total,
    }


@torch.no_grad()
def pseudo_label_class_counts(
    output: PseudoLabelLossOutput, diagnostic_labels: torch.Tensor, ignore_index: int = 255
) -> torch.Tensor:
    """(3, C) counts by true class over the valid pixels whose label is known: the pixels, those whose teacher's top
    class is right, those whose truth lies outside the trained set. Counts add up over steps and processes, where
    the rates of `pseudo_labels_by_class` would not: the rare classes that most of a few-label run's headroom lies in
    are absent from most steps."""
    known, right, in_set = _against_labels(output, diagnostic_labels, ignore_index)
    rows = torch.stack((known, right & known, ~in_set & known)).flatten(1).float()
    classes = torch.where(known, diagnostic_labels, 0).flatten()
    return rows.new_zeros(3, output.num_classes).index_add_(1, classes, rows)


def pseudo_labels_by_class(counts: torch.Tensor, class_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Per class of `pseudo_label_class_counts` summed (classes never seen left out): `pixels`, its share of the
    pixels whose label is known; `pseudo_label_accuracy`, the share of its pixels whose pseudo-label (the teacher's
    top class) is right; `case_outside_set`, the share whose truth lies outside the trained set."""
    pixels, right, outside = counts.double().cpu()
    total = float(pixels.sum())
    return {
        name: {
            "pixels": float(seen) / total,
            "pseudo_label_accuracy": float(right_of_class / seen),
            "case_outside_set": float(outside_of_class / seen),
        }
        for name, seen, right_of_class, outside_of_class in zip(class_names, pixels, right, outside)
        if seen > 0
    }


__all__ = ["pseudo_label_class_counts", "pseudo_label_statistics", "pseudo_labels_by_class"]
