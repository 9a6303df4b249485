"""Fuzzy Positive Learning losses (Qiao et al., CVPR 2023).

Pure functions on logits of shape (B, C, H, W). Equation numbers refer to the
paper; where the paper and the authors' released code differ, ``semantics``
picks one ("paper" or "code"): ``fuzzy_positive_loss`` and ``adaptive_weight`` say how.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

Semantics = Literal["code", "paper"]
Weighting = Literal["concave", "linear", "convex", "none"]

SEMANTICS = ("code", "paper")
WEIGHTS = ("concave", "linear", "convex", "none")
CODE_KMAX = 3
CONVEX_FACTOR = {"paper": 4.0, "code": 1.0}
_KEY_BLOCK_BYTES = 1 << 22


@dataclass
class PseudoLabelLossOutput:
    """What an unsupervised loss returns.

    Attributes:
        loss: scalar, mean over valid pixels of ``weight * pixel_loss``.
        pixel_loss: (B, H, W) unweighted per-pixel loss (Eq. 7 for FPL).
        weight: (B, H, W) adaptive weight, detached; 1 where ``weight="none"``.
        k: (B, H, W) size of the positive set (1 everywhere for cross-entropy).
        positive_classes: (B, N, H, W) the classes each pixel learns as positive, the teacher's top first, in the
            first K slots (N = the largest K allowed; 1 for cross-entropy).
        in_set: (B, N, H, W) bool, which slots of `positive_classes` are within K.
        valid_mask: (B, H, W) bool, the pixels that count in ``loss``.
        num_classes: C.
    """

    loss: torch.Tensor
    pixel_loss: torch.Tensor
    weight: torch.Tensor
    k: torch.Tensor
    positive_classes: torch.Tensor
    in_set: torch.Tensor
    valid_mask: torch.Tensor
    num_classes: int

    @property
    def positive_mask(self) -> torch.Tensor:
        """(B, C, H, W) bool, the classes each pixel learns as positive (built on demand: C times larger)."""
        return _mask_of(self.positive_classes, self.num_classes)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}, got {value!r}.")


def check_threshold(threshold: float, *, allow_zero: bool = False) -> None:
    """Raises the error that names the range of a fuzzy-set (or confidence) threshold."""
    low_ok = threshold >= 0 if allow_zero else threshold > 0
    if not (low_ok and threshold < 1):
        interval = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"`threshold` must be in {interval}, got {threshold}; the paper uses 0.85 to 0.95.")


def _check_logits(name: str, logits: torch.Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"`{name}` must have shape (B, C, H, W), got {tuple(logits.shape)}.")
    if logits.shape[1] < 2:
        raise ValueError(f"`{name}` must have C >= 2 classes, got C = {logits.shape[1]}.")
    if not logits.is_floating_point():
        raise ValueError(f"`{name}` must be a floating point tensor, got {logits.dtype}.")


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    # Half precision loses the ordering of close probabilities and overflows exp(); compute in fp32 or better.
    return torch.promote_types(tensor.dtype, torch.float32)


def _resolve_kmax(num_classes: int, semantics: str, kmax: int | None) -> int:
    if kmax is None:
        kmax = CODE_KMAX if semantics == "code" else num_classes - 1
    if kmax < 1:
        raise ValueError(f"`kmax` must be >= 1, got {kmax}.")
    # At least one negative class must remain (K < C).
    return min(kmax, num_classes - 1)


def _break_ties_by_class_index(probs: torch.Tensor, classes: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Re-ranks `pixels` by a stable sort, so that equal probabilities rank in class order.

    topk orders equal values arbitrarily (and differently on CPU and GPU); only the few pixels whose tie crosses
    the edge of the positive set need the stable order for the set to be well defined.
    """
    stable = probs.movedim(1, -1)[pixels].sort(dim=1, descending=True, stable=True).indices
    ranked = classes.movedim(1, -1).clone()
    ranked[pixels] = stable[:, : classes.shape[1]]
    return ranked.movedim(-1, 1)


