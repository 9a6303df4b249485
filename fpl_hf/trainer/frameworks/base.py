"""The contract between `FPLTrainer` and a framework: the declaration, the batch, what a step may call, and the
pieces that steps share (CutMix on images and predictions, teacher passes, CPS's pair of networks)."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Protocol, TypedDict

import torch
from torch import nn

from ...data import CutMixSettings
from ...modeling.transformers_segmenter import exported

# (student logits, teacher logits, valid pixels, diagnostic labels): one term of a pseudo-label loss. The
# diagnostic labels are the hidden labels of the unlabeled images (255 where unknown): they serve the logged
# pseudo-label statistics only, never a loss.
PseudoLabelPair = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class SemiSupervisedBatch(TypedDict, total=False):
    """A batch of training items as `semi_supervised_collate` gives it (crop side S); what a framework consumes
    is what its declaration asks the data for. B = `per_device_train_batch_size` labeled rows,
    Bu = `per_device_unlabeled_batch_size` unlabeled rows (a multiple of B).

    Keys:
        pixel_values (B, 3, S, S), labels (B, S, S): the labeled crops.
        unlabeled_pixel_values (Bu, U, 3, S, S): weak views of U different unlabeled images (U = 2 when mixing).
        unlabeled_strong_pixel_values (Bu, U, V, 3, S, S): V strong views of each.
        unlabeled_valid (Bu, U, S, S): False on crop padding, which is never a pseudo-label.
        unlabeled_diagnostic_labels (Bu, U, S, S): the hidden labels (255 where unknown), for the logged statistics
            only; a step passes them on in its `PseudoLabelPair`s and never trains on them.
        cutmix_masks (Bu, M, S, S): CutMix box masks (1 inside the boxes).
    """

    pixel_values: torch.Tensor
    labels: torch.Tensor
    unlabeled_pixel_values: torch.Tensor
    unlabeled_strong_pixel_values: torch.Tensor
    unlabeled_valid: torch.Tensor
    unlabeled_diagnostic_labels: torch.Tensor
    cutmix_masks: torch.Tensor


class StepContext(Protocol):
    """What a framework step may use of the trainer (`FPLTrainer` is one)."""

    args: Any  # the run's FPLConfig
    teacher: Optional[nn.Module]  # the EMA teacher, for frameworks that declare one
    unsup_weight: float  # beta at this step (burn-in and ramp-up included)

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor: ...

    def unsupervised_loss(self, *pairs: PseudoLabelPair) -> list[torch.Tensor]: ...

    def record(self, **values: Any) -> None: ...


Step = Callable[[StepContext, nn.Module, SemiSupervisedBatch], torch.Tensor]


@dataclass(frozen=True)
class Framework:
    """A semi-supervised framework: its step and what the trainer, the config, the data and the card need to know.

    Args:
        name: the `framework` value that selects it.
        step: `step(context, model, batch)` returns the step's total loss, having `record`ed its terms.
        description: one sentence for the model card.
        unlabeled: whether the step consumes unlabeled images at all.
        strong_views: strong views of each unlabeled image.
        cutmix_masks: CutMix masks per item when mixing (the step mixes each item's two unlabeled images).
        always_mixes: mixing is part of the method (`cutmix=False` is refused).
        cutmix: default CutMix boxes (default: CPS's, 3 boxes covering 25-50% of the crop, always).
        confidence_threshold: default confidence threshold of the 'ce' baseline.
        ema_decay: default decay of its EMA teacher; None = the framework keeps no teacher.
        second_branch: the model is trained as CPS's pair with a second network (`BranchPair`).
        perturbs_features: the step passes a `feature_perturbation` to the model, which needs its encoder features.
    """

    name: str
    step: Step
    description: str
    unlabeled: bool = True
    strong_views: int = 0
    cutmix_masks: int = 1
    always_mixes: bool = False
    cutmix: CutMixSettings = field(default_factory=CutMixSettings)
    confidence_threshold: float = 0.0
    ema_decay: Optional[float] = None
    second_branch: bool = False
    perturbs_features: bool = False

    def data_options(self, cutmix: bool) -> dict[str, int]:
        """The unlabeled images, strong views and CutMix masks each training item must carry."""
        mixes = self.unlabeled and (cutmix or self.always_mixes)
        return dict(
            num_unlabeled=(2 if mixes else 1) if self.unlabeled else 0,
            num_strong_views=self.strong_views,
            num_cutmix_masks=self.cutmix_masks if mixes else 0,
        )


FRAMEWORKS: dict[str, Framework] = {}

# UniMatch's weak-to-strong setting, shared by its V1 and V2 steps: two strong views of each unlabeled image, each
# CutMixed with one box (2-40% of the crop, half of the time) with another image's, a feature perturbation, and
# a 0.95 confidence threshold for the CE baseline.
WEAK_TO_STRONG = dict(
    strong_views=2,
    cutmix_masks=2,
    always_mixes=True,
    cutmix=CutMixSettings(num_boxes=1, area_range=(0.02, 0.4), probability=0.5),
    confidence_threshold=0.95,
    perturbs_features=True,
)


def register(framework: Framework) -> Framework:
    """Makes `framework` selectable by its name; each framework module registers its own declaration."""
    if framework.name in FRAMEWORKS:
        raise ValueError(f"A framework named {framework.name!r} is registered already.")
    FRAMEWORKS[framework.name] = framework
    return framework


def mix(background: torch.Tensor, foreground: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """`background` with `foreground` pasted where `box` (B, H, W) is 1; works on images, logits and masks."""
    box = box.to(background.dtype) if background.is_floating_point() else box.bool()
    if background.dim() == 4:
        box = box.unsqueeze(1)
    if background.is_floating_point():
        return background * (1 - box) + foreground * box
    return torch.where(box, foreground, background)


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


@torch.no_grad()
def eval_mode_logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """A teacher's logits in eval mode: one plain whole-image pass, never the flip/slide inference protocol that
    the model's config may set for `pipeline`."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    was_training = model.training
    model.eval()
    try:
        return model.segment(pixel_values)
    finally:
        model.train(was_training)


class BranchPair(nn.Module):
    """CPS's two networks of one architecture; a forward returns both logits. Branch 1 is the exported model."""

    def __init__(self, branch_1: nn.Module, branch_2: nn.Module):
        super().__init__()
        self.branch_1, self.branch_2 = branch_1, branch_2
        self.config = branch_1.config

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.branch_1(pixel_values=pixel_values).logits, self.branch_2(pixel_values=pixel_values).logits


def reinitialized_head_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of `model` with the same (pretrained) encoder and a differently initialised head, as CPS does.

    `model` names its encoder submodule in `encoder_module` (fpl_hf's models and `TransformersSegmenter` do)."""
    encoder = getattr(model, "encoder_module", None)
    if encoder is None:
        raise ValueError(f"fpl_hf does not know the encoder of {type(exported(model)).__name__}, so it cannot give CPS's "
                         "second branch a new head on the same encoder: pass `branch_2`, a second network.")
    twin = copy.deepcopy(model)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    for name, module in twin.named_modules():
        in_encoder = name == encoder or name.startswith(f"{encoder}.")
        holds_encoder = name == "" or encoder.startswith(f"{name}.")
        if not in_encoder and not holds_encoder:
            exported(twin)._init_weights(module)
    torch.random.set_rng_state(generator_state)
    return twin


__all__ = [
    "FRAMEWORKS",
    "WEAK_TO_STRONG",
    "BranchPair",
    "Framework",
    "PseudoLabelPair",
    "SemiSupervisedBatch",
    "Step",
    "StepContext",
    "eval_mode_logits",
    "mix",
    "register",
    "reinitialized_head_copy",
    "without_dropout",
]
