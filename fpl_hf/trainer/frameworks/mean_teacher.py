"""Mean teacher in the AEL style: an EMA teacher labels unmixed images, the student learns on their CutMix (of strong
views by default, `StudentViews`)."""

from __future__ import annotations

import torch
from torch import nn

from .base import (
    STUDENT_VIEWS,
    Framework,
    SemiSupervisedBatch,
    StepContext,
    StudentViews,
    eval_mode_logits,
    mix,
    register_framework,
    strong_views_pass,
    student_images,
    total_loss,
    unlabeled_targets,
)


def step(context: StepContext[StudentViews], model: nn.Module, batch: SemiSupervisedBatch) -> torch.Tensor:
    sup = context.supervised_loss(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])

    # The teacher labels the weak views; the student learns on its own (strong or weak) views, mixed by the box.
    unlabeled, views = batch["unlabeled_pixel_values"], student_images(batch, context.options.strong_views)
    teacher_a = eval_mode_logits(context.teacher, unlabeled[:, 0])
    if context.mixes:
        box = batch["cutmix_masks"][:, 0]
        student_input = mix(views[:, 0], views[:, 1], box)
        targets = unlabeled_targets(batch, teacher_a, eval_mode_logits(context.teacher, unlabeled[:, 1]), box)
    else:
        student_input, targets = views[:, 0], unlabeled_targets(batch, teacher_a)
    with strong_views_pass(context, model):
        student_logits = model(pixel_values=student_input).logits

    (unsup,) = context.unsupervised_loss(targets.for_student(student_logits))
    return total_loss(context, sup, unsup)


FRAMEWORK = register_framework(
    Framework(
        name="mean_teacher",
        step=step,
        description="mean teacher (AEL style): an EMA of the student labels the images that the student sees mixed",
        **STUDENT_VIEWS,
        ema_decay=0.99,
    )
)
