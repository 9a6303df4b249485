"""UniMatch-style weak-to-strong consistency (Yang et al., CVPR 2023), with FPL in place of the thresholded CE.

The weak view gives the targets; two strong views (each CutMixed with another image's strong view) and a
feature-perturbed decoding of the weak view learn from them.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .base import (
    WEAK_TO_STRONG, Framework, SemiSupervisedBatch, StepContext, eval_mode_logits, mix, register, without_dropout,
)


def step(context: StepContext, model: nn.Module, batch: SemiSupervisedBatch) -> torch.Tensor:
    labeled, labels = batch["pixel_values"], batch["labels"]
    weak, strong = batch["unlabeled_pixel_values"], batch["unlabeled_strong_pixel_values"]
    valid, diagnostic, boxes = batch["unlabeled_valid"], batch["unlabeled_diagnostic_labels"], batch["cutmix_masks"]
    batch_size = labeled.shape[0]

    # The mixing partner's weak prediction, in eval mode as in UniMatch.
    partner = eval_mode_logits(model, weak[:, 1])

    # Labeled and weak images share one pass (and its BatchNorm statistics), as in UniMatch, whose network has no
    # dropout: the weak targets are deterministic. The feature perturbation is a dropout of its own.
    channel_dropout = partial(F.dropout2d, p=context.args.feature_dropout, training=True)
    with without_dropout(model):
        outputs = model(pixel_values=torch.cat([labeled, weak[:, 0]]), feature_perturbation=channel_dropout)
    labeled_logits, weak_logits = outputs.logits.split([batch_size, batch_size])
    perturbed_logits = outputs.perturbed_logits[batch_size:]
    strong_1 = mix(strong[:, 0, 0], strong[:, 1, 0], boxes[:, 0])
    strong_2 = mix(strong[:, 0, 1], strong[:, 1, 1], boxes[:, 1])
    strong_logits_1, strong_logits_2 = model(pixel_values=torch.cat([strong_1, strong_2])).logits.chunk(2)

    weak_logits = weak_logits.detach()
    sup = context.supervised_loss(labeled_logits, labels)
    unsup_strong_1, unsup_strong_2, unsup_perturbed = context.unsupervised_loss(
        *(
            (student, mix(weak_logits, partner, box), mix(valid[:, 0], valid[:, 1], box), mix(diagnostic[:, 0], diagnostic[:, 1], box))
            for student, box in ((strong_logits_1, boxes[:, 0]), (strong_logits_2, boxes[:, 1]))
        ),
        (perturbed_logits, weak_logits, valid[:, 0], diagnostic[:, 0]),
    )
    unsup_strong = 0.5 * (unsup_strong_1 + unsup_strong_2)
    unsup = 0.5 * unsup_strong + 0.5 * unsup_perturbed
    context.record(sup=sup, unsup=unsup, unsup_strong=unsup_strong, unsup_perturbed=unsup_perturbed)
    return (sup + context.unsup_weight * unsup) / 2


FRAMEWORK = register(Framework(
    name="unimatch",
    step=step,
    description="UniMatch-style weak-to-strong consistency: two CutMixed strong views and a feature-dropout branch",
    **WEAK_TO_STRONG,
))
