"""The contract between `FPLTrainer` and a framework: the declaration, the batch, what a step may call, and the
pieces that steps share (CutMix on images and targets, teacher passes)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import (
    Any,
    Generic,
    NamedTuple,
    Protocol,
    TypedDict,
    TypeVar,
    runtime_checkable,
)

import torch
from torch import nn

from ...data import CutMixSettings
from ...modeling import SegmentationNetwork


class PseudoLabelPair(NamedTuple):
    """One term of a pseudo-label loss: what the student predicts and what its teacher predicts for it.

    `valid` (B, H, W) is False on crop padding, which is never a pseudo-label; `diagnostic_labels` (B, H, W) are the
    unlabeled images' own labels where known (255 elsewhere), for the logged statistics only, never a loss.
    """

    student: torch.Tensor
    teacher: torch.Tensor
    valid: torch.Tensor
    diagnostic_labels: torch.Tensor


class Targets(NamedTuple):
    """A teacher's logits for a batch's unlabeled images, with the validity and diagnostic labels of their pixels."""

    logits: torch.Tensor
    valid: torch.Tensor
    diagnostic_labels: torch.Tensor

    def for_student(self, student: torch.Tensor) -> PseudoLabelPair:
        return PseudoLabelPair(student, self.logits, self.valid, self.diagnostic_labels)


class SemiSupervisedBatch(TypedDict, total=False):
    """A batch of training items as `semi_supervised_collate` gives it (crop side S), images normalised by the
    trainer; what a framework consumes is what its declaration asks the data for. B =
    `per_device_train_batch_size` labeled rows, Bu = `per_device_unlabeled_batch_size` unlabeled rows (a multiple of B).

    Keys:
        pixel_values (B, 3, S, S), labels (B, S, S): the labeled crops.
        unlabeled_pixel_values (Bu, U, 3, S, S): weak views of U different unlabeled images (U = 2 when mixing).
        unlabeled_strong_pixel_values (Bu, U, V, 3, S, S): V strong views of each.
        unlabeled_valid (Bu, U, S, S): False on crop padding, which is never a pseudo-label.
        unlabeled_diagnostic_labels (Bu, U, S, S): the unlabeled images' own labels where known (255 elsewhere), for
            the logged statistics only; a step passes them on through `unlabeled_targets` and never trains on them.
        cutmix_masks (Bu, M, S, S): CutMix box masks (1 inside the boxes).
    """

    pixel_values: torch.Tensor
    labels: torch.Tensor
    unlabeled_pixel_values: torch.Tensor
    unlabeled_strong_pixel_values: torch.Tensor
    unlabeled_valid: torch.Tensor
    unlabeled_diagnostic_labels: torch.Tensor
    cutmix_masks: torch.Tensor


Options = TypeVar("Options")


class StepContext(Protocol, Generic[Options]):
    """What a framework step may use of the trainer (`FPLTrainer` is one)."""

    options: Options  # the framework's own options: an instance of its declaration's `options` dataclass
    mixes: bool  # the unlabeled images come with a mixing partner and CutMix boxes (`cutmix`, or always)
    teacher: SegmentationNetwork | None  # the EMA teacher, for frameworks that declare one
    unsup_weight: float  # beta at this step (the ramp-up included)

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...

    def unsupervised_loss(self, *pairs: PseudoLabelPair) -> list[torch.Tensor]: ...

    def record(self, **values: Any) -> None: ...


Step = Callable[[StepContext, nn.Module, SemiSupervisedBatch], torch.Tensor]


@runtime_checkable
class NetworkPair(Protocol):
    """The module a framework trains in place of the model when it trains two networks (CPS's `BranchPair`)."""

    @property
    def evaluated_network(self) -> SegmentationNetwork:
        """The network that is evaluated, saved and exported."""
        ...

    def checkpointed_networks(self) -> dict[str, nn.Module]:
        """The other networks a checkpoint keeps (safetensors files, by name), to resume from."""
        ...


# `pair(model, second_network, seed)`: the pair a framework trains, from the model, a second network given by the
# user (None: the framework's own default) and the run's seed.
PairBuilder = Callable[[SegmentationNetwork, nn.Module | None, int], NetworkPair]


@dataclass
class NoOptions:
    """A framework or loss without options of its own."""


@dataclass
class StrongViewStatistics:
    """The option of a framework whose student learns on strong views: colour-jittered or CutMixed images unlike
    the ones the model is evaluated on."""

    strong_views_update_bn: bool = field(
        default=True,
        metadata={
            "help": "UniMatch, UniMatch V2, CPS and the mean teacher: the student's pass on the strong views updates "
            "BatchNorm's running statistics, as in the released codes; false leaves them to the other passes "
            "(labeled and weak images), whose colours evaluation and an EMA teacher see (docs/camvid.md)."
        },
    )


@dataclass
class StudentViews(StrongViewStatistics):
    """The options of a framework whose student may learn on strong views (CPS, the mean teacher)."""

    strong_views: bool = field(
        default=True,
        metadata={
            "help": "CPS and the mean teacher: the student learns on a strong view of each unlabeled image "
            "(colour jitter, grey, blur, as UniMatch's) while the teachers label the weak one; false: the weak "
            "views of the CPS and AEL papers (their recipes in examples/configs/ say so)."
        },
    )


# The declaration of a framework whose student may learn on strong views: its options, and one strong view of each
# unlabeled image when they say so.
STUDENT_VIEWS = dict(options=StudentViews, strong_views=lambda options: int(options.strong_views))


def total_loss(context: StepContext, sup: torch.Tensor, unsup: torch.Tensor, **terms: torch.Tensor) -> torch.Tensor:
    """A step's total, sup + beta * unsup, with its terms recorded for the logs."""
    context.record(sup=sup, unsup=unsup, **terms)
    return sup + context.unsup_weight * unsup


def student_images(batch: SemiSupervisedBatch, strong: bool) -> torch.Tensor:
    """The unlabeled images a student sees (Bu, U, 3, S, S): the first strong view of each, or the weak ones."""
    return batch["unlabeled_strong_pixel_values"][:, :, 0] if strong else batch["unlabeled_pixel_values"]


@dataclass(frozen=True)
class Framework:
    """A semi-supervised framework: its step and what the trainer, the config, the data and the card need to know.

    Args:
        name: the `framework` value that selects it.
        step: `step(context, model, batch)` returns the step's total loss, having `record`ed its terms.
        description: one sentence for the model card and `--help`.
        options: a dataclass of its own options (fields with `help` metadata: `run_fpl.py` flags, validated in its
            `__post_init__`); the step reads them as `context.options`.
        unlabeled: whether the step consumes unlabeled images at all.
        strong_views: strong views of each unlabeled image, or a function of the framework's options that says.
        cutmix_masks: CutMix masks per item when mixing (the step mixes each item's two unlabeled images).
        always_mixes: mixing is part of the method (`cutmix=False` is refused).
        cutmix: default CutMix boxes (default: CPS's, 3 boxes covering 25-50% of the crop, always).
        loss_defaults: defaults the framework gives its loss's options, by name (UniMatch's 0.95
            `confidence_threshold` for the cross-entropy baseline).
        ema_decay: default decay of its EMA teacher; None = the framework keeps no teacher.
        pair: builds the `NetworkPair` it trains in place of the model (CPS); None = it trains the model itself.
        burn_in_step: the step of the supervised burn-in; default the `supervised` framework's.
        perturbs_features: the step passes a `feature_perturbation` to the model, which needs its encoder features.
    """

    name: str
    step: Step
    description: str
    options: type = NoOptions
    unlabeled: bool = True
    strong_views: int | Callable[[Any], int] = 0
    cutmix_masks: int = 1
    always_mixes: bool = False
    cutmix: CutMixSettings = field(default_factory=CutMixSettings)
    loss_defaults: dict[str, Any] = field(default_factory=dict)
    ema_decay: float | None = None
    pair: PairBuilder | None = None
    burn_in_step: Step | None = None
    perturbs_features: bool = False

    def __post_init__(self) -> None:
        problem = None
        if not self.name.isidentifier():
            problem = "`name` must be an identifier (it is a flag value)"
        elif not dataclasses.is_dataclass(self.options):
            problem = "`options` must be a dataclass"
        elif self.pair is not None and self.ema_decay is not None:
            problem = "`pair` and `ema_decay` exclude each other: an EMA teacher follows one trained network"
        elif self.ema_decay is not None and not 0 <= self.ema_decay < 1:
            problem = "`ema_decay` must be in [0, 1)"
        elif self.cutmix_masks < 0 or not callable(self.strong_views) and self.strong_views < 0:
            problem = "`strong_views` and `cutmix_masks` must be >= 0"
        elif self.always_mixes and not self.cutmix_masks:
            problem = "`always_mixes` needs `cutmix_masks` >= 1"
        elif not self.unlabeled and (
            self.strong_views or self.cutmix_masks or self.perturbs_features or self.always_mixes
        ):
            problem = (
                "a framework without unlabeled images (`unlabeled=False`) has no strong views, masks or perturbation"
            )
        if problem:
            raise ValueError(f"Framework {self.name!r}: {problem}.")

    def data_options(self, cutmix: bool, options: Any) -> dict[str, int]:
        """The unlabeled images, strong views and CutMix masks each training item must carry, with `cutmix` and the
        framework's `options` as the run sets them."""
        mixes = self.mixes(cutmix)
        return dict(
            num_unlabeled=(2 if mixes else 1) if self.unlabeled else 0,
            num_strong_views=self.strong_views(options) if callable(self.strong_views) else self.strong_views,
            num_cutmix_masks=self.cutmix_masks if mixes else 0,
        )

    def mixes(self, cutmix: bool) -> bool:
        """Whether its unlabeled images come with a mixing partner and CutMix boxes."""
        return self.unlabeled and self.cutmix_masks > 0 and (cutmix or self.always_mixes)


FRAMEWORKS: dict[str, Framework] = {}


Entry = TypeVar("Entry")


def register(registry: dict[str, Entry], entry: Entry, kind: str) -> Entry:
    """Makes `entry` selectable by its name in `registry` (of frameworks, of losses); a name is taken once."""
    if entry.name in registry:
        raise ValueError(f"A {kind} named {entry.name!r} is registered already.")
    registry[entry.name] = entry
    return entry


def register_framework(framework: Framework) -> Framework:
    """Makes `framework` selectable by its name; each framework module registers its own declaration."""
    return register(FRAMEWORKS, framework, "framework")


def framework_names(selected: Callable[[Framework], bool] = lambda framework: True) -> str:
    """The registered frameworks that `selected` keeps, as a phrase: "'cps' or 'mean_teacher'"."""
    names = [f"{name!r}" for name, framework in FRAMEWORKS.items() if selected(framework)]
    return " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)


def mix(background: torch.Tensor, foreground: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """`background` with `foreground` pasted where `box` (B, H, W) is 1; works on images, logits and masks."""
    box = box.to(background.dtype) if background.is_floating_point() else box.bool()
    if background.dim() == 4:
        box = box.unsqueeze(1)
    if background.is_floating_point():
        return background * (1 - box) + foreground * box
    return torch.where(box, foreground, background)


def unlabeled_targets(
    batch: SemiSupervisedBatch,
    logits: torch.Tensor,
    partner_logits: torch.Tensor | None = None,
    box: torch.Tensor | None = None,
) -> Targets:
    """A teacher's `logits` for the batch's unlabeled images as targets; given the partners' logits and a CutMix `box`,
    mixed as the student's images are, with the pixels' validity and diagnostic labels."""
    valid, diagnostic = batch["unlabeled_valid"], batch["unlabeled_diagnostic_labels"]
    if box is None:
        return Targets(logits, valid[:, 0], diagnostic[:, 0])
    return Targets(
        mix(logits, partner_logits, box),
        mix(valid[:, 0], valid[:, 1], box),
        mix(diagnostic[:, 0], diagnostic[:, 1], box),
    )


@contextmanager
def without_dropout(model: nn.Module) -> Iterator[None]:
    """Dropout off, BatchNorm untouched: a teacher pass in train mode gives deterministic targets while its
    BatchNorm uses (and updates) batch statistics, as the reference methods' teacher passes do."""
    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd) and m.training]
    for module in dropouts:
        module.eval()
    try:
        yield
    finally:
        for module in dropouts:
            module.train()


