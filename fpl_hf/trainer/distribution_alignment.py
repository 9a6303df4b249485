"""Distribution alignment of a teacher's predictions (ReMixMatch, Berthelot et al. ICLR 2020), per pixel.

On long-tailed street scenes a teacher trained on a few labeled images under-predicts the rare classes (on CamVid's
development draws it labels almost no pole and little sign or fence), so their truth is rarely a pseudo-label and
rarely inside FPL's fuzzy set. Alignment multiplies the teacher's class probabilities by the labeled pixels' class
frequencies over the teacher's own mean prediction, then renormalises: in logits, `+ log(labeled) - log(teacher)`.
A class the teacher predicts less often than the labeled images show it gains probability on every pixel, so it
enters the fuzzy set (and the arg-max) where it was a close second.
"""

from __future__ import annotations

import torch

from .frameworks import PseudoLabelPair

# The teacher's mean prediction is a running average over about the last 100 steps, as the teacher changes; the
# labeled frequencies are counted over every labeled crop seen, which do not.
TEACHER_PRIOR_MOMENTUM = 0.99
# A class no labeled pixel has shown yet keeps this frequency: its pseudo-labels are suppressed, not undefined.
SMALLEST_FREQUENCY = 1e-6


class DistributionAlignment:
    """Running class frequencies of the labeled pixels and of the teacher's predictions, and the alignment of a
    teacher's logits by them (`FPLConfig.distribution_alignment`)."""

    def __init__(self, num_labels: int, ignore_index: int):
        self.num_labels, self.ignore_index = num_labels, ignore_index
        self.labeled_counts = torch.zeros(num_labels, dtype=torch.float64)
        self.teacher_prior: torch.Tensor | None = None

    def observe_labels(self, labels: torch.Tensor) -> None:
        """Counts the classes of a labeled batch's known pixels."""
        known = labels[labels != self.ignore_index]
        counts = torch.bincount(known.flatten().long(), minlength=self.num_labels)[: self.num_labels]
        self.labeled_counts += counts.cpu().double()

    def __call__(self, pair: PseudoLabelPair) -> PseudoLabelPair:
        """The pair with its teacher's logits aligned; the teacher's mean prediction over the pair's valid pixels is
        averaged in first."""
        teacher = pair.teacher.float()
        with torch.no_grad():
            probabilities = teacher.softmax(1).movedim(1, -1)[pair.valid]
            if probabilities.numel():
                mean = probabilities.mean(0).double().cpu()
                self.teacher_prior = (
                    mean
                    if self.teacher_prior is None
                    else TEACHER_PRIOR_MOMENTUM * self.teacher_prior + (1 - TEACHER_PRIOR_MOMENTUM) * mean
                )
        if self.teacher_prior is None or not self.labeled_counts.any():
            return pair
        labeled = (self.labeled_counts / self.labeled_counts.sum()).clamp_min(SMALLEST_FREQUENCY)
        shift = (labeled.log() - self.teacher_prior.clamp_min(SMALLEST_FREQUENCY).log()).float().to(teacher.device)
        return pair._replace(teacher=teacher + shift.view(1, -1, 1, 1))


__all__ = ["DistributionAlignment"]
