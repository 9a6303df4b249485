"""`FPLConfig`: the training arguments of semi-supervised segmentation with Fuzzy Positive Learning."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import TrainingArguments

from ..data import STRONG_VIEW_KINDS, CutMixSettings
from ..evaluation import EVALUATION_MODES, EvaluationProtocol
from .frameworks import FRAMEWORKS, Framework
from .schedule import SemiSupervisedSchedule
from .unsupervised_losses import UNSUPERVISED_LOSSES, UnsupervisedLoss


class RegistryHelp(Mapping):
    """Field metadata whose `help` lists a registry's entries as they are when the help is read, so that a framework
    or loss registered after import (e.g. in a user's file) shows in `--help`."""

    def __init__(self, subject: str, registry: dict[str, Any]):
        self.subject, self.registry = subject, registry

    def __getitem__(self, key: str) -> str:
        if key != "help":
            raise KeyError(key)
        entries = "; ".join(f"'{name}': {entry.description}" for name, entry in self.registry.items())
        return f"{self.subject}, one of {entries}."

    def __iter__(self) -> Iterator[str]:
        return iter(("help",))

    def __len__(self) -> int:
        return 1

    def copy(self) -> dict[str, str]:
        return dict(self)


@dataclass
class FPLConfig(TrainingArguments):
    r"""Training arguments of `FPLTrainer`: every `TrainingArguments` field, plus the method's own. The framework's
    and the loss's own options (FPL's `threshold`, UniMatch's `feature_dropout`, ...) are `framework_options` and
    `loss_options`: after construction each holds its entry's options dataclass, defaults filled in.

    Defaults follow the paper's CPS recipe (SGD, momentum 0.9, weight decay 1e-4 off BatchNorm and biases,
    poly 0.9 decay, T = 0.9, concave weight); the learning rate is the released code's effective 0.0025 of a
    single process. Every field, with what it does, is on the [Configuration](configuration.md) page (and in
    `run_fpl.py --help`).
    """

    framework: str = field(default="cps", metadata=RegistryHelp("Semi-supervised framework", FRAMEWORKS))
    unsup_loss: str = field(
        default="fpl", metadata=RegistryHelp("Loss on the teacher's predictions", UNSUPERVISED_LOSSES)
    )
    framework_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "The framework's own options by name, as a dict or JSON (run_fpl.py also takes each as a flag "
            "of its own, e.g. --feature_dropout); default the framework's defaults."
        },
    )
    loss_options: dict | str | None = field(
        default=None,
        metadata={
            "help": "The unsupervised loss's own options by name, as a dict or JSON (run_fpl.py also takes each "
            "as a flag of its own, e.g. --threshold 0.95); default the loss's defaults."
        },
    )
    unsup_weight: float = field(
        default=1.0, metadata={"help": "beta, the weight of the unsupervised term (CPS: 1 on VOC, 5 on Cityscapes)."}
    )
    burn_in_steps: int = field(
        default=0,
        metadata={
            "help": "Steps of supervised training before any pseudo-label: every network (both CPS branches) "
            "learns the labeled batch alone, and an EMA teacher copies the student. 0 = none (the papers)."
        },
    )
    unsup_rampup_steps: int = field(
        default=0,
        metadata={
            "help": "After burn-in, the unsupervised weight rises linearly from 0 to `unsup_weight` over these "
            "steps (0 = full weight at once). The `unsup_weight` log shows the weight in use."
        },
    )
    cutmix: bool = field(default=True, metadata={"help": "Mix unlabeled images with CutMix boxes (CPS w/ CutMix)."})
    cutmix_num_boxes: int | None = field(
        default=None, metadata={"help": "Boxes per CutMix mask; default the framework's (CPS: 3, UniMatch: 1)."}
    )
    cutmix_area_min: float | None = field(
        default=None, metadata={"help": "Smallest share of the crop that the boxes cover; default the framework's."}
    )
    cutmix_area_max: float | None = field(
        default=None, metadata={"help": "Largest share of the crop that the boxes cover; default the framework's."}
    )
    cutmix_probability: float | None = field(
        default=None, metadata={"help": "Probability of mixing at all; default the framework's."}
    )
    ema_decay: float | None = field(
        default=None,
        metadata={
            "help": "EMA teacher's decay, used as min(1 - 1/(step + 1), ema_decay); default the framework's "
            "(AEL's mean teacher 0.99)."
        },
    )
    ohem: bool = field(
        default=False, metadata={"help": "OHEM cross-entropy for the supervised loss (the Cityscapes recipe)."}
    )
    ohem_threshold: float = field(default=0.7, metadata={"help": "OHEM keeps pixels whose true-class p is below this."})
    # The released code keeps 50,000 pixels times the images of each process's batch.
    ohem_min_kept: int = field(default=50_000, metadata={"help": "OHEM keeps at least this many pixels per image."})
    per_device_unlabeled_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Unlabeled images per device and step (each with its mixing partner when the framework "
            "mixes); default `per_device_train_batch_size` (1:1, as CPS, AEL and UniMatch). A multiple r of it: "
            "each training item pairs one labeled image with r unlabeled ones."
        },
    )
    channels_last: bool = field(
        default=False,
        metadata={
            "help": "Networks and image batches in channels-last (NHWC) memory: faster convolutions on GPUs "
            "with tensor cores, above all in bf16, and on CPUs through oneDNN (a CamVid step 1.2x)."
        },
    )
    picture_images: int = field(
        default=4,
        metadata={
            "help": "At each evaluation, panels of this many validation images (image, truth, prediction) and "
            "unlabeled images (image, pseudo-label, K, prediction) go to the trackers `report_to` names "
            "(tensorboard, trackio, wandb, mlflow); 0: none."
        },
    )
    skip_data_check: bool = field(
        default=False,
        metadata={
            "help": "Skip the check of the data before training (every labeled and validation image and mask, a "
            "sample of the unlabeled pool; for a semi-supervised run, how plainly the labeled images show their "
            "class borders); a bad sample then stops the run when it is read."
        },
    )
    crop_size: int = field(default=512, metadata={"help": "Side of the square training crops."})
    scale_range: list[float] = field(
        default_factory=lambda: [0.5, 2.0], metadata={"help": "Random rescaling range of training images (min max)."}
    )
    image_size: int | None = field(
        default=None,
        metadata={
            "help": "Resize every image, in training and evaluation, so that its longer side has this many pixels "
            "(aspect kept; predictions are resized back to the mask's size and scored there); default: images as "
            "they are. With `crop_size` equal to it and a `scale_range` about 1, each training crop holds the "
            "whole image (the medical preset: whole slices, since where a pixel is tells its class)."
        },
    )
    decoded_cache_mb: int = field(
        default=1024,
        metadata={
            "help": "Training images (and masks) kept decoded and resized in memory, in MB per data-loading process, "
            "so that each file is decoded once rather than at every use; 0 decodes at every use. Items are the same "
            "either way."
        },
    )
    rotation_degrees: float = field(
        default=0.0, metadata={"help": "Training views are rotated by a random angle up to this (0 = none)."}
    )
    horizontal_flip: bool = field(default=True, metadata={"help": "Training views are flipped left-right at random."})
    strong_view_kind: str = field(
        default="color",
        metadata={
            "help": "Photometric strong views: 'color' (colour jitter, greyscale, blur: UniMatch's) or 'intensity' "
            "(brightness, contrast, gamma, noise, blur: for grey images such as MRI, CT or X-ray)."
        },
    )
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (with `optim='sgd'`)."})
    encoder_lr_ratio: float = field(
        default=1.0,
        metadata={
            "help": "Learning rate of the encoder (DeepLabv3+'s timm backbone, a transformers model's encoder) "
            "as a fraction of the head's `learning_rate`; UniMatch V2 uses 1/40 = 0.025."
        },
    )
    eval_mode: str = field(
        default="whole",
        metadata={
            "help": "Evaluation: 'whole' (each image at once), 'slide' (sliding window, the CPS recipes') or 'center' "
            "(only the central `eval_crop_size` square is scored, AEL's VOC protocol)."
        },
    )
    eval_crop_size: int | None = field(
        default=None,
        metadata={"help": "Sliding window or center crop (VOC 512, AEL 513, Cityscapes 800); default `crop_size`."},
    )
    eval_stride: int | None = field(
        default=None, metadata={"help": "Sliding-window stride; default 2/3 of the crop, rounded up (Cityscapes: 534)."}
    )
    eval_flip: bool = field(default=False, metadata={"help": "Average with the horizontally flipped prediction."})

    # Defaults of TrainingArguments changed to the paper's recipe.
    max_grad_norm: float = field(
        default=0.0, metadata={"help": "Gradient clipping; 0 = none, as in the released CPS and AEL code."}
    )
    optim: str = field(default="sgd", metadata={"help": "Optimizer; the paper uses SGD. Every HF optimizer works."})
    learning_rate: float = field(default=0.0025, metadata={"help": "Initial learning rate."})
    weight_decay: float = field(default=1e-4, metadata={"help": "Weight decay (never on BatchNorm or biases)."})
    lr_scheduler_type: str = field(default="polynomial", metadata={"help": "Learning-rate schedule."})
    lr_scheduler_kwargs: dict | str | None = field(
        default_factory=lambda: {"power": 0.9, "lr_end": 0.0}, metadata={"help": "Poly decay with power 0.9."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep the unlabeled fields of each batch (must stay False)."}
    )
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Logging integrations."})
    batch_eval_metrics: bool = field(
        default=True, metadata={"help": "Evaluation streams a confusion matrix batch by batch (must stay True)."}
    )

    def __post_init__(self) -> None:
        for name, registry in (("framework", FRAMEWORKS), ("unsup_loss", UNSUPERVISED_LOSSES)):
            if getattr(self, name) not in registry:
                raise ValueError(f"`{name}` must be one of {tuple(registry)}, got {getattr(self, name)!r}.")
        self._fill_defaults()
        self._check()
        super().__post_init__()

    def _fill_defaults(self) -> None:
        """What the framework decides where a field is left at None, and the entries' options as their dataclasses."""
        framework = self.framework_declaration
        self.framework_options = _options(framework.options, self.framework_options, "framework_options", {})
        self.loss_options = _options(
            self.unsupervised_loss.options, self.loss_options, "loss_options", framework.loss_defaults
        )
        if self.ema_decay is None:
            self.ema_decay = framework.ema_decay if framework.ema_decay is not None else 0.99
        boxes = framework.cutmix
        for name, default in (
            ("cutmix_num_boxes", boxes.num_boxes),
            ("cutmix_area_min", boxes.area_range[0]),
            ("cutmix_area_max", boxes.area_range[1]),
            ("cutmix_probability", boxes.probability),
        ):
            if getattr(self, name) is None:
                setattr(self, name, default)
        if self.per_device_unlabeled_batch_size is None:
            self.per_device_unlabeled_batch_size = self.per_device_train_batch_size
        self.eval_crop_size = self.eval_crop_size or self.crop_size
        if self.dataloader_pin_memory and not torch.accelerator.is_available():
            self.dataloader_pin_memory = False  # pinned host memory serves copies to an accelerator alone
        if self.optim == "sgd" and not self.optim_args:
            self.optim_args = f"momentum={self.momentum}"

    def _check(self) -> None:
        if self.unsup_weight < 0:
            raise ValueError(f"`unsup_weight` must be >= 0, got {self.unsup_weight}.")
        for name in ("burn_in_steps", "unsup_rampup_steps", "ohem_min_kept", "decoded_cache_mb"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {self.ema_decay}; AEL uses 0.99.")
        if not 0 <= self.encoder_lr_ratio <= 1:
            raise ValueError(
                f"`encoder_lr_ratio` must be in [0, 1], got {self.encoder_lr_ratio}; UniMatch V2 uses 0.025."
            )
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"`scale_range` must be two numbers 0 < min <= max, got {self.scale_range}.")
        unlabeled_batch = self.per_device_unlabeled_batch_size
        if unlabeled_batch < 1 or unlabeled_batch % self.per_device_train_batch_size:
            raise ValueError(
                f"`per_device_unlabeled_batch_size` ({unlabeled_batch}) must be a positive multiple of "
                f"`per_device_train_batch_size` ({self.per_device_train_batch_size}): each training item pairs one "
                "labeled image with the same number of unlabeled ones."
            )
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"`image_size` must be >= 8 (or unset: images as they are), got {self.image_size}.")
        if self.rotation_degrees < 0:
            raise ValueError(f"`rotation_degrees` must be >= 0, got {self.rotation_degrees}.")
        if self.strong_view_kind not in STRONG_VIEW_KINDS:
            raise ValueError(f"`strong_view_kind` must be one of {STRONG_VIEW_KINDS}, got {self.strong_view_kind!r}.")
        if self.max_steps > 0:
            self.check_burn_in(self.max_steps)
        if self.crop_size < 8:
            raise ValueError(f"`crop_size` must be >= 8, got {self.crop_size}.")
        if self.eval_mode not in EVALUATION_MODES:
            raise ValueError(f"`eval_mode` must be one of {EVALUATION_MODES}, got {self.eval_mode!r}.")
        try:
            _ = self.evaluation_protocol  # built here so that bad settings fail now, not at the first evaluation
        except ValueError as error:
            raise ValueError(f"`eval_crop_size` / `eval_stride`: {error}") from None
        if self.remove_unused_columns:
            raise ValueError("`remove_unused_columns` must be False: the unlabeled fields are not model inputs.")
        if not self.batch_eval_metrics:
            raise ValueError("`batch_eval_metrics` must be True: evaluation streams a confusion matrix.")
        if self.framework_declaration.always_mixes and not self.cutmix:
            raise ValueError(
                f"`cutmix=False` does not apply to {self.framework!r}, whose strong views are always mixed."
            )
        if not 0 < self.cutmix_area_min <= self.cutmix_area_max < 1:
            raise ValueError(
                f"`cutmix_area_min`/`cutmix_area_max` must satisfy 0 < min <= max < 1, got "
                f"{self.cutmix_area_min}/{self.cutmix_area_max}."
            )
        if self.cutmix_num_boxes < 1 or not 0 <= self.cutmix_probability <= 1:
            raise ValueError("`cutmix_num_boxes` must be >= 1 and `cutmix_probability` in [0, 1].")

    def check_burn_in(self, num_training_steps: int) -> None:
        """Refuses a semi-supervised run whose burn-in covers all `num_training_steps`: it would never train on an
        unlabeled image. Checked when the config is made where `max_steps` is set, else once the trainer knows."""
        if self.framework_declaration.unlabeled and self.burn_in_steps >= num_training_steps:
            raise ValueError(
                f"`burn_in_steps` ({self.burn_in_steps}) covers all {num_training_steps} steps of this run: "
                f"framework {self.framework!r} would never see an unlabeled image. Lower `burn_in_steps`, train "
                "longer, or train `--framework supervised`."
            )

    @property
    def evaluation_protocol(self) -> EvaluationProtocol:
        return EvaluationProtocol(
            self.eval_mode, self.eval_crop_size, self.eval_stride, self.eval_flip, image_size=self.image_size
        )

    @property
    def framework_declaration(self) -> Framework:
        """What the chosen framework consumes, keeps and defaults to (`fpl_hf.trainer.frameworks`)."""
        return FRAMEWORKS[self.framework]

    @property
    def unsupervised_loss(self) -> UnsupervisedLoss:
        """The entry of the chosen loss (`fpl_hf.trainer.UNSUPERVISED_LOSSES`)."""
        return UNSUPERVISED_LOSSES[self.unsup_loss]

    @property
    def schedule(self) -> SemiSupervisedSchedule:
        return SemiSupervisedSchedule(self.burn_in_steps, self.unsup_rampup_steps, self.unsup_weight)

    def train_dataset_options(self) -> dict[str, Any]:
        """The training set's arguments (`fpl_hf.data.training_dataset`) this config decides: crops, scales, the
        unlabeled images and views the framework consumes, how many per labeled one, its CutMix boxes and the seed."""
        return dict(
            crop_size=self.crop_size,
            unlabeled_groups=self.per_device_unlabeled_batch_size // self.per_device_train_batch_size,
            scale_range=tuple(self.scale_range),
            image_size=self.image_size,
            rotation_degrees=self.rotation_degrees,
            horizontal_flip=self.horizontal_flip,
            strong_view_kind=self.strong_view_kind,
            decoded_cache_bytes=self.decoded_cache_mb * 2**20,
            **self.framework_declaration.data_options(self.cutmix, self.framework_options),
            cutmix=CutMixSettings(
                self.cutmix_num_boxes, (self.cutmix_area_min, self.cutmix_area_max), self.cutmix_probability
            ),
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        values = super().to_dict()
        for name in ("framework_options", "loss_options"):
            values[name] = dataclasses.asdict(values[name])
        return values


def _options(options_type: type, given: Any, name: str, defaults: dict[str, Any]) -> Any:
    """An instance of an entry's options dataclass from what the user gave (an instance, a dict or JSON, or None),
    with `defaults` where the given value leaves an option at None."""
    if isinstance(given, options_type):
        values = dataclasses.asdict(given)
    else:
        values = json.loads(given) if isinstance(given, str) else dict(given or {})
    known = {option.name for option in dataclasses.fields(options_type)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"`{name}`: unknown options {unknown}; {options_type.__name__} has {sorted(known)}.")
    for option, default in defaults.items():
        if option in known and values.get(option) is None:
            values[option] = default
    return options_type(**values)


__all__ = ["FPLConfig", "RegistryHelp"]
