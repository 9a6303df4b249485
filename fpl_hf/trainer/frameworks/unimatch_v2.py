"""UniMatch V2 (Yang et al., TPAMI 2025), with FPL in place of the thresholded CE: an EMA teacher labels the weak
view; two strong views, each CutMixed with another image's, learn from it through complementary channel dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import (
    Framework,
    SemiSupervisedBatch,
    StepContext,
    StrongViewStatistics,
    eval_mode_logits,
    register_framework,
    strong_views_pass,
    total_loss,
    unlabeled_targets,
)
from .unimatch import WEAK_TO_STRONG, mixed_strong_views


def complementary_channel_dropout(features: torch.Tensor) -> torch.Tensor:
    """Features (2B, C, H, W) of two views of B images, view 1 first: view 1 keeps a random half of the channels and
    view 2 the other half, each x2. As in the released code, a random half of the images keep all channels in both
    views; each feature map a model perturbs draws its own masks."""
    pairs = features.shape[0] // 2
    kept = torch.bernoulli(torch.full((pairs, features.shape[1]), 0.5, device=features.device))
    unperturbed = torch.randperm(pairs, device=features.device)[: pairs // 2]
    first = 2 * kept
    first[unperturbed] = 1.0
    second = 2 - first
    masks = torch.cat([first, second]).to(features.dtype)
    return features * masks[:, :, None, None]


def step(context: StepContext[StrongViewStatistics], model: nn.Module, batch: SemiSupervisedBatch) -> torch.Tensor:
    labeled, labels = batch["pixel_values"], batch["labels"]
    weak, boxes = batch["unlabeled_pixel_values"], batch["cutmix_masks"]

    # The EMA teacher predicts each item's image and its mixing partner in eval mode.
    teacher_logits, partner_logits = eval_mode_logits(context.teacher, torch.cat([weak[:, 0], weak[:, 1]])).chunk(2)

    sup = context.supervised_loss(model(pixel_values=labeled).logits, labels)
    with strong_views_pass(context, model):
        outputs = model(
            pixel_values=torch.cat(mixed_strong_views(batch)), feature_perturbation=complementary_channel_dropout
        )
    student_1, student_2 = outputs.perturbed_logits.chunk(2)

    unsup_1, unsup_2 = context.unsupervised_loss(
        unlabeled_targets(batch, teacher_logits, partner_logits, boxes[:, 0]).for_student(student_1),
        unlabeled_targets(batch, teacher_logits, partner_logits, boxes[:, 1]).for_student(student_2),
    )
    unsup = 0.5 * (unsup_1 + unsup_2)
    return total_loss(context, sup, unsup) / 2


FRAMEWORK = register_framework(
    Framework(
        name="unimatch_v2",
        step=step,
        description="UniMatch V2: an EMA teacher labels the weak view for two CutMixed strong views, decoded through "
        "complementary channel dropout",
        options=StrongViewStatistics,
        **WEAK_TO_STRONG,
        ema_decay=0.996,
    )
)
