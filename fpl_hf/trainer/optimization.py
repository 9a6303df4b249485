"""The optimizer of `FPLTrainer`: no weight decay on norms and biases, the encoder at its own learning rate, AdamW
fused on CUDA; its schedule refuses a burn-in that covers the run; the gradient norm is taken only where logged."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.trainer_pt_utils import get_parameter_names
from transformers.trainer_utils import IntervalStrategy

from ..modeling import SegmentationNetwork


class SegmentationOptimizer:
    """A `Trainer` mixin building the optimizer of segmentation networks (the released methods' recipe) and its
    schedule, and taking the gradient norm only at the steps that log it."""

    def get_decay_parameter_names(self, model: nn.Module) -> list[str]:
        """Weight decay on weights only: never on BatchNorm, GroupNorm, LayerNorm parameters or biases."""
        norms = [nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm]
        return [name for name in get_parameter_names(model, norms) if not name.endswith("bias")]

    @staticmethod
    def get_optimizer_cls_and_kwargs(args: TrainingArguments, model: nn.Module | None = None) -> tuple[Any, dict]:
        """Trainer's; PyTorch's AdamW runs fused (one kernel for all parameters) on CUDA."""
        optimizer_class, kwargs = Trainer.get_optimizer_cls_and_kwargs(args, model)
        if optimizer_class is torch.optim.AdamW and args.device.type == "cuda" and "foreach" not in kwargs:
            kwargs = {**kwargs, "fused": True}
        return optimizer_class, kwargs

    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        """Trainer's optimizer; with `encoder_lr_ratio` != 1 each group is split so that the encoder's parameters
        (each network's `encoder_module`) learn at that fraction of the learning rate."""
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        ratio = self.args.encoder_lr_ratio
        if fresh and ratio != 1.0:
            trained = model if model is not None else self.model
            networks = [m for m in trained.modules() if isinstance(m, SegmentationNetwork) and m.encoder_module]
            encoder = {id(p) for m in networks for p in m.get_submodule(m.encoder_module).parameters()}
            if not encoder:
                raise ValueError(
                    "`encoder_lr_ratio` needs the model's encoder, which fpl_hf does not know for "
                    f"{type(self._inference_model(self.model)).__name__}; leave it at 1."
                )
            for group in list(optimizer.param_groups):
                slower = [p for p in group["params"] if id(p) in encoder]
                group["params"] = [p for p in group["params"] if id(p) not in encoder]
                if slower:
                    optimizer.add_param_group({**group, "params": slower, "lr": group["lr"] * ratio})
        return optimizer

    def _get_grad_norm(self, model: nn.Module, grad_norm: torch.Tensor | float | None = None):
        """Trainer's gradient norm for the logs, which is a pass over every gradient when nothing is clipped: taken
        only at the steps that log it (benchmarks/bench_overhead.py's profile found it the trainer's one extra cost
        over a plain loop, 6 ms of a 120 ms step on 2 CPU threads)."""
        if grad_norm is None and not self._logs_after_this_step():
            return None
        return super()._get_grad_norm(model, grad_norm=grad_norm)

    def _logs_after_this_step(self) -> bool:
        """Whether the default flow logs once the current step ends (epoch-wise logging: always, to be safe)."""
        step, args = self.state.global_step + 1, self.args
        if args.logging_strategy == IntervalStrategy.EPOCH:
            return True
        every_n = args.logging_strategy == IntervalStrategy.STEPS and step % self.state.logging_steps == 0
        return every_n or (step == 1 and args.logging_first_step)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """Trainer's, called once the run's length is known: a semi-supervised run whose burn-in covers every step
        would never train on an unlabeled image, so it is refused here, before the first step."""
        self.args.check_burn_in(num_training_steps)
        return super().create_scheduler(num_training_steps, optimizer)


__all__ = ["SegmentationOptimizer"]