def _top_classes(probs: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The `n` largest probabilities over dim 1 and their classes, in descending order.

    On CPU, topk along the strided class dimension is slow (30 ms at B=8, C=21, 128x128, where amax takes 0.3 ms).
    For a few largest of float32 probabilities, `n` amax passes over float64 keys are faster (17 ms) and exact: a
    float32 widens to a float64 whose 29 low bits are zero, and they hold the class, reversed, so that the keys
    order as (probability, then lower class first), as the stable tie rule ranks them. The keys are made a block
    of pixels at a time (4 MiB), which keeps them from doubling the loss's peak memory.
    """
    batch, num_classes = probs.shape[:2]
    if probs.device.type != "cpu" or probs.dtype != torch.float32 or n > 4 or probs.numel() == 0:
        return probs.topk(n, dim=1)
    class_bits = (1 << max(1, (num_classes - 1).bit_length())) - 1
    reversed_class = (num_classes - 1 - torch.arange(num_classes)).view(1, num_classes, 1)
    pixels = probs.flatten(2)
    top_bits = torch.empty((batch, n, pixels.shape[2]), dtype=torch.int64)
    block = max(1, _KEY_BLOCK_BYTES // (8 * batch * num_classes))
    for start in range(0, pixels.shape[2], block):
        keys = pixels[:, :, start : start + block].double().view(torch.int64)
        keys = keys.bitwise_or_(reversed_class).view(torch.float64)
        for rank in range(n):
            top = keys.amax(1, keepdim=True)
            if rank == 0 and not top.isfinite().all():
                # A NaN or an infinity has no spare bits: its key is NaN (or inf), which amax passes on. topk ranks
                # them as it does, and the non-finite loss that follows reaches the trainer's check.
                return probs.topk(n, dim=1)
            top_bits[:, rank : rank + 1, start : start + block] = top.view(torch.int64)
            if rank < n - 1:
                keys.scatter_(1, num_classes - 1 - (top.view(torch.int64) & class_bits), -torch.inf)
    top_bits = top_bits.view((batch, n) + probs.shape[2:])
    classes = num_classes - 1 - (top_bits & class_bits)
    return (top_bits & ~class_bits).view(torch.float64).float(), classes


def _assign(
    probs: torch.Tensor, threshold: float, semantics: str, kmax: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """FPA core on probabilities.

    Returns the positive classes (B, kmax, H, W), where slots beyond K repeat the first class, the mask of the
    slots within K, K (B, H, W), and the sorted top-(kmax + 1) probabilities (B, kmax + 1, H, W).
    """
    top, classes = _top_classes(probs, kmax + 1)
    cumulative = top[:, :kmax].cumsum(1)
    # n = 1 + #{m : cum(m) < T} (code) or <= T (paper); K = clamp(n - 1, 1, kmax).
    below = cumulative < threshold if semantics == "code" else cumulative <= threshold
    k = below.sum(1).clamp_(min=1)
    straddling_tie = top.gather(1, (k - 1).unsqueeze(1)) == top.gather(1, k.unsqueeze(1))
    if straddling_tie.any():
        classes = _break_ties_by_class_index(probs, classes, straddling_tie.squeeze(1))
    slots = torch.arange(kmax, device=probs.device).view(1, kmax, 1, 1)
    in_set = slots < k.unsqueeze(1)
    positive_classes = torch.where(in_set, classes[:, :kmax], classes[:, :1])
    return positive_classes, in_set, k, top


def _mask_of(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    shape = (classes.shape[0], num_classes) + tuple(classes.shape[2:])
    return torch.zeros(shape, dtype=torch.bool, device=classes.device).scatter_(1, classes, True)


def fuzzy_positive_assignment(
    teacher_probs: torch.Tensor,
    threshold: float,
    *,
    semantics: Semantics = "code",
    kmax: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fuzzy positive assignment (FPA, Algorithm 1).

    Args:
        teacher_probs: (B, C, H, W) teacher probabilities (softmax over C).
        threshold: T in (0, 1); the set is the smallest top-n whose mass reaches T, minus one.
        semantics: "code" uses `cum >= T` and caps K at 3; "paper" uses `cum > T`, no cap.
        kmax: overrides the cap of either semantics.

    Returns:
        The boolean positive mask (B, C, H, W) and K (B, H, W), with 1 <= K <= min(kmax, C - 1).
    """
    _check_logits("teacher_probs", teacher_probs)
    check_threshold(threshold)
    _check_choice("semantics", semantics, SEMANTICS)
    kmax = _resolve_kmax(teacher_probs.shape[1], semantics, kmax)
    probs = teacher_probs.detach().to(_compute_dtype(teacher_probs))
    positive_classes, _, k, _ = _assign(probs, threshold, semantics, kmax)
    return _mask_of(positive_classes, probs.shape[1]), k


def adaptive_weight(
    top_probs: torch.Tensor,
    k: torch.Tensor,
    weight: Weighting = "concave",
    *,
    semantics: Semantics = "code",
    A: float = 50.0,
) -> torch.Tensor:
    """Trust in each pixel's fuzzy set (Eq. 10, 11, 16), without gradient.

    Args:
        top_probs: (B, N, H, W) teacher probabilities sorted descending, N >= max(K) + 1.
        k: (B, H, W) positive-set sizes.
        weight: "concave", "linear", "convex" or "none".
        semantics: "paper" averages the top K (m = cum(K) / K) and uses 4q in the convex
            weight; "code" averages the top K + 1 and uses 1q.
        A: steepness of the concave weight.
    """
    _check_choice("weight", weight, WEIGHTS)
    _check_choice("semantics", semantics, SEMANTICS)
    if weight == "none":
        return torch.ones_like(k, dtype=top_probs.dtype)
    top_probs = top_probs.detach()
    cumulative = top_probs.cumsum(1)
    q = top_probs.gather(1, k.unsqueeze(1)).squeeze(1)
    count = k if semantics == "paper" else k + 1
    m = cumulative.gather(1, (count - 1).unsqueeze(1)).squeeze(1) / count
    margin = (m - q).clamp_(min=0)
    if weight == "concave":
        return torch.log1p(A * margin) / torch.log1p(A * m)
    if weight == "linear":
        return margin / m
    return margin / (m + CONVEX_FACTOR[semantics] * q)


class _FuzzyPositiveRegularization(torch.autograd.Function):
    """Eq. 7 per pixel with the analytic gradient of Eq. 8.

    Written as softplus(logsumexp_Y(-z) + logsumexp_notY(z)) so that no overflow reaches the loss. The positive set
    arrives as at most kmax class indices per pixel, so only the negatives' logsumexp touches all C classes: its
    exponentials are kept for the backward, which reads them once.

    They are shifted by the pixel's maximum over all classes, which costs one pass fewer than the negatives' own
    maximum. Where a positive lies more than ~87 above every negative, their sum underflows to 0: the total is then
    -inf, the loss 0 and the gradient 0, as they are in float32 (below 1e-38).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, positive_classes: torch.Tensor, in_set: torch.Tensor) -> torch.Tensor:
        positive_logits = logits.gather(1, positive_classes)
        lse_pos = torch.logsumexp(torch.where(in_set, -positive_logits, -torch.inf), dim=1)
        shift = logits.amax(1, keepdim=True)
        # exp() of -inf takes a slow path on CPU (10x the time), so the positives are zeroed after the exp() rather
        # than masked to -inf before it.
        negatives_exp = (logits - shift).exp_().scatter_(1, positive_classes, 0.0)
        negatives_sum = negatives_exp.sum(1)
        total = lse_pos + shift.squeeze(1) + negatives_sum.log()
        ctx.save_for_backward(positive_logits, positive_classes, negatives_exp, negatives_sum, lse_pos, total)
        return F.softplus(total)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        positive_logits, positive_classes, negatives_exp, negatives_sum, lse_pos, total = ctx.saved_tensors
        scale = torch.sigmoid(total) * grad_output
        # dL/dz_j = sigmoid(total) * exp(z_j - lse_neg) for j not in Y; the positives are overwritten below with
        # dL/dz_i = -sigmoid(total) * exp(-z_i - lse_pos). Repeated slots carry the first class's own value.
        grad = negatives_exp * (scale / negatives_sum.clamp(min=torch.finfo(scale.dtype).tiny)).unsqueeze(1)
        positive_grad = (-positive_logits - lse_pos.unsqueeze(1)).exp_().mul_(scale.unsqueeze(1)).neg_()
        return grad.scatter_(1, positive_classes, positive_grad), None, None


def _output(
    pixel_loss: torch.Tensor,
    weight: torch.Tensor,
    k: torch.Tensor,
    positive_classes: torch.Tensor,
    in_set: torch.Tensor,
    valid_mask: torch.Tensor,
    num_classes: int,
) -> PseudoLabelLossOutput:
    weighted = (pixel_loss * weight).masked_fill(~valid_mask, 0.0)
    return PseudoLabelLossOutput(
        loss=weighted.sum() / valid_mask.sum().clamp(min=1),
        pixel_loss=pixel_loss,
        weight=weight,
        k=k,
        positive_classes=positive_classes,
        in_set=in_set,
        valid_mask=valid_mask,
        num_classes=num_classes,
    )


def _valid_mask(student_logits: torch.Tensor, ignore_mask: torch.Tensor | None) -> torch.Tensor:
    batch, _, height, width = student_logits.shape
    if ignore_mask is None:
        return torch.ones(batch, height, width, dtype=torch.bool, device=student_logits.device)
    if ignore_mask.shape != (batch, height, width):
        raise ValueError(
            f"`ignore_mask` must have shape (B, H, W) = {(batch, height, width)}, got {tuple(ignore_mask.shape)}."
        )
    return ~ignore_mask.to(device=student_logits.device, dtype=torch.bool)


def _prepare(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    threshold: float,
    weight: str,
    semantics: str,
    allow_zero_threshold: bool,
) -> torch.Tensor:
    """Validates the common arguments and returns the teacher's probabilities (detached)."""
    _check_logits("student_logits", student_logits)
    _check_logits("teacher_logits", teacher_logits)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"`student_logits` {tuple(student_logits.shape)} and `teacher_logits` "
            f"{tuple(teacher_logits.shape)} must have the same shape."
        )
    check_threshold(threshold, allow_zero=allow_zero_threshold)
    _check_choice("weight", weight, WEIGHTS)
    _check_choice("semantics", semantics, SEMANTICS)
    teacher = teacher_logits.detach()
    return torch.softmax(teacher.to(_compute_dtype(teacher)), dim=1)


