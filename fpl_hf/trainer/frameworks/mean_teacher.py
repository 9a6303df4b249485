"""Mean teacher in the AEL style: an EMA teacher labels unmixed images, the student learns on their CutMix."""

from __future__ import annotations

import torch
from torch import nn

from .base import Framework, SemiSupervisedBatch, StepContext, eval_mode_logits, mix, register


def step(context: StepContext, model: nn.Module, batch: SemiSupervisedBatch) -> torch.Tensor:
    sup = context.supervised_loss(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])

    unlabeled, valid = batch["unlabeled_pixel_values"], batch["unlabeled_valid"]
    diagnostic = batch["unlabeled_diagnostic_labels"]
    teacher_a = eval_mode_logits(context.teacher, unlabeled[:, 0])
    if context.args.cutmix:
        box = batch["cutmix_masks"][:, 0]
        student_input = mix(unlabeled[:, 0], unlabeled[:, 1], box)
        teacher_logits = mix(teacher_a, eval_mode_logits(context.teacher, unlabeled[:, 1]), box)
        valid, diagnostic = mix(valid[:, 0], valid[:, 1], box), mix(diagnostic[:, 0], diagnostic[:, 1], box)
    else:
        student_input, teacher_logits, valid, diagnostic = unlabeled[:, 0], teacher_a, valid[:, 0], diagnostic[:, 0]
    student_logits = model(pixel_values=student_input).logits

    (unsup,) = context.unsupervised_loss((student_logits, teacher_logits, valid, diagnostic))
    context.record(sup=sup, unsup=unsup)
    return sup + context.unsup_weight * unsup


FRAMEWORK = register(Framework(
    name="mean_teacher",
    step=step,
    description="mean teacher (AEL style): an EMA of the student labels the images that the student sees mixed",
    ema_decay=0.99,
))
