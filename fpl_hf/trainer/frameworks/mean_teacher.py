"""Mean teacher in the AEL style: an EMA teacher labels unmixed images, the student learns on their CutMix."""

from __future__ import annotations

import torch
from torch import nn

from .base import (
    Framework, SemiSupervisedBatch, StepContext, eval_mode_logits, mix, register_framework, unlabeled_targets,
)


def step(context: StepContext, model: nn.Module, batch: SemiSupervisedBatch) -> torch.Tensor:
    sup = context.supervised_loss(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])

    unlabeled = batch["unlabeled_pixel_values"]
    teacher_a = eval_mode_logits(context.teacher, unlabeled[:, 0])
    if context.mixes:
        box = batch["cutmix_masks"][:, 0]
        student_input = mix(unlabeled[:, 0], unlabeled[:, 1], box)
        targets = unlabeled_targets(batch, teacher_a, eval_mode_logits(context.teacher, unlabeled[:, 1]), box)
    else:
        student_input, targets = unlabeled[:, 0], unlabeled_targets(batch, teacher_a)
    student_logits = model(pixel_values=student_input).logits

    (unsup,) = context.unsupervised_loss(targets.for_student(student_logits))
    context.record(sup=sup, unsup=unsup)
    return sup + context.unsup_weight * unsup


FRAMEWORK = register_framework(Framework(
    name="mean_teacher",
    step=step,
    description="mean teacher (AEL style): an EMA of the student labels the images that the student sees mixed",
    ema_decay=0.99,
))