def fuzzy_positive_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    threshold: float = 0.9,
    *,
    weight: Weighting = "concave",
    semantics: Semantics = "code",
    kmax: int | None = None,
    A: float = 50.0,
    ignore_mask: torch.Tensor | None = None,
) -> PseudoLabelLossOutput:
    """Fuzzy positive learning: FPA on the teacher, FPR on the student, adaptive weight.

    Args:
        student_logits: (B, C, H, W) logits that receive the gradient.
        teacher_logits: (B, C, H, W) logits that define the fuzzy positive sets (detached here).
        threshold: T of FPA, in (0, 1).
        weight: adaptive weight, "concave" (paper's best), "linear", "convex" or "none".
        semantics: "code" (released code: `>=`, K <= 3, top-(K+1) mean, convex 1q) or "paper".
        kmax: cap on K, overriding the semantics' own.
        A: steepness of the concave weight.
        ignore_mask: (B, H, W) bool, True where a pixel must not count (padding, ignore labels).
    """
    teacher_probs = _prepare(student_logits, teacher_logits, threshold, weight, semantics, False)
    kmax = _resolve_kmax(student_logits.shape[1], semantics, kmax)
    with torch.no_grad():
        positive_classes, in_set, k, top_probs = _assign(teacher_probs, threshold, semantics, kmax)
        pixel_weight = adaptive_weight(top_probs, k, weight, semantics=semantics, A=A)
    num_classes = teacher_probs.shape[1]
    del teacher_probs
    logits = student_logits.to(_compute_dtype(student_logits))
    pixel_loss = _FuzzyPositiveRegularization.apply(logits, positive_classes, in_set)
    valid_mask = _valid_mask(student_logits, ignore_mask)
    return _output(pixel_loss, pixel_weight, k, positive_classes, in_set, valid_mask, num_classes)


