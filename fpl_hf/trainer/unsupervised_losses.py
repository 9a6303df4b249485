"""The pseudo-label losses a framework step trains with, one entry each; `FPLConfig.unsup_loss` names the entry.

An entry takes the step's (student, teacher, valid, diagnostic labels) pairs and the run's `FPLConfig`, reads its
own options there, and returns one `PseudoLabelLossOutput` per pair.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Sequence

from ..losses import PseudoLabelLossOutput, fuzzy_positive_loss, pseudo_label_cross_entropy
from .frameworks import PseudoLabelPair

if TYPE_CHECKING:
    from .fpl_config import FPLConfig

UnsupervisedLoss = Callable[[Sequence[PseudoLabelPair], "FPLConfig"], list[PseudoLabelLossOutput]]


def fuzzy_positive_terms(pairs: Sequence[PseudoLabelPair], args: FPLConfig) -> list[PseudoLabelLossOutput]:
    """FPL on each pair (options `threshold`, `fpl_weight`, `semantics`, `kmax`, `concave_a`).

    With `balance_to_ce`, every term is rescaled by one detached ratio sum(CE) / sum(FPL) over the pairs, as the
    released code does for CPS's two directions: the values are then the vanilla losses', the gradients FPL's.
    """
    outputs = [
        fuzzy_positive_loss(
            student, teacher, args.threshold, weight=args.fpl_weight, semantics=args.semantics, kmax=args.kmax,
            A=args.concave_a, ignore_mask=~valid,
        )
        for student, teacher, valid, _ in pairs
    ]
    if not args.balance_to_ce:
        return outputs
    vanilla = sum(pseudo_label_cross_entropy(student.detach(), teacher, ignore_mask=~valid).loss
                  for student, teacher, valid, _ in pairs)
    ratio = vanilla / sum(output.loss.detach() for output in outputs).clamp(min=1e-12)
    return [replace(output, loss=output.loss * ratio) for output in outputs]


def cross_entropy_terms(pairs: Sequence[PseudoLabelPair], args: FPLConfig) -> list[PseudoLabelLossOutput]:
    """The vanilla pseudo-label cross-entropy on each pair (option `confidence_threshold`)."""
    return [
        pseudo_label_cross_entropy(student, teacher, args.confidence_threshold, ignore_mask=~valid)
        for student, teacher, valid, _ in pairs
    ]


UNSUPERVISED_LOSSES: dict[str, UnsupervisedLoss] = {"fpl": fuzzy_positive_terms, "ce": cross_entropy_terms}

__all__ = ["UNSUPERVISED_LOSSES", "UnsupervisedLoss", "cross_entropy_terms", "fuzzy_positive_terms"]
