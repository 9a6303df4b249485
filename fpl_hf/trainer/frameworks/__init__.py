"""One module per framework; each `step(trainer, model, batch)` returns the step's total loss."""

from . import cps, mean_teacher, supervised, unimatch

STEPS = {"supervised": supervised.step, "cps": cps.step, "mean_teacher": mean_teacher.step, "unimatch": unimatch.step}

__all__ = ["STEPS"]
