"""Pictures in the user's tracker: at each evaluation, panels of a fixed handful of validation and unlabeled images,
logged through the integrations transformers already has (TensorBoard, trackio, W&B, MLflow)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from datasets import Dataset
from PIL import Image
from transformers import TrainerCallback
from transformers.integrations import MLflowCallback, TensorBoardCallback, TrackioCallback, WandbCallback

from ..data import DIAGNOSTIC_LABEL, normalize_images
from ..data.samples import load_sample
from ..viz import colorize, colorize_k
from .frameworks import PseudoLabelPair

# Panels are scaled up (nearest) to at least this height, so that small crops show in a tracker's page.
MIN_HEIGHT = 128


def _strip(pictures: list[Image.Image]) -> np.ndarray:
    """The pictures side by side, scaled up to MIN_HEIGHT, as an (H, W, 3) uint8 array."""
    height = pictures[0].height
    factor = max(1, -(-MIN_HEIGHT // height))
    scaled = [
        picture.convert("RGB").resize((picture.width * factor, height * factor), Image.NEAREST) for picture in pictures
    ]
    return np.concatenate([np.asarray(picture) for picture in scaled], axis=1)


class TrackerPictures(TrainerCallback):
    """At each evaluation, one panel per image of the first `count` validation images (image | truth | prediction)
    and of the first `count` unlabeled images of a map-style pool (image | pseudo-label | K | prediction, K as the
    run's unsupervised loss would train that pixel: its fuzzy set size for FPL), to every tracker `report_to` names.
    The pseudo-labels are the EMA teacher's where the framework keeps one, else the evaluated network's own."""

    def __init__(self, trainer: Any, count: int):
        self.trainer, self.count = trainer, count

    def on_evaluate(self, args, state, control, **kwargs):
        trackers = [
            callback
            for callback in self.trainer.callback_handler.callbacks
            if isinstance(callback, (TensorBoardCallback, TrackioCallback, WandbCallback, MLflowCallback))
        ]
        if not trackers or not state.is_world_process_zero:
            return
        pictures = self.panels()
        for tracker in trackers:
            if isinstance(tracker, TensorBoardCallback) and tracker.tb_writer is not None:
                for tag, picture in pictures.items():
                    tracker.tb_writer.add_image(tag, picture, state.global_step, dataformats="HWC")
                tracker.tb_writer.flush()
            elif isinstance(tracker, TrackioCallback) and tracker._initialized:
                tracker._trackio.log(
                    {tag: tracker._trackio.Image(p) for tag, p in pictures.items()}, step=state.global_step
                )
            elif isinstance(tracker, WandbCallback) and tracker._initialized:
                tracker._wandb.log(
                    {
                        **{tag: tracker._wandb.Image(p) for tag, p in pictures.items()},
                        "train/global_step": state.global_step,
                    }
                )
            elif isinstance(tracker, MLflowCallback) and tracker._initialized:
                for tag, picture in pictures.items():
                    tracker._ml_flow.log_image(picture, f"{tag}/step_{state.global_step:07d}.png")

    @torch.no_grad()
    def panels(self) -> dict[str, np.ndarray]:
        trainer = self.trainer
        network = trainer._evaluated_network(trainer.model)
        teacher = trainer.teacher if trainer.teacher is not None else network
        items, num_labels = trainer.train_dataset, trainer.num_labels
        device = next(network.parameters()).device
        was_training = network.training
        network.eval()
        pictures = {}
        sources = [("validation", trainer.eval_dataset.dataset, "label")] if trainer.eval_dataset is not None else []
        if items is not None and isinstance(items.unlabeled, Dataset) and items.num_unlabeled:
            sources.append(("unlabeled", items.unlabeled, DIAGNOSTIC_LABEL))
        for kind, dataset, label_column in sources:
            for index in range(min(self.count, len(dataset))):
                image, label = load_sample(dataset, index, label_column, kind, num_labels, items.palette)
                pixels = normalize_images(image[None].to(device), items.image_mean, items.image_std)
                shown = Image.fromarray(image.permute(1, 2, 0).numpy())
                prediction = colorize(network.segment(pixels).argmax(1)[0].cpu().numpy(), num_labels)
                if kind == "validation":
                    strip = [shown, colorize(label.numpy(), num_labels), prediction]
                else:
                    target = teacher.segment(pixels)
                    valid = torch.ones(target.shape[:1] + target.shape[2:], dtype=torch.bool, device=device)
                    pair = PseudoLabelPair(target, target, valid, torch.full_like(valid, 255, dtype=torch.long))
                    (output,) = trainer.args.unsupervised_loss.compute([pair], trainer.args.loss_options)
                    strip = [
                        shown,
                        colorize(target.argmax(1)[0].cpu().numpy(), num_labels),
                        colorize_k(output.k[0].cpu().numpy()),
                        prediction,
                    ]
                pictures[f"{kind}/{index}"] = _strip(strip)
        network.train(was_training)
        return pictures


__all__ = ["TrackerPictures"]
