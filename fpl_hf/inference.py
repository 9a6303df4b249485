"""Whole-image and sliding-window inference, with optional flip (the code lives beside the model, which uses it
for its own `inference_mode`)."""

from .modeling.inference import MODES, predict_logits

__all__ = ["MODES", "predict_logits"]
