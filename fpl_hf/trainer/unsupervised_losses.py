"""The pseudo-label losses a framework step trains with, one entry each; `FPLConfig.unsup_loss` names the entry.

An entry's `compute` takes the step's `PseudoLabelPair`s and the entry's own options (a dataclass whose fields are
`run_fpl.py` flags, validated in its `__post_init__`) and returns one `PseudoLabelLossOutput` per pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..losses import (
    SEMANTICS,
    WEIGHTS,
    PseudoLabelLossOutput,
    check_threshold,
    fuzzy_positive_loss,
    pseudo_label_cross_entropy,
)
from .frameworks import NoOptions, PseudoLabelPair
from .frameworks.base import register


@dataclass(frozen=True)
class UnsupervisedLoss:
    """A loss on a teacher's predictions.

    Args:
        name: the `unsup_loss` value that selects it.
        compute: `compute(pairs, options)`: one `PseudoLabelLossOutput` per pair, on its valid pixels.
        description: what the student learns, for the model card (a phrase that follows "trained with").
        options: a dataclass of its own options; a framework may give defaults to those it leaves at None.
        citation: the BibTeX entry the model card cites, if any.
    """

    name: str
    compute: Callable[[Sequence[PseudoLabelPair], Any], list[PseudoLabelLossOutput]]
    description: str
    options: type = NoOptions
    citation: str | None = None

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not dataclasses.is_dataclass(self.options):
            raise ValueError(f"Loss {self.name!r}: `name` must be an identifier and `options` a dataclass.")


UNSUPERVISED_LOSSES: dict[str, UnsupervisedLoss] = {}


def register_loss(loss: UnsupervisedLoss) -> UnsupervisedLoss:
    """Makes `loss` selectable by its name."""
    return register(UNSUPERVISED_LOSSES, loss, "loss")


@dataclass
class FuzzyPositiveOptions:
    threshold: float = field(
        default=0.9,
        metadata={
            "help": "FPL's T in (0, 1): the fuzzy set is the smallest top-n reaching T, minus one. "
            "The paper uses 0.95 at 1/32 labels and 0.9 otherwise."
        },
    )
    fpl_weight: str = field(
        default="concave",
        metadata={
            "help": "Adaptive weight of each pixel's fuzzy set: 'concave' (paper's best), 'linear', 'convex' or 'none'."
        },
    )
    semantics: str = field(
        default="code",
        metadata={
            "help": "'code' (released code: cum >= T, K <= 3, top-(K+1) weight mean) or 'paper' "
            "(cum > T, K uncapped, top-K mean)."
        },
    )
    kmax: int | None = field(default=None, metadata={"help": "Cap on K, overriding the semantics' own."})
    concave_a: float = field(default=50.0, metadata={"help": "A, the steepness of the concave weight."})
    balance_to_ce: bool = field(
        default=False,
        metadata={
            "help": "Rescale the FPL term to the value of the vanilla pseudo-label cross-entropy (detached "
            "ratio), as the released code does; the gradient stays FPL's."
        },
    )

    def __post_init__(self) -> None:
        check_threshold(self.threshold)
        for name, choices in (("fpl_weight", WEIGHTS), ("semantics", SEMANTICS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"`{name}` must be one of {choices}, got {getattr(self, name)!r}.")
        if self.kmax is not None and self.kmax < 1:
            raise ValueError(f"`kmax` must be >= 1 or None, got {self.kmax}.")


def fuzzy_positive_terms(
    pairs: Sequence[PseudoLabelPair], options: FuzzyPositiveOptions
) -> list[PseudoLabelLossOutput]:
    """FPL on each pair. With `balance_to_ce`, every term is rescaled by one detached ratio sum(CE) / sum(FPL) over
    the pairs, as the released code does for CPS's two directions: the values are then the vanilla losses', the
    gradients FPL's."""
    outputs = [
        fuzzy_positive_loss(
            pair.student,
            pair.teacher,
            options.threshold,
            weight=options.fpl_weight,
            semantics=options.semantics,
            kmax=options.kmax,
            A=options.concave_a,
            ignore_mask=~pair.valid,
        )
        for pair in pairs
    ]
    if not options.balance_to_ce:
        return outputs
    vanilla = sum(
        pseudo_label_cross_entropy(pair.student.detach(), pair.teacher, ignore_mask=~pair.valid).loss for pair in pairs
    )
    ratio = vanilla / sum(output.loss.detach() for output in outputs).clamp(min=1e-12)
    return [replace(output, loss=output.loss * ratio) for output in outputs]


@dataclass
class CrossEntropyOptions:
    confidence_threshold: float | None = field(
        default=None,
        metadata={
            "help": "Pixels whose top teacher probability is below this are left out; default the framework's "
            "(UniMatch V1 and V2: 0.95), else none, as in the frameworks' papers."
        },
    )

    def __post_init__(self) -> None:
        if self.confidence_threshold is not None:
            check_threshold(self.confidence_threshold, allow_zero=True)


def cross_entropy_terms(pairs: Sequence[PseudoLabelPair], options: CrossEntropyOptions) -> list[PseudoLabelLossOutput]:
    """The vanilla pseudo-label cross-entropy on each pair."""
    return [
        pseudo_label_cross_entropy(
            pair.student, pair.teacher, options.confidence_threshold or 0.0, ignore_mask=~pair.valid
        )
        for pair in pairs
    ]


register_loss(
    UnsupervisedLoss(
        name="fpl",
        compute=fuzzy_positive_terms,
        description="Fuzzy Positive Learning (FPL, Qiao et al., CVPR 2023): each unlabeled pixel learns an adaptive "
        "set of plausible classes, the teacher's top-K (fuzzy positive assignment), all trained to score above every "
        "other class (fuzzy positive regularization) and weighted by how trustworthy the set is, in place of the "
        "teacher's single, often wrong, pseudo-label",
        options=FuzzyPositiveOptions,
        citation="""@inproceedings{qiao2023fuzzy,
  title     = {Fuzzy Positive Learning for Semi-supervised Semantic Segmentation},
  author    = {Qiao, Pengchong and Wei, Zhidan and Wang, Yu and Wang, Zhennan and Song, Guoli and Xu, Fan and
               Ji, Xiangyang and Liu, Chang and Chen, Jie},
  booktitle = {CVPR},
  year      = {2023}
}""",
    )
)
register_loss(
    UnsupervisedLoss(
        name="ce",
        compute=cross_entropy_terms,
        description="the vanilla pseudo-label cross-entropy: each unlabeled pixel learns the teacher's arg-max class "
        "(the baseline that Fuzzy Positive Learning, Qiao et al., CVPR 2023, replaces)",
        options=CrossEntropyOptions,
    )
)

__all__ = [
    "UNSUPERVISED_LOSSES",
    "CrossEntropyOptions",
    "FuzzyPositiveOptions",
    "UnsupervisedLoss",
    "cross_entropy_terms",
    "fuzzy_positive_terms",
    "register_loss",
]
