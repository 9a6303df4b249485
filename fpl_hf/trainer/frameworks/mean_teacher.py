"""Mean teacher in the AEL style: an EMA teacher labels unmixed images, the student learns on their CutMix."""

from __future__ import annotations

import torch

from .common import eval_mode_logits, mix


def step(trainer, model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    sup = trainer.supervised_loss(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])

    unlabeled, valid, hidden = batch["unlabeled_pixel_values"], batch["unlabeled_valid"], batch["unlabeled_labels"]
    teacher_a = eval_mode_logits(trainer.teacher, unlabeled[:, 0])
    if trainer.args.cutmix:
        box = batch["cutmix_masks"][:, 0]
        student_input = mix(unlabeled[:, 0], unlabeled[:, 1], box)
        teacher_logits = mix(teacher_a, eval_mode_logits(trainer.teacher, unlabeled[:, 1]), box)
        valid, hidden = mix(valid[:, 0], valid[:, 1], box), mix(hidden[:, 0], hidden[:, 1], box)
    else:
        student_input, teacher_logits, valid, hidden = unlabeled[:, 0], teacher_a, valid[:, 0], hidden[:, 0]
    student_logits = model(pixel_values=student_input).logits

    (unsup,) = trainer.unsupervised_loss((student_logits, teacher_logits, valid, hidden))
    trainer.record(sup=sup, unsup=unsup)
    return sup + trainer.unsup_weight * unsup