def pseudo_label_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    threshold: float = 0.0,
    *,
    ignore_mask: torch.Tensor | None = None,
) -> PseudoLabelLossOutput:
    """Vanilla pseudo-label cross-entropy (Eq. 2), returning what `fuzzy_positive_loss` returns.

    K is 1 everywhere. `threshold` is the confidence threshold of FixMatch-style frameworks
    (UniMatch: 0.95): pixels whose top teacher probability is below it get weight 0; 0 keeps all.
    """
    teacher_probs = _prepare(student_logits, teacher_logits, threshold, "none", "code", True)
    with torch.no_grad():
        # FPA capped at one class is the argmax, with the same tie rule as the fuzzy sets.
        pseudo_labels, in_set, k, top_probs = _assign(teacher_probs, 0.5, "code", kmax=1)
        confidence = top_probs[:, 0]
        # A NaN teacher keeps its NaN, so that the trainer's non-finite check sees it rather than a weight of 0.
        pixel_weight = (confidence >= threshold).to(confidence.dtype).masked_fill_(confidence.isnan(), torch.nan)
    num_classes = teacher_probs.shape[1]
    del teacher_probs
    logits = student_logits.to(_compute_dtype(student_logits))
    pixel_loss = F.cross_entropy(logits, pseudo_labels[:, 0], reduction="none")
    valid_mask = _valid_mask(student_logits, ignore_mask)
    return _output(pixel_loss, pixel_weight, k, pseudo_labels, in_set, valid_mask, num_classes)


