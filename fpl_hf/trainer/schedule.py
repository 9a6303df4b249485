"""Burn-in and ramp-up: where a run is in its schedule, asked by the trainer and the EMA teacher alike."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SemiSupervisedSchedule:
    """Supervised burn-in for the first `burn_in_steps` steps, then the unsupervised weight rises linearly from 0 to
    `unsup_weight` over `rampup_steps` (0: full weight at once). Steps count from 0, as `state.global_step` before
    the step is taken."""

    burn_in_steps: int = 0
    rampup_steps: int = 0
    unsup_weight: float = 1.0

    def in_burn_in(self, step: int) -> bool:
        return step < self.burn_in_steps

    def weight(self, step: int) -> float:
        """beta at `step`: 0 during burn-in, then rising linearly to `unsup_weight` over the ramp-up."""
        steps_after_burn_in = step - self.burn_in_steps + 1
        if steps_after_burn_in <= 0:
            return 0.0
        if steps_after_burn_in >= self.rampup_steps:
            return self.unsup_weight
        return self.unsup_weight * steps_after_burn_in / self.rampup_steps

    def updates_after_burn_in(self, steps_done: int) -> int:
        """How many optimizer steps of the semi-supervised phase `steps_done` steps hold, less one (0 up to and at
        the first): the index of an EMA teacher's update."""
        return max(steps_done - 1 - self.burn_in_steps, 0)


__all__ = ["SemiSupervisedSchedule"]
