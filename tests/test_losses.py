"""FPL losses against a naive per-pixel float64 reference written from the paper's equations."""

import math

import pytest
import torch
import torch.nn.functional as F

from fpl_hf.losses import (
    fuzzy_positive_assignment,
    fuzzy_positive_loss,
    k_shares,
    positive_gradient_score,
    pseudo_label_cross_entropy,
)


def reference_pixel(z, p, threshold, semantics, weight, kmax, A):
    """One pixel: FPA (Algorithm 1), L (Eq. 7), dL/dz (Eq. 8), w (Eq. 10, 11, 16)."""
    C = len(p)
    cap = min(kmax if kmax is not None else (3 if semantics == "code" else C - 1), C - 1)
    order = sorted(range(C), key=lambda c: (-p[c], c))
    cumulative, n = 0.0, C
    for rank, c in enumerate(order, start=1):
        cumulative += p[c]
        reached = cumulative >= threshold if semantics == "code" else cumulative > threshold
        if reached:
            n = rank
            break
    K = min(max(n - 1, 1), cap)
    Y = set(order[:K])
    s_pos = sum(math.exp(-z[i]) for i in Y)
    s_neg = sum(math.exp(z[j]) for j in range(C) if j not in Y)
    D = 1 + s_pos * s_neg
    loss = math.log(D)
    grad = [(-math.exp(-z[c]) * s_neg / D) if c in Y else (math.exp(z[c]) * s_pos / D) for c in range(C)]
    top = [p[c] for c in order]
    q = top[K]
    m = sum(top[:K]) / K if semantics == "paper" else sum(top[: K + 1]) / (K + 1)
    if weight == "concave":
        w = math.log(1 + A * (m - q)) / math.log(1 + A * m)
    elif weight == "linear":
        w = (m - q) / m
    elif weight == "convex":
        w = (m - q) / (m + (4.0 if semantics == "paper" else 1.0) * q)
    else:
        w = 1.0
    return K, Y, loss, grad, w


def teacher_logits_with_special_pixels(C, seed):
    generator = torch.Generator().manual_seed(seed)
    B, H, W = 2, 5, 6
    temperature = torch.rand(B, 1, H, W, generator=generator, dtype=torch.float64) * 6 + 0.2
    teacher = torch.randn(B, C, H, W, generator=generator, dtype=torch.float64) * temperature
    teacher[0, :, 0, 0] = 0.0  # uniform: ties everywhere, cum exactly k/C
    teacher[0, :, 0, 1] = -1e4
    teacher[0, :2, 0, 1] = 0.0  # two tied top classes, p = 0.5 exactly: on the boundary for T = 0.5
    teacher[0, :, 0, 2] = -1e4
    teacher[0, 3, 0, 2] = 0.0  # one certain class
    teacher[1, :, 1, 1] = -1e4
    teacher[1, 1:4, 1, 1] = 0.0  # three-way tie
    return teacher


