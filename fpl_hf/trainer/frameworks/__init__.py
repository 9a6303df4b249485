"""Semi-supervised frameworks, one module each: its step and its `Framework` declaration, which it registers."""

from .base import (
    FRAMEWORKS, Framework, NetworkPair, NoOptions, PseudoLabelPair, SemiSupervisedBatch, StepContext, Targets,
    register_framework,
)
from . import supervised, cps, mean_teacher, unimatch, unimatch_v2  # noqa: E402,F401  (each registers itself)

__all__ = [
    "FRAMEWORKS", "Framework", "NetworkPair", "NoOptions", "PseudoLabelPair", "SemiSupervisedBatch", "StepContext",
    "Targets", "register_framework",
]
