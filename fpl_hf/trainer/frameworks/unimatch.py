"""UniMatch-style weak-to-strong consistency (Yang et al., CVPR 2023), with FPL in place of the thresholded CE.

The weak view gives the targets; two strong views (each CutMixed with another image's strong view) and a
feature-perturbed decoding of the weak view learn from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial

import torch
import torch.nn.functional as F
from torch import nn

from ...data import CutMixSettings
from .base import (
    Framework,
    SemiSupervisedBatch,
    StepContext,
    StrongViewStatistics,
    eval_mode_logits,
    mix,
    register_framework,
    strong_views_pass,
    total_loss,
    unlabeled_targets,
    without_dropout,
)

# UniMatch's weak-to-strong setting, shared by its V1 and V2 steps: two strong views of each unlabeled image, each
# CutMixed with one box (2-40% of the crop, half of the time) with another image's, a feature perturbation, and
# a 0.95 confidence threshold for the CE baseline.
WEAK_TO_STRONG = dict(
    strong_views=2,
    cutmix_masks=2,
    always_mixes=True,
    cutmix=CutMixSettings(num_boxes=1, area_range=(0.02, 0.4), probability=0.5),
    loss_defaults={"confidence_threshold": 0.95},
    perturbs_features=True,
)


@dataclass
class UniMatchOptions(StrongViewStatistics):
    feature_dropout: float = field(
        default=0.5, metadata={"help": "UniMatch: dropout rate of the feature-perturbation branch."}
    )

    def __post_init__(self) -> None:
        if not 0 <= self.feature_dropout < 1:
            raise ValueError(f"`feature_dropout` must be in [0, 1), got {self.feature_dropout}; UniMatch uses 0.5.")


@lru_cache
def feature_dropout(rate: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """UniMatch's feature perturbation: channel dropout at `rate`; one function a rate, so that a compiled model
    meets the same argument at every step."""
    return partial(F.dropout2d, p=rate, training=True)


def mixed_strong_views(batch: SemiSupervisedBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """The two strong views of each item's image, each CutMixed with the same view of its partner by its own box."""
    strong, boxes = batch["unlabeled_strong_pixel_values"], batch["cutmix_masks"]
    return mix(strong[:, 0, 0], strong[:, 1, 0], boxes[:, 0]), mix(strong[:, 0, 1], strong[:, 1, 1], boxes[:, 1])


def step(context: StepContext[UniMatchOptions], model: nn.Module, batch: SemiSupervisedBatch) -> torch.Tensor:
    labeled, labels = batch["pixel_values"], batch["labels"]
    weak, boxes = batch["unlabeled_pixel_values"], batch["cutmix_masks"]

    # The mixing partner's weak prediction, in eval mode as in UniMatch.
    partner = eval_mode_logits(model, weak[:, 1])

    # Labeled and weak images share one pass (and its BatchNorm statistics), as in UniMatch, whose network has no
    # dropout: the weak targets are deterministic. The feature perturbation is a dropout of its own.
    channel_dropout = feature_dropout(context.options.feature_dropout)
    with without_dropout(model):
        outputs = model(pixel_values=torch.cat([labeled, weak[:, 0]]), feature_perturbation=channel_dropout)
    labeled_logits, weak_logits = outputs.logits.split([labeled.shape[0], weak.shape[0]])
    perturbed_logits = outputs.perturbed_logits[labeled.shape[0] :]
    with strong_views_pass(context, model):
        strong_logits_1, strong_logits_2 = model(pixel_values=torch.cat(mixed_strong_views(batch))).logits.chunk(2)

    weak_logits = weak_logits.detach()
    sup = context.supervised_loss(labeled_logits, labels)
    unsup_strong_1, unsup_strong_2, unsup_perturbed = context.unsupervised_loss(
        unlabeled_targets(batch, weak_logits, partner, boxes[:, 0]).for_student(strong_logits_1),
        unlabeled_targets(batch, weak_logits, partner, boxes[:, 1]).for_student(strong_logits_2),
        unlabeled_targets(batch, weak_logits).for_student(perturbed_logits),
    )
    unsup_strong = 0.5 * (unsup_strong_1 + unsup_strong_2)
    unsup = 0.5 * unsup_strong + 0.5 * unsup_perturbed
    return total_loss(context, sup, unsup, unsup_strong=unsup_strong, unsup_perturbed=unsup_perturbed) / 2


FRAMEWORK = register_framework(
    Framework(
        name="unimatch",
        step=step,
        description="UniMatch-style weak-to-strong consistency: two CutMixed strong views and a feature-dropout branch",
        options=UniMatchOptions,
        **WEAK_TO_STRONG,
    )
)
