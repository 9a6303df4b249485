"""Callbacks of `FPLTrainer`: the EMA teacher's update (like TRL's SyncRefModelCallback) and the data's epoch."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

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


PROGRESS_FILE = "progress.json"


class ProgressCallback(TrainerCallback):
    """Keeps `progress.json` in the output directory: the step, the run's length, the seconds since the start and
    the latest validation mIoU, so that whoever started the run (`compare.py`, a SLURM job's owner) can follow it.
    Written whole or not at all (a temporary file renamed)."""

    def __init__(self):
        self.start, self.evaluation = time.perf_counter(), {}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if metrics and "eval_mean_iou" in metrics:
            self.evaluation = {"eval_mean_iou": metrics["eval_mean_iou"], "eval_step": state.global_step}
        self.on_log(args, state, control)

    def on_log(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        path = Path(args.output_dir, PROGRESS_FILE)
        path.parent.mkdir(parents=True, exist_ok=True)
        progress = {"step": state.global_step, "max_steps": state.max_steps, **self.evaluation}
        progress["seconds"] = time.perf_counter() - self.start
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(progress))
        os.replace(temporary, path)


__all__ = ["PROGRESS_FILE", "DatasetEpochCallback", "EMATeacherCallback", "ProgressCallback", "ema_update"]
