"""What the logs say about an unsupervised loss's targets: pure functions of the sets the loss trained."""

from __future__ import annotations

import torch

from .losses import PseudoLabelLossOutput, k_share_tensors


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
    known = valid & (diagnostic_labels != ignore_index)
    right = output.positive_classes[:, 0] == diagnostic_labels
    in_set = ((output.positive_classes == diagnostic_labels.unsqueeze(1)) & output.in_set).any(1)
    total = known.sum().float()  # 0 / 0: NaN, no pixel known
    return {
        **k_share_tensors(output.k, valid),
        "weight": weight,
        "pseudo_label_accuracy": (right & known).sum() / total,
        "case_wrong_in_set": (~right & in_set & known).sum() / total,
        "case_outside_set": (~in_set & known).sum() / total,
    }


__all__ = ["pseudo_label_statistics"]
