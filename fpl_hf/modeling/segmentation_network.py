"""The contract of a network that `FPLTrainer` trains and evaluates (fpl_hf's own, or a wrapped transformers model)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from transformers.modeling_outputs import SemanticSegmenterOutput

FeaturePerturbation = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SegmenterOutput(SemanticSegmenterOutput):
    """`SemanticSegmenterOutput` plus, with a `feature_perturbation`, the logits decoded from the perturbed features."""

    perturbed_logits: torch.Tensor | None = None


@runtime_checkable
class SegmentationNetwork(Protocol):
    """A segmentation network as the trainer, the frameworks and the evaluation use it.

    Attributes:
        encoder_module: the name of its encoder submodule (the encoder learns at a trainer's `encoder_lr_ratio`, and
            CPS's second branch keeps it while its head is initialised anew), or None where it is not known.
        supports_feature_perturbation: whether `forward` takes a `feature_perturbation` of the encoder features
            (UniMatch's feature dropout, UniMatch V2's complementary channel dropout).
    """

    encoder_module: str | None
    supports_feature_perturbation: bool

    def segment(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_labels, H, W) of one plain whole-image pass at the input size."""
        ...

    def __call__(
        self, pixel_values: torch.Tensor, feature_perturbation: FeaturePerturbation | None = None
    ) -> SegmenterOutput:
        """An output with `logits` at the input size and, given a `feature_perturbation`, `perturbed_logits`: the
        decoding of the perturbed encoder features."""
        ...


__all__ = ["FeaturePerturbation", "SegmentationNetwork", "SegmenterOutput"]
