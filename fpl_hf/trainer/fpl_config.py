"""`FPLConfig`: the training arguments of semi-supervised segmentation with Fuzzy Positive Learning."""


from dataclasses import dataclass, field
from typing import Any, Optional

from transformers import TrainingArguments

from ..data import CutMixSettings
from ..evaluation import EVALUATION_MODES, EvaluationProtocol
from ..losses import SEMANTICS, WEIGHTS, check_threshold
from .frameworks import FRAMEWORKS, Framework
from .unsupervised_losses import UNSUPERVISED_LOSSES


@dataclass
class FPLConfig(TrainingArguments):
    r"""Training arguments of `FPLTrainer`: every `TrainingArguments` field, plus the method's own.

    Defaults follow the paper's CPS recipe (SGD, momentum 0.9, weight decay 1e-4 off BatchNorm and biases,
    poly 0.9 decay, T = 0.9, concave weight); the learning rate is the released code's effective 0.0025 of a
    single process.
    """

    framework: str = field(
        default="cps",
        metadata={"help": "Semi-supervised framework: 'supervised' (labeled only), 'cps' (cross pseudo supervision), "
                  "'mean_teacher' (AEL-style EMA teacher), 'unimatch' (weak-to-strong with feature perturbation) or "
                  "'unimatch_v2' (EMA teacher, complementary channel dropout)."},
    )
    unsup_loss: str = field(
        default="fpl",
        metadata={"help": "Loss on pseudo-labels: 'fpl' (fuzzy positive learning) or 'ce' (vanilla cross-entropy)."},
    )
    threshold: float = field(
        default=0.9,
        metadata={"help": "FPL's T in (0, 1): the fuzzy set is the smallest top-n reaching T, minus one. "
                  "The paper uses 0.95 at 1/32 labels and 0.9 otherwise."},
    )
    fpl_weight: str = field(
        default="concave",
        metadata={"help": "Adaptive weight of each pixel's fuzzy set: 'concave' (paper's best), 'linear', "
                  "'convex' or 'none'."},
    )
    semantics: str = field(
        default="code",
        metadata={"help": "'code' (released code: cum >= T, K <= 3, top-(K+1) weight mean) or 'paper' "
                  "(cum > T, K uncapped, top-K mean)."},
    )
    kmax: Optional[int] = field(default=None, metadata={"help": "Cap on K, overriding the semantics' own."})
    concave_a: float = field(default=50.0, metadata={"help": "A, the steepness of the concave weight."})
    balance_to_ce: bool = field(
        default=False,
        metadata={"help": "Rescale the FPL term to the value of the vanilla pseudo-label cross-entropy (detached "
                  "ratio), as the released code does; the gradient stays FPL's."},
    )
    unsup_weight: float = field(
        default=1.0, metadata={"help": "beta, the weight of the unsupervised term (CPS: 1 on VOC, 5 on Cityscapes)."}
    )
    burn_in_steps: int = field(
        default=0,
        metadata={"help": "Steps of supervised training before any pseudo-label: every network (both CPS branches) "
                  "learns the labeled batch alone, and the mean teacher copies the student. 0 = none (the papers)."},
    )
    unsup_rampup_steps: int = field(
        default=0,
        metadata={"help": "After burn-in, the unsupervised weight rises linearly from 0 to `unsup_weight` over these "
                  "steps (0 = full weight at once). The `unsup_weight` log shows the weight in use."},
    )
    cutmix: bool = field(default=True, metadata={"help": "Mix unlabeled images with CutMix boxes (CPS w/ CutMix)."})
    cutmix_num_boxes: Optional[int] = field(
        default=None, metadata={"help": "Boxes per CutMix mask; default 3 (CPS, mean teacher) or 1 (UniMatch, V2)."}
    )
    cutmix_area_min: Optional[float] = field(
        default=None, metadata={"help": "Smallest share of the crop that the boxes cover; default 0.25 or 0.02."}
    )
    cutmix_area_max: Optional[float] = field(
        default=None, metadata={"help": "Largest share of the crop that the boxes cover; default 0.5 or 0.4."}
    )
    cutmix_probability: Optional[float] = field(
        default=None, metadata={"help": "Probability of mixing at all; default 1.0 or 0.5 (UniMatch)."}
    )
    ema_decay: Optional[float] = field(
        default=None,
        metadata={"help": "EMA teacher's decay, used as min(1 - 1/(step + 1), ema_decay); default 0.99 (mean teacher, "
                  "AEL) or 0.996 (UniMatch V2)."},
    )
    confidence_threshold: Optional[float] = field(
        default=None,
        metadata={"help": "Confidence threshold of the 'ce' baseline; default 0.95 for UniMatch (V1 and V2) and 0 "
                  "(none) for CPS and the mean teacher, as in their papers. FPL does not use it."},
    )
    feature_dropout: float = field(
        default=0.5, metadata={"help": "UniMatch: dropout rate of the feature-perturbation branch."}
    )
    ohem: bool = field(
        default=False, metadata={"help": "OHEM cross-entropy for the supervised loss (the Cityscapes recipe)."}
    )
    ohem_threshold: float = field(default=0.7, metadata={"help": "OHEM keeps pixels whose true-class p is below this."})
    ohem_min_kept: int = field(
        default=50_000,
        metadata={"help": "OHEM keeps at least this many pixels per image (the released code: 50,000 x the images of "
                  "each process's batch)."},
    )
    per_device_unlabeled_batch_size: Optional[int] = field(
        default=None,
        metadata={"help": "Unlabeled images per device and step (each with its mixing partner when the framework "
                  "mixes); default `per_device_train_batch_size` (1:1, as CPS, AEL and UniMatch). A multiple r of it: "
                  "each training item pairs one labeled image with r unlabeled ones."},
    )
    crop_size: int = field(default=512, metadata={"help": "Side of the square training crops."})
    scale_range: list[float] = field(
        default_factory=lambda: [0.5, 2.0], metadata={"help": "Random rescaling range of training images (min max)."}
    )
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (with `optim='sgd'`)."})
    encoder_lr_ratio: float = field(
        default=1.0,
        metadata={"help": "Learning rate of the encoder (DeepLabv3+'s timm backbone, a transformers model's encoder) "
                  "as a fraction of the head's `learning_rate`; UniMatch V2 uses 1/40 = 0.025."},
    )
    eval_mode: str = field(
        default="whole",
        metadata={
            "help": "Evaluation: 'whole' (each image at once), 'slide' (sliding window, the CPS recipes') or 'center' "
            "(only the central `eval_crop_size` square is scored, AEL's VOC protocol)."
        },
    )
    eval_crop_size: Optional[int] = field(
        default=None,
        metadata={"help": "Sliding window or center crop (VOC 512, AEL 513, Cityscapes 800); default `crop_size`."},
    )
    eval_stride: Optional[int] = field(
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
        checks = [
            ("framework", self.framework, tuple(FRAMEWORKS)),
            ("unsup_loss", self.unsup_loss, tuple(UNSUPERVISED_LOSSES)),
            ("fpl_weight", self.fpl_weight, WEIGHTS),
            ("semantics", self.semantics, SEMANTICS),
        ]
        for name, value, choices in checks:
            if value not in choices:
                raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")
        check_threshold(self.threshold)
        framework = self.framework_declaration
        if self.kmax is not None and self.kmax < 1:
            raise ValueError(f"`kmax` must be >= 1 or None, got {self.kmax}.")
        if self.unsup_weight < 0:
            raise ValueError(f"`unsup_weight` must be >= 0, got {self.unsup_weight}.")
        for name in ("burn_in_steps", "unsup_rampup_steps", "ohem_min_kept"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        self.ema_decay = self.ema_decay if self.ema_decay is not None else (framework.ema_decay or 0.99)
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {self.ema_decay}; AEL uses 0.99.")
        if not 0 <= self.feature_dropout < 1:
            raise ValueError(f"`feature_dropout` must be in [0, 1), got {self.feature_dropout}.")
        if not 0 <= self.encoder_lr_ratio <= 1:
            raise ValueError(f"`encoder_lr_ratio` must be in [0, 1], got {self.encoder_lr_ratio}; UniMatch V2 uses 0.025.")
        if len(self.scale_range) != 2 or not 0 < self.scale_range[0] <= self.scale_range[1]:
            raise ValueError(f"`scale_range` must be two numbers 0 < min <= max, got {self.scale_range}.")
        if self.per_device_unlabeled_batch_size is None:
            self.per_device_unlabeled_batch_size = self.per_device_train_batch_size
        unlabeled_batch = self.per_device_unlabeled_batch_size
        if unlabeled_batch < 1 or unlabeled_batch % self.per_device_train_batch_size:
            raise ValueError(
                f"`per_device_unlabeled_batch_size` ({self.per_device_unlabeled_batch_size}) must be a positive multiple "
                f"of `per_device_train_batch_size` ({self.per_device_train_batch_size}): each training item pairs one "
                "labeled image with the same number of unlabeled ones."
            )
        if self.crop_size < 8:
            raise ValueError(f"`crop_size` must be >= 8, got {self.crop_size}.")
        if self.eval_mode not in EVALUATION_MODES:
            raise ValueError(f"`eval_mode` must be one of {EVALUATION_MODES}, got {self.eval_mode!r}.")
        self.eval_crop_size = self.eval_crop_size or self.crop_size
        try:
            _ = self.evaluation_protocol  # built here so that bad settings fail now, not at the first evaluation
        except ValueError as error:
            raise ValueError(f"`eval_crop_size` / `eval_stride`: {error}") from None
        if self.remove_unused_columns:
            raise ValueError("`remove_unused_columns` must be False: the unlabeled fields are not model inputs.")
        if not self.batch_eval_metrics:
            raise ValueError("`batch_eval_metrics` must be True: evaluation streams a confusion matrix.")
        if framework.always_mixes and not self.cutmix:
            raise ValueError(f"`cutmix=False` does not apply to {self.framework!r}, whose strong views are always mixed.")
        boxes = framework.cutmix
        self.cutmix_num_boxes = boxes.num_boxes if self.cutmix_num_boxes is None else self.cutmix_num_boxes
        self.cutmix_area_min = boxes.area_range[0] if self.cutmix_area_min is None else self.cutmix_area_min
        self.cutmix_area_max = boxes.area_range[1] if self.cutmix_area_max is None else self.cutmix_area_max
        self.cutmix_probability = boxes.probability if self.cutmix_probability is None else self.cutmix_probability
        if not 0 < self.cutmix_area_min <= self.cutmix_area_max < 1:
            raise ValueError(
                f"`cutmix_area_min`/`cutmix_area_max` must satisfy 0 < min <= max < 1, got "
                f"{self.cutmix_area_min}/{self.cutmix_area_max}."
            )
        if self.cutmix_num_boxes < 1 or not 0 <= self.cutmix_probability <= 1:
            raise ValueError("`cutmix_num_boxes` must be >= 1 and `cutmix_probability` in [0, 1].")
        if self.confidence_threshold is None:
            self.confidence_threshold = framework.confidence_threshold
        check_threshold(self.confidence_threshold, allow_zero=True)
        if self.optim == "sgd" and not self.optim_args:
            self.optim_args = f"momentum={self.momentum}"
        super().__post_init__()

    @property
    def evaluation_protocol(self) -> EvaluationProtocol:
        return EvaluationProtocol(self.eval_mode, self.eval_crop_size, self.eval_stride, self.eval_flip)

    @property
    def framework_declaration(self) -> Framework:
        """What the chosen framework consumes, keeps and defaults to (`fpl_hf.trainer.frameworks`)."""
        return FRAMEWORKS[self.framework]

    def train_dataset_options(self) -> dict[str, Any]:
        """The training set's arguments (`fpl_hf.data.training_dataset`) this config decides: crops, scales, the
        unlabeled images and views the framework consumes, how many per labeled one, its CutMix boxes and the seed."""
        return dict(
            crop_size=self.crop_size,
            unlabeled_groups=self.per_device_unlabeled_batch_size // self.per_device_train_batch_size,
            scale_range=tuple(self.scale_range),
            **self.framework_declaration.data_options(self.cutmix),
            cutmix=CutMixSettings(
                self.cutmix_num_boxes, (self.cutmix_area_min, self.cutmix_area_max), self.cutmix_probability
            ),
            seed=self.seed,
        )


__all__ = ["FPLConfig"]
