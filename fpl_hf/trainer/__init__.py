from .callbacks import EMATeacherCallback, ema_update
from .fpl_config import FPLConfig
from .fpl_trainer import FPLTrainer
from .frameworks import FRAMEWORKS, Framework, NoOptions, register_framework
from .frameworks.cps import BranchPair, reinitialized_head_copy
from .unsupervised_losses import UNSUPERVISED_LOSSES, UnsupervisedLoss, register_loss

__all__ = [
    "FRAMEWORKS",
    "UNSUPERVISED_LOSSES",
    "BranchPair",
    "EMATeacherCallback",
    "FPLConfig",
    "FPLTrainer",
    "Framework",
    "NoOptions",
    "UnsupervisedLoss",
    "ema_update",
    "register_framework",
    "register_loss",
    "reinitialized_head_copy",
]
