from .callbacks import EMATeacherCallback, ema_update
from .fpl_config import FPLConfig
from .fpl_trainer import FPLTrainer
from .frameworks import FRAMEWORKS, BranchPair, Framework, reinitialized_head_copy
from .unsupervised_losses import UNSUPERVISED_LOSSES

__all__ = [
    "BranchPair", "EMATeacherCallback", "FPLConfig", "FPLTrainer", "FRAMEWORKS", "Framework", "UNSUPERVISED_LOSSES",
    "ema_update", "reinitialized_head_copy",
]