@contextmanager
def strong_views_pass(context: StepContext[StrongViewStatistics], model: nn.Module) -> Iterator[None]:
    """The student's pass on strong views. Unless the framework's `strong_views_update_bn` says otherwise, BatchNorm
    layers normalise by the batch's statistics but leave their running statistics (what evaluation and an EMA teacher
    normalise by) as they are: these views' colours and CutMix boxes are not those of the images the model is
    evaluated on."""
    kept = not context.options.strong_views_update_bn
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if kept else []
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum


def eval_mode_logits(model: SegmentationNetwork, pixel_values: torch.Tensor) -> torch.Tensor:
    """A teacher's logits in eval mode: one plain whole-image pass, never the flip/slide inference protocol that
    the model's config may set for `pipeline`."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    was_training = model.training
    model.eval()
    try:
        with teacher_pass():
            logits = model.segment(pixel_values)
    finally:
        model.train(was_training)
    return logits.clone()  # outside inference mode: a target any loss may use, in autograd too


def teacher_pass() -> torch.inference_mode:
    """The context of a pass that only makes targets: inference mode, no autograd bookkeeping at all. Its outputs
    are inference tensors; `clone()` them outside it where a loss may save them for backward."""
    return torch.inference_mode()


__all__ = [
    "FRAMEWORKS",
    "Framework",
    "NetworkPair",
    "NoOptions",
    "PairBuilder",
    "PseudoLabelPair",
    "SemiSupervisedBatch",
    "Step",
    "StepContext",
    "STUDENT_VIEWS",
    "StrongViewStatistics",
    "StudentViews",
    "Targets",
    "eval_mode_logits",
    "framework_names",
    "mix",
    "register",
    "register_framework",
    "student_images",
    "strong_views_pass",
    "teacher_pass",
    "total_loss",
    "unlabeled_targets",
    "without_dropout",
]
