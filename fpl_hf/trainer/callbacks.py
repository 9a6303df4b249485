"""Callbacks of `FPLTrainer`: the EMA teacher's update (like TRL's SyncRefModelCallback) and the data's epoch."""

from __future__ import annotations

import math

import torch
from torch import nn
from transformers import TrainerCallback

from .schedule import SemiSupervisedSchedule


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """teacher = decay * teacher + (1 - decay) * student, for parameters and float buffers (BatchNorm's
    running statistics), in one multi-tensor operation; integer buffers (`num_batches_tracked`) are copied."""
    pairs = list(zip(teacher.state_dict().values(), student.state_dict().values()))
    floats = [(mine, theirs.to(mine.dtype)) for mine, theirs in pairs if mine.is_floating_point()]
    integers = [(mine, theirs) for mine, theirs in pairs if not mine.is_floating_point()]
    if floats:
        torch._foreach_lerp_(*map(list, zip(*floats)), 1.0 - decay)
    if integers:
        torch._foreach_copy_(*map(list, zip(*integers)))


class EMATeacherCallback(TrainerCallback):
    """After every optimizer step, moves the teacher towards the student with AEL's decay min(1 - 1/(i + 1), max),
    i counting the updates of the semi-supervised phase from 0 (the first one copies the student); during burn-in
    the teacher copies the student."""

    def __init__(self, teacher: nn.Module, max_decay: float, schedule: SemiSupervisedSchedule):
        self.teacher, self.max_decay, self.schedule = teacher, max_decay, schedule

    def on_step_end(self, args, state, control, model=None, **kwargs):
        update = self.schedule.updates_after_burn_in(state.global_step)
        ema_update(self.teacher, model, min(1.0 - 1.0 / (update + 1), self.max_decay))


class DatasetEpochCallback(TrainerCallback):
    """Tells the training set the epoch, so its per-item augmentation seeds change from epoch to epoch.

    accelerate only forwards the epoch to a dataset when the sampler cannot take it, which the Trainer's can.
    `state.epoch` is fractional when resuming mid-epoch; its floor is the epoch being run.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-9))


__all__ = ["DatasetEpochCallback", "EMATeacherCallback", "ema_update"]
