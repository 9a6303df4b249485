"""Semi-supervised frameworks, one module each: its step and its `Framework` declaration, which it registers."""

from . import cps, mean_teacher, supervised, unimatch, unimatch_v2  # noqa: E402,F401  (each registers itself)
from .base import (
    FRAMEWORKS,
    Framework,
    NetworkPair,
    NoOptions,
    PseudoLabelPair,
    SemiSupervisedBatch,
    StepContext,
    Targets,
    register_framework,
)

__all__ = [
    "FRAMEWORKS",
    "Framework",
    "NetworkPair",
    "NoOptions",
    "PseudoLabelPair",
    "SemiSupervisedBatch",
    "StepContext",
    "Targets",
    "register_framework",
]
