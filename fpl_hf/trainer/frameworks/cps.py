"""Cross pseudo supervision (Chen et al., CVPR 2021): two branches teach each other.

The model is branch 1 of a `BranchPair`: one forward gives both branches' logits.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ...modeling import SegmentationNetwork
from ...modeling.transformers_segmenter import as_segmenter, exported
from .base import (
    STUDENT_VIEWS,
    Framework,
    SemiSupervisedBatch,
    StepContext,
    StudentViews,
    mix,
    register_framework,
    strong_views_pass,
    student_images,
    teacher_pass,
    total_loss,
    unlabeled_targets,
    without_dropout,
)

BRANCH_2_FILE = "branch_2.safetensors"


class BranchPair(nn.Module):
    """CPS's two networks of one architecture; a forward returns both logits. Branch 1 is the exported model."""

    def __init__(self, branch_1: SegmentationNetwork, branch_2: SegmentationNetwork):
        super().__init__()
        self.branch_1, self.branch_2 = branch_1, branch_2
        self.config = branch_1.config

    @classmethod
    def for_model(cls, model: SegmentationNetwork, branch_2: nn.Module | None, seed: int) -> BranchPair:
        """The pair of `model` and `branch_2`, by default a copy of `model` whose head is initialised anew."""
        second = as_segmenter(branch_2) if branch_2 is not None else reinitialized_head_copy(model, seed + 1)
        return cls(model, second)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.branch_1(pixel_values=pixel_values).logits, self.branch_2(pixel_values=pixel_values).logits

    @property
    def evaluated_network(self) -> SegmentationNetwork:
        return self.branch_1

    def checkpointed_networks(self) -> dict[str, nn.Module]:
        return {BRANCH_2_FILE: self.branch_2}


def reinitialized_head_copy(model: SegmentationNetwork, seed: int) -> SegmentationNetwork:
    """A copy of `model` with the same (pretrained) encoder and a differently initialised head, as CPS does."""
    encoder = model.encoder_module
    if encoder is None:
        raise ValueError(
            f"fpl_hf does not know the encoder of {type(exported(model)).__name__}, so it cannot give CPS's "
            "second branch a new head on the same encoder: pass `branch_2`, a second network."
        )
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


def supervised_terms(context: StepContext, model: BranchPair, batch: SemiSupervisedBatch) -> torch.Tensor:
    logits_1, logits_2 = model(batch["pixel_values"])
    return context.supervised_loss(logits_1, batch["labels"]) + context.supervised_loss(logits_2, batch["labels"])


def burn_in_step(context: StepContext, model: BranchPair, batch: SemiSupervisedBatch) -> torch.Tensor:
    """Each branch learns the labeled images alone."""
    sup = supervised_terms(context, model, batch)
    context.record(sup=sup)
    return sup


def step(context: StepContext[StudentViews], model: BranchPair, batch: SemiSupervisedBatch) -> torch.Tensor:
    sup = supervised_terms(context, model, batch)

    unlabeled, views = batch["unlabeled_pixel_values"], student_images(batch, context.options.strong_views)
    if context.mixes or context.options.strong_views:
        # Teachers see the weak, unmixed images (train-mode BatchNorm, no dropout: deterministic targets); their
        # predictions are mixed with the same box as the images the students see.
        box = batch["cutmix_masks"][:, 0] if context.mixes else None
        with teacher_pass(), without_dropout(model):
            teacher_1_a, teacher_2_a = model(unlabeled[:, 0])
            teacher_1_b, teacher_2_b = model(unlabeled[:, 1]) if context.mixes else (None, None)
        targets_1 = unlabeled_targets(batch, teacher_1_a, teacher_1_b, box)
        targets_2 = unlabeled_targets(batch, teacher_2_a, teacher_2_b, box)
        with strong_views_pass(context, model):
            student_1, student_2 = model(mix(views[:, 0], views[:, 1], box) if context.mixes else views[:, 0])
    else:  # CPS without CutMix: each branch's prediction of the same weak image teaches the other
        student_1, student_2 = model(unlabeled[:, 0])
        targets_1, targets_2 = (
            unlabeled_targets(batch, student_1.detach()),
            unlabeled_targets(batch, student_2.detach()),
        )

    # Branch 1 learns from branch 2's pseudo-labels (or fuzzy sets), and branch 2 from branch 1's.
    unsup_12, unsup_21 = context.unsupervised_loss(targets_2.for_student(student_1), targets_1.for_student(student_2))
    return total_loss(context, sup, unsup_12 + unsup_21)


FRAMEWORK = register_framework(
    Framework(
        name="cps",
        step=step,
        description="cross pseudo supervision: two differently initialised branches label images for each other",
        **STUDENT_VIEWS,
        pair=BranchPair.for_model,
        burn_in_step=burn_in_step,
    )
)