def positive_gradient_score(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    threshold: float = 0.9,
    *,
    loss: Literal["fpl", "ce"] = "fpl",
    semantics: Semantics = "code",
    kmax: int | None = None,
    ignore_index: int = 255,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive gradient score R = (dL/dz_gt) / sum_{i in Y} dL/dz_i (Eq. 12), per pixel.

    Returns R (B, H, W) and the case of each pixel: 1 = pseudo-label right, 2 = wrong but the
    ground truth is in the fuzzy set, 3 = ground truth outside it, 0 = ignored label (R = NaN).
    With `loss="ce"` the denominator is the gradient of the pseudo-label alone.
    """
    _check_choice("loss", loss, ("fpl", "ce"))
    teacher_probs = _prepare(student_logits, teacher_logits, threshold, "none", semantics, False)
    if labels.shape != teacher_probs.shape[:1] + teacher_probs.shape[2:]:
        raise ValueError(f"`labels` must have shape (B, H, W), got {tuple(labels.shape)}.")
    kmax = _resolve_kmax(student_logits.shape[1], semantics, kmax)
    with torch.no_grad():
        positive_classes, _, _, _ = _assign(teacher_probs, threshold, semantics, kmax)
        fuzzy_mask = _mask_of(positive_classes, teacher_probs.shape[1])
        pseudo_labels = teacher_probs.argmax(1)
        valid = labels != ignore_index
        gt = labels.masked_fill(~valid, 0).long().unsqueeze(1)
        gt_in_set = fuzzy_mask.gather(1, gt).squeeze(1)
        case = torch.where(pseudo_labels == gt.squeeze(1), 1, torch.where(gt_in_set, 2, 3))
        case = case.masked_fill(~valid, 0)

        logits = student_logits.detach().to(teacher_probs.dtype)
        positive_mask = fuzzy_mask if loss == "fpl" else F.one_hot(pseudo_labels, logits.shape[1]).movedim(-1, 1).bool()
        neg_inf = torch.finfo(logits.dtype).min
        lse_pos = torch.logsumexp(torch.where(positive_mask, -logits, neg_inf), dim=1)
        lse_neg = torch.logsumexp(logits.masked_fill(positive_mask, neg_inf), dim=1)
        z_gt = logits.gather(1, gt).squeeze(1)
        # From Eq. 8 the sum over Y of dL/dz_i is -sigmoid(total); dividing cancels the sigmoid.
        gt_positive = positive_mask.gather(1, gt).squeeze(1)
        score = torch.where(gt_positive, torch.exp(-z_gt - lse_pos), -torch.exp(z_gt - lse_neg))
        score = score.masked_fill(~valid, float("nan"))
    return score, case


def ohem_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    threshold: float = 0.7,
    min_kept: int = 50_000,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Online hard example mining (the CPS Cityscapes recipe): cross-entropy over the pixels whose probability
    of the true class is below `threshold`, and at least the `min_kept` hardest labeled pixels."""
    pixel_loss = F.cross_entropy(logits.float(), labels, ignore_index=ignore_index, reduction="none").flatten()
    valid = labels.flatten() != ignore_index
    if not valid.any():
        return pixel_loss.sum() * 0.0
    with torch.no_grad():
        true_prob = torch.exp(-pixel_loss[valid])
        kept = min(min_kept, true_prob.numel())
        cutoff = max(threshold, true_prob.kthvalue(kept).values.item()) if kept > 0 else threshold
    hard = valid.clone()
    hard[valid] = true_prob <= cutoff
    return pixel_loss[hard].mean()


def k_shares(k: torch.Tensor, valid_mask: torch.Tensor | None = None, max_k: int = 3) -> dict[str, float]:
    """Share of pixels with K = 1, 2, ..., and K >= max_k, e.g. {"k1": 0.9, "k2": 0.07, "k3+": 0.03}."""
    return {name: share.item() for name, share in k_share_tensors(k, valid_mask, max_k).items()}


def k_share_tensors(k: torch.Tensor, valid_mask: torch.Tensor | None = None, max_k: int = 3) -> dict[str, torch.Tensor]:
    """`k_shares` as 0-dim tensors on `k`'s device, computed without waiting for it (no host synchronisation)."""
    valid = torch.ones_like(k, dtype=torch.bool) if valid_mask is None else valid_mask
    total = valid.sum().clamp(min=1)
    shares = {f"k{n}": ((k == n) & valid).sum() / total for n in range(1, max_k)}
    shares[f"k{max_k}+"] = ((k >= max_k) & valid).sum() / total
    return shares


__all__ = [
    "PseudoLabelLossOutput",
    "check_threshold",
    "fuzzy_positive_assignment",
    "adaptive_weight",
    "fuzzy_positive_loss",
    "pseudo_label_cross_entropy",
    "positive_gradient_score",
    "k_shares",
    "ohem_cross_entropy",
]
