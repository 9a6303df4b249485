from .callbacks import EMATeacherCallback, ema_update
from .fpl_config import FRAMEWORKS, UNSUP_LOSSES, FPLConfig
from .fpl_trainer import BranchPair, FPLTrainer

__all__ = ["BranchPair", "EMATeacherCallback", "FPLConfig", "FPLTrainer", "FRAMEWORKS", "UNSUP_LOSSES", "ema_update"]
