"""Distribution alignment (Berthelot et al., ReMixMatch, ICLR 2020) for the pixels of a teacher's predictions."""

from __future__ import annotations

import torch

SMALLEST_SHARE = 1e-6  # a class that no labeled pixel holds is pushed down hard, not to minus infinity


class DistributionAlignment:
    """Moves a teacher's class probabilities towards the class shares of the labeled pixels: each probability is
    multiplied by (labeled share / running mean of the teacher's own predicted share) and renormalised, which is a
    shift of the logits by the log of that ratio.

    Why: self-training feeds a teacher's bias back into its student. A class that the few labeled images hold
    rarely is under-predicted, learned less, then predicted less again, until it is gone (on the INIA19 slices the
    rarest region group fell from 4.9% to 1.1% of the predicted pixels under UniMatch V2). Alignment keeps the
    pseudo-labels' class shares where the labels put them.

    Args:
        num_labels: the classes.
        ignore_index: the label of pixels that count for nothing (crop padding).
        momentum: of the running mean of the teacher's shares, one update per call (0.99: about the last 100).
    """

    def __init__(self, num_labels: int, ignore_index: int, momentum: float = 0.99):
        self.num_labels, self.ignore_index, self.momentum = num_labels, ignore_index, momentum
        self.labeled_counts: torch.Tensor | None = None
        self.predicted_shares: torch.Tensor | None = None

    def observe_labels(self, labels: torch.Tensor) -> None:
        """Counts the classes of a labeled batch's pixels (all batches so far: the labeled images do not change)."""
        kept = labels[labels != self.ignore_index]
        counts = torch.bincount(kept.flatten(), minlength=self.num_labels)[: self.num_labels].double()
        self.labeled_counts = counts if self.labeled_counts is None else self.labeled_counts + counts

    @torch.no_grad()
    def __call__(self, logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Aligned teacher logits (B, C, H, W) for the pixels where `valid` (B, H, W); the running mean is updated
        first with this batch's shares."""
        if self.labeled_counts is None:
            raise RuntimeError("Distribution alignment needs the labeled pixels' classes first (observe_labels).")
        weights = valid[:, None].to(torch.float32)
        shares = (logits.float().softmax(1) * weights).sum((0, 2, 3)) / weights.sum().clamp_min(1.0)
        if self.predicted_shares is None:
            self.predicted_shares = shares
        else:
            self.predicted_shares = self.momentum * self.predicted_shares + (1 - self.momentum) * shares
        labeled_shares = (self.labeled_counts / self.labeled_counts.sum().clamp_min(1.0)).float()
        shift = labeled_shares.clamp_min(SMALLEST_SHARE).log() - self.predicted_shares.clamp_min(SMALLEST_SHARE).log()
        return logits + shift.to(logits.dtype)[None, :, None, None]


__all__ = ["DistributionAlignment"]
