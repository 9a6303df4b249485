"""What the logs say about an unsupervised loss's targets: pure functions of the sets the loss trained."""

from __future__ import annotations

import torch

from .losses import PseudoLabelLossOutput, k_shares


@torch.no_grad()
def pseudo_label_statistics(
    output: PseudoLabelLossOutput, diagnostic_labels: torch.Tensor, ignore_index: int = 255
) -> dict[str, float]:
    """The statistics of one loss term over its valid pixels.

    Always: the shares of pixels with K = 1, 2, 3+ and the mean adaptive weight. Where the unlabeled pixels' own
    labels are known (`diagnostic_labels` (B, H, W), `ignore_index` elsewhere), the cases of the paper's section
    3.4 against the sets the loss trained: `pseudo_label_accuracy` (the teacher's top class is right),
    `case_wrong_in_set` (wrong, the truth inside the set) and `case_outside_set` (the truth outside it; for the
    cross-entropy, whose set is the pseudo-label alone, every wrong pixel).
    """
    valid = output.valid_mask
    statistics = {**k_shares(output.k, valid), "weight": output.weight[valid].float().mean().item()}
    known = valid & (diagnostic_labels != ignore_index)
    if not known.any():
        return statistics
    truth = diagnostic_labels.unsqueeze(1)
    right = output.positive_classes[:, 0] == diagnostic_labels
    in_set = ((output.positive_classes == truth) & output.in_set).any(1)
    total = known.sum()
    return {
        **statistics,
        "pseudo_label_accuracy": ((right & known).sum() / total).item(),
        "case_wrong_in_set": ((~right & in_set & known).sum() / total).item(),
        "case_outside_set": ((~in_set & known).sum() / total).item(),
    }


__all__ = ["pseudo_label_statistics"]
