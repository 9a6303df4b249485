"""Cross pseudo supervision (Chen et al., CVPR 2021): two branches teach each other.

The model is a `BranchPair`: one forward gives both branches' logits.
"""

from __future__ import annotations

import torch

from .base import BranchPair, Framework, SemiSupervisedBatch, StepContext, mix, without_dropout, register


def step(context: StepContext, model: BranchPair, batch: SemiSupervisedBatch) -> torch.Tensor:
    logits_1, logits_2 = model(batch["pixel_values"])
    sup = context.supervised_loss(logits_1, batch["labels"]) + context.supervised_loss(logits_2, batch["labels"])

    unlabeled, valid = batch["unlabeled_pixel_values"], batch["unlabeled_valid"]
    diagnostic = batch["unlabeled_diagnostic_labels"]
    if context.args.cutmix:
        # Teachers see the unmixed images (train-mode BatchNorm, no dropout: deterministic targets); their
        # predictions are mixed with the same box as the images.
        box = batch["cutmix_masks"][:, 0]
        with torch.no_grad(), without_dropout(model):
            teacher_1_a, teacher_2_a = model(unlabeled[:, 0])
            teacher_1_b, teacher_2_b = model(unlabeled[:, 1])
        teacher_1, teacher_2 = mix(teacher_1_a, teacher_1_b, box), mix(teacher_2_a, teacher_2_b, box)
        student_1, student_2 = model(mix(unlabeled[:, 0], unlabeled[:, 1], box))
        valid = mix(valid[:, 0], valid[:, 1], box)
        diagnostic = mix(diagnostic[:, 0], diagnostic[:, 1], box)
    else:
        student_1, student_2 = model(unlabeled[:, 0])
        teacher_1, teacher_2 = student_1.detach(), student_2.detach()
        valid, diagnostic = valid[:, 0], diagnostic[:, 0]

    # Branch 1 learns from branch 2's pseudo-labels (or fuzzy sets), and branch 2 from branch 1's.
    unsup_12, unsup_21 = context.unsupervised_loss(
        (student_1, teacher_2, valid, diagnostic), (student_2, teacher_1, valid, diagnostic)
    )
    unsup = unsup_12 + unsup_21
    context.record(sup=sup, unsup=unsup)
    return sup + context.unsup_weight * unsup


FRAMEWORK = register(Framework(
    name="cps",
    step=step,
    description="cross pseudo supervision: two differently initialised branches label images for each other",
    second_branch=True,
))