@pytest.mark.parametrize("C", [4, 19, 21])
@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.95])
@pytest.mark.parametrize("semantics", ["code", "paper"])
@pytest.mark.parametrize("weight", ["concave", "linear", "convex", "none"])
def test_matches_naive_reference(C, threshold, semantics, weight):
    teacher = teacher_logits_with_special_pixels(C, seed=C)
    student = torch.randn(teacher.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    student.requires_grad_(True)
    out = fuzzy_positive_loss(student, teacher, threshold, weight=weight, semantics=semantics, A=50.0)
    out.loss.backward()

    probs = torch.softmax(teacher, dim=1)
    B, _, H, W = teacher.shape
    expected_total = 0.0
    for b in range(B):
        for h in range(H):
            for w in range(W):
                z = student[b, :, h, w].tolist()
                p = probs[b, :, h, w].tolist()
                K, Y, loss, grad, weight_value = reference_pixel(z, p, threshold, semantics, weight, None, 50.0)
                assert out.k[b, h, w].item() == K
                assert set(out.positive_mask[b, :, h, w].nonzero().flatten().tolist()) == Y
                assert out.pixel_loss[b, h, w].item() == pytest.approx(loss, rel=1e-6, abs=1e-6)
                assert out.weight[b, h, w].item() == pytest.approx(weight_value, rel=1e-6, abs=1e-6)
                expected_grad = torch.tensor(grad, dtype=torch.float64) * weight_value / (B * H * W)
                torch.testing.assert_close(student.grad[b, :, h, w], expected_grad, rtol=1e-6, atol=1e-9)
                expected_total += weight_value * loss
    assert out.loss.item() == pytest.approx(expected_total / (B * H * W), rel=1e-6)


def dyadic_probabilities(C, seed, dtype):
    """(2, C, 8, 9) probabilities in multiples of 1/64: exact in float32, full of ties and zeros."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.rand(2 * 8 * 9, C, generator=generator) ** 4
    draws = torch.multinomial(weights, 64, replacement=True, generator=generator)
    counts = torch.zeros(2 * 8 * 9, C).scatter_add_(1, draws, torch.ones(draws.shape))
    if 64 % C == 0:
        counts[0] = 64 / C  # a uniform pixel, ties everywhere
    return (counts / 64).to(dtype).view(2, 8, 9, C).permute(0, 3, 1, 2)


@pytest.mark.parametrize("C", [2, 5, 21, 150])
def test_top_classes_of_float32_on_cpu_are_a_stable_sort(C, monkeypatch):
    import fpl_hf.losses as losses

    probs = dyadic_probabilities(C, seed=C, dtype=torch.float32)
    probs[1, :, 0, 0] = 1e-45  # subnormal float32
    probs[1, 0, 0, 1] = 0.0
    # Blocks of 7 pixels: several of them, and the last one short (72 pixels a sample).
    monkeypatch.setattr(losses, "_KEY_BLOCK_BYTES", 8 * 2 * C * 7)
    sorted_probs, sorted_classes = probs.sort(dim=1, descending=True, stable=True)
    for n in sorted({1, 2, min(4, C)}):
        top, classes = losses._top_classes(probs, n)
        assert top.dtype == torch.float32 and classes.dtype == torch.int64
        assert torch.equal(top, sorted_probs[:, :n]) and torch.equal(classes, sorted_classes[:, :n])


def test_nan_teacher_gives_a_nan_loss_not_an_index_error():
    teacher = torch.randn(2, 11, 4, 4)
    teacher[1, :, 2, 3] = torch.nan
    for loss in (fuzzy_positive_loss, pseudo_label_cross_entropy):
        out = loss(torch.randn(2, 11, 4, 4), teacher)
        assert out.loss.isnan() and (out.pixel_loss * out.weight)[0].isfinite().all()


@pytest.mark.parametrize("C", [2, 5, 21])
@pytest.mark.parametrize("threshold", [0.5, 0.75, 0.9])
def test_fuzzy_sets_of_float32_probabilities_match_the_reference(C, threshold):
    probs = dyadic_probabilities(C, seed=C + 1, dtype=torch.float32)
    mask, k = fuzzy_positive_assignment(probs, threshold, semantics="code")
    mask64, k64 = fuzzy_positive_assignment(probs.double(), threshold, semantics="code")
    assert torch.equal(mask, mask64) and torch.equal(k, k64)
    for b, h, w in [(0, 0, 0), (0, 3, 4), (1, 7, 8), (1, 2, 5)]:
        K, Y, *_ = reference_pixel([0.0] * C, probs[b, :, h, w].tolist(), threshold, "code", "none", None, 50.0)
        assert k[b, h, w].item() == K and set(mask[b, :, h, w].nonzero().flatten().tolist()) == Y


def test_boundary_pixels_follow_each_semantics():
    probs = torch.tensor([[0.25, 0.25, 0.25, 0.25], [0.5, 0.25, 0.125, 0.125], [0.125, 0.25, 0.125, 0.5]])
    probs = probs.to(torch.float64)[:, :, None, None]  # (B=3, C=4, 1, 1)
    _, k_code = fuzzy_positive_assignment(probs, 0.5, semantics="code")
    _, k_paper = fuzzy_positive_assignment(probs, 0.5, semantics="paper")
    # uniform: cum(2) = 0.5 reaches T with >= (n = 2, K = 1) but not with > (n = 3, K = 2)
    assert k_code.flatten().tolist() == [1, 1, 1]
    assert k_paper.flatten().tolist() == [2, 1, 1]
    mask, k = fuzzy_positive_assignment(probs, 0.75, semantics="paper")
    assert k.flatten().tolist() == [3, 2, 2]
    assert mask[0, :, 0, 0].tolist() == [True, True, True, False]  # ties: lowest class index first
    assert mask[2, :, 0, 0].tolist() == [False, True, False, True]


def test_k_is_capped_and_never_reaches_C():
    flat = torch.zeros(1, 21, 2, 2)
    _, k_code = fuzzy_positive_assignment(torch.softmax(flat, 1), 0.95, semantics="code")
    _, k_paper = fuzzy_positive_assignment(torch.softmax(flat, 1), 0.95, semantics="paper")
    _, k_two = fuzzy_positive_assignment(torch.softmax(flat, 1), 0.95, semantics="paper", kmax=2)
    _, k_binary = fuzzy_positive_assignment(torch.softmax(torch.zeros(1, 2, 1, 1), 1), 0.99, semantics="paper")
    assert (k_code == 3).all() and (k_paper == 19).all() and (k_two == 2).all() and (k_binary == 1).all()


def test_confident_pixel_gets_k_one():
    probs = torch.tensor([0.93, 0.05, 0.02])[None, :, None, None]
    _, k = fuzzy_positive_assignment(probs, 0.9, semantics="paper")
    assert k.item() == 1


def test_k_one_is_cross_entropy_against_teacher_argmax():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 21, 8, 8, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2, 21, 8, 8, generator=generator, dtype=torch.float64)
    out = fuzzy_positive_loss(student, teacher, 0.9, weight="none", kmax=1)
    assert (out.k == 1).all()
    expected = F.cross_entropy(student, teacher.argmax(1), reduction="none")
    torch.testing.assert_close(out.pixel_loss, expected, rtol=1e-12, atol=1e-12)
    ce = pseudo_label_cross_entropy(student, teacher)
    torch.testing.assert_close(ce.loss, expected.mean(), rtol=1e-12, atol=1e-12)
    assert (ce.k == 1).all() and (ce.positive_mask.sum(1) == 1).all()


def test_fuzzy_positives_are_pushed_up_and_negatives_down():
    generator = torch.Generator().manual_seed(3)
    student = (torch.randn(2, 19, 6, 6, generator=generator) * 4).requires_grad_(True)
    teacher = torch.randn(2, 19, 6, 6, generator=generator) * 2
    out = fuzzy_positive_loss(student, teacher, 0.9, weight="none", semantics="paper")
    out.loss.backward()
    assert (out.k > 1).any()
    assert (student.grad[out.positive_mask] < 0).all()
    assert (student.grad[~out.positive_mask] > 0).all()


def test_teacher_gets_no_gradient_and_weight_is_detached():
    student = torch.randn(2, 5, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 5, 4, 4, requires_grad=True)
    out = fuzzy_positive_loss(student, teacher, 0.9)
    assert not out.weight.requires_grad
    out.loss.backward()
    assert teacher.grad is None
    assert student.grad is not None


def test_extreme_logits_are_finite_in_fp32():
    generator = torch.Generator().manual_seed(0)
    student = (torch.randn(2, 21, 8, 8, generator=generator) * 1e4).requires_grad_(True)
    teacher = torch.randn(2, 21, 8, 8, generator=generator) * 1e4
    for semantics in ("code", "paper"):
        out = fuzzy_positive_loss(student, teacher, 0.9, semantics=semantics)
        (grad,) = torch.autograd.grad(out.loss, student)
        assert torch.isfinite(out.loss) and torch.isfinite(out.pixel_loss).all() and torch.isfinite(grad).all()
    assert out.pixel_loss.max() > 1e3  # no silent clamping


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_give_finite_results(dtype):
    generator = torch.Generator().manual_seed(0)
    student = (torch.randn(2, 21, 8, 8, generator=generator) * 30).to(dtype).requires_grad_(True)
    teacher = (torch.randn(2, 21, 8, 8, generator=generator) * 30).to(dtype)
    out = fuzzy_positive_loss(student, teacher, 0.9)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(student.grad.float()).all()
    assert student.grad.dtype == dtype
    reference = fuzzy_positive_loss(student.detach().double(), teacher.double(), 0.9)
    assert out.loss.item() == pytest.approx(reference.loss.item(), rel=1e-3)


def test_ignore_mask_excludes_pixels():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(2, 6, 5, 5, generator=generator, requires_grad=True)
    teacher = torch.randn(2, 6, 5, 5, generator=generator)
    ignore = torch.zeros(2, 5, 5, dtype=torch.bool)
    ignore[0, :2] = True
    out = fuzzy_positive_loss(student, teacher, 0.9, ignore_mask=ignore)
    out.loss.backward()
    assert (student.grad[0, :, :2] == 0).all() and (student.grad[0, :, 2:] != 0).any()
    changed = student.detach().clone()
    changed[0, :, :2] = 100.0
    again = fuzzy_positive_loss(changed, teacher, 0.9, ignore_mask=ignore)
    assert again.loss.item() == pytest.approx(out.loss.item(), rel=1e-6)
    expected = (out.pixel_loss * out.weight)[~ignore].mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_confidence_threshold_of_the_cross_entropy_masks_uncertain_pixels():
    teacher = torch.tensor([[4.0, 0.0], [0.1, 0.0]]).T[None, :, :, None]  # pixel 0 certain, pixel 1 not
    student = torch.zeros(1, 2, 2, 1)
    out = pseudo_label_cross_entropy(student, teacher, 0.95)
    assert out.weight.flatten().tolist() == [1.0, 0.0]
    assert out.loss.item() == pytest.approx(math.log(2) / 2)


def test_positive_gradient_score_matches_autograd_and_the_paper_signs():
    generator = torch.Generator().manual_seed(5)
    student = torch.randn(2, 8, 6, 6, generator=generator, dtype=torch.float64) * 2
    teacher = torch.randn(2, 8, 6, 6, generator=generator, dtype=torch.float64) * 1.5
    labels = torch.randint(0, 8, (2, 6, 6), generator=generator)
    labels[0, 0, 0] = 255
    score, case = positive_gradient_score(student, teacher, labels, 0.9, semantics="paper")
    ce_score, ce_case = positive_gradient_score(student, teacher, labels, 0.9, semantics="paper", loss="ce")
    assert torch.equal(case, ce_case) and case[0, 0, 0] == 0 and torch.isnan(score[0, 0, 0])
    assert {1, 2, 3} <= set(case.unique().tolist())

    logits = student.clone().requires_grad_(True)
    out = fuzzy_positive_loss(logits, teacher, 0.9, weight="none", semantics="paper")
    (grad,) = torch.autograd.grad(out.pixel_loss.sum(), logits)
    valid = labels != 255
    gt = labels.clamp(max=7).unsqueeze(1)
    expected = grad.gather(1, gt).squeeze(1) / (grad * out.positive_mask).sum(1)
    torch.testing.assert_close(score[valid], expected[valid])

    assert (score[case == 2] > 0).all()  # FPL still pushes the true class up
    assert (ce_score[case == 2] < 0).all()  # the vanilla pseudo-label pushes it down
    assert (score[case == 3] < 0).all() and (ce_score[case == 1] == 1).all()


def test_k_shares_sum_to_one():
    k = torch.tensor([[1, 1, 2, 3, 5, 1]])
    shares = k_shares(k)
    assert shares == pytest.approx({"k1": 0.5, "k2": 1 / 6, "k3+": 2 / 6})
    assert k_shares(k, k > 1) == pytest.approx({"k1": 0.0, "k2": 1 / 3, "k3+": 2 / 3})


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        (dict(student=torch.randn(2, 4, 3, 3), teacher=torch.randn(2, 4, 3, 5)), "student_logits"),
        (dict(student=torch.randn(2, 1, 3, 3), teacher=torch.randn(2, 1, 3, 3)), "C >= 2"),
        (dict(threshold=1.0), "threshold"),
        (dict(threshold=0.0), "threshold"),
        (dict(weight="cubic"), "weight"),
        (dict(semantics="both"), "semantics"),
        (dict(kmax=0), "kmax"),
        (dict(ignore_mask=torch.zeros(2, 3, 4, dtype=torch.bool)), "ignore_mask"),
    ],
)
def test_bad_input_names_the_argument(kwargs, argument):
    student = kwargs.pop("student", torch.randn(2, 4, 3, 3))
    teacher = kwargs.pop("teacher", torch.randn(2, 4, 3, 3))
    threshold = kwargs.pop("threshold", 0.9)
    with pytest.raises(ValueError, match=argument):
        fuzzy_positive_loss(student, teacher, threshold, **kwargs)


def test_ohem_keeps_the_pixels_below_the_threshold_and_at_least_min_kept():
    from fpl_hf.losses import ohem_cross_entropy

    true_class_probability = torch.tensor([0.9, 0.6, 0.3, 0.1])
    logits = torch.stack([true_class_probability.log(), (1 - true_class_probability).log()]).view(1, 2, 1, 4)
    labels = torch.zeros(1, 1, 4, dtype=torch.long)
    pixel_loss = -true_class_probability.log()
    hard = ohem_cross_entropy(logits, labels, threshold=0.7, min_kept=1)
    torch.testing.assert_close(hard, pixel_loss[1:].mean())  # p < 0.7
    everything = ohem_cross_entropy(logits, labels, threshold=0.7, min_kept=4)
    torch.testing.assert_close(everything, pixel_loss.mean())  # the minimum brings back the easy pixel
    labels[..., 1] = 255
    torch.testing.assert_close(ohem_cross_entropy(logits, labels, threshold=0.7, min_kept=1), pixel_loss[2:].mean())


@pytest.mark.parametrize("shape", [(0, 5, 4, 4), (2, 5, 0, 4)])
def test_empty_inputs_give_a_zero_loss(shape):
    for loss in (fuzzy_positive_loss, pseudo_label_cross_entropy):
        out = loss(torch.randn(shape), torch.randn(shape))
        assert out.loss.item() == 0.0 and out.k.shape == (shape[0],) + shape[2:]
