"""Tests that fail when the method breaks: who teaches whom in CPS, what reaches the loss, what gets logged."""

import pytest
import torch

from conftest import make_trainer
from fpl_hf.losses import fuzzy_positive_loss, pseudo_label_cross_entropy
from fpl_hf.trainer.frameworks import FRAMEWORKS, PseudoLabelPair
from fpl_hf.trainer.frameworks.base import mix, without_dropout


def capture_pairs(trainer, value=7.0):
    """Replaces the unsupervised loss by a constant `value` per pair (with gradient) and keeps the pairs."""
    pairs = []

    def fake(*given):
        pairs.extend(given)
        return [student.sum() * 0 + value for student, _, _, _ in given]

    trainer.unsupervised_loss = fake
    return pairs


@pytest.mark.parametrize("cutmix", [True, False])
def test_each_cps_branch_learns_from_the_other_branch(scenes, tmp_path, cutmix):
    trainer = make_trainer(scenes, tmp_path, framework="cps", cutmix=cutmix, unsup_weight=3.0)
    pair = trainer.model.train()
    batch = trainer.data_collator([trainer.train_dataset[index] for index in range(2)])
    pairs = capture_pairs(trainer)
    loss = FRAMEWORKS["cps"].step(trainer, pair, batch)
    # The total holds the unsupervised terms, weighted: 2 pairs x 7.0 x beta 3.
    assert loss.item() == pytest.approx(trainer._metrics["train"]["sup"][-1] + 3.0 * 14.0, rel=1e-5)

    unlabeled = batch["unlabeled_pixel_values"]
    with torch.no_grad(), without_dropout(pair):
        if cutmix:
            box = batch["cutmix_masks"][:, 0]
            expected = [mix(branch(pixel_values=unlabeled[:, 0]).logits, branch(pixel_values=unlabeled[:, 1]).logits, box)
                        for branch in (pair.branch_1, pair.branch_2)]
        else:
            expected = [branch(pixel_values=unlabeled[:, 0]).logits for branch in (pair.branch_1, pair.branch_2)]
    (student_1, teacher_for_1, _, _), (student_2, teacher_for_2, _, _) = pairs
    if cutmix:  # the teachers ran without dropout: their targets can be recomputed exactly
        torch.testing.assert_close(teacher_for_1, expected[1])  # branch 1 is taught by branch 2
        torch.testing.assert_close(teacher_for_2, expected[0])
    assert not teacher_for_1.requires_grad and not teacher_for_2.requires_grad
    # Each student's gradient reaches its own branch only.
    for student, own, other in ((student_1, pair.branch_1, pair.branch_2), (student_2, pair.branch_2, pair.branch_1)):
        own_grad = torch.autograd.grad(student.sum(), own.classifier.weight, retain_graph=True)[0]
        other_grad = torch.autograd.grad(student.sum(), other.classifier.weight, retain_graph=True, allow_unused=True)[0]
        assert own_grad.abs().sum() > 0 and other_grad is None
    if not cutmix:  # without CutMix each branch is taught by the other's prediction of the same image
        torch.testing.assert_close(teacher_for_1, student_2.detach())
        torch.testing.assert_close(teacher_for_2, student_1.detach())


def random_pair(seed=0, classes=11):
    generator = torch.Generator().manual_seed(seed)
    student = 2 * torch.randn(2, classes, 6, 6, generator=generator)
    teacher = 2 * torch.randn(2, classes, 6, 6, generator=generator)
    valid = torch.rand(2, 6, 6, generator=generator) > 0.3
    return PseudoLabelPair(student, teacher, valid, torch.full((2, 6, 6), 255))


@pytest.mark.parametrize(
    "options",
    [
        dict(threshold=0.7, semantics="paper", kmax=2, fpl_weight="linear"),
        dict(threshold=0.95, semantics="code", fpl_weight="concave", concave_a=10.0),
        dict(threshold=0.8, fpl_weight="convex", semantics="paper"),
    ],
)
def test_the_trainer_gives_the_loss_every_fpl_option_and_the_padding_mask(scenes, tmp_path, options):
    trainer = make_trainer(scenes, tmp_path, framework="cps", loss_options=options)
    pair = random_pair()
    student, teacher, valid, _ = pair
    (loss,) = trainer.unsupervised_loss(pair)
    expected = fuzzy_positive_loss(
        student, teacher, options["threshold"], weight=options["fpl_weight"], semantics=options["semantics"],
        kmax=options.get("kmax"), A=options.get("concave_a", 50.0), ignore_mask=~valid,
    ).loss
    torch.testing.assert_close(loss, expected)
    defaults = fuzzy_positive_loss(student, teacher, ignore_mask=~valid).loss
    unmasked = fuzzy_positive_loss(student, teacher, options["threshold"], weight=options["fpl_weight"],
                                   semantics=options["semantics"], kmax=options.get("kmax"),
                                   A=options.get("concave_a", 50.0)).loss
    assert not torch.isclose(loss, defaults) and not torch.isclose(loss, unmasked)


def test_the_trainer_gives_the_cross_entropy_its_confidence_threshold_and_mask(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="unimatch", unsup_loss="ce",
                           loss_options={"confidence_threshold": 0.3})
    pair = random_pair()
    student, teacher, valid, _ = pair
    (loss,) = trainer.unsupervised_loss(pair)
    torch.testing.assert_close(loss, pseudo_label_cross_entropy(student, teacher, 0.3, ignore_mask=~valid).loss)
    assert not torch.isclose(loss, pseudo_label_cross_entropy(student, teacher, 0.95, ignore_mask=~valid).loss)


def test_logged_k_shares_and_pseudo_label_statistics_equal_a_count_by_hand(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps", loss_options={"threshold": 0.9, "semantics": "code"})
    trainer.model.train()
    # Five pixels of a 4-class teacher, (probabilities, hidden label). Code semantics: n = 1 + #{m : cum(m) < 0.9}
    # over the top 3, K = n - 1 (at least 1); the fuzzy set is the top K.
    pixels = [
        ([0.97, 0.01, 0.01, 0.01], 0),  # cum 0.97: K 1, set {0}; right
        ([0.50, 0.30, 0.15, 0.05], 1),  # cum 0.50 0.80 0.95: K 2, set {0, 1}; wrong, truth in the set
        ([0.40, 0.30, 0.16, 0.14], 3),  # cum 0.40 0.70 0.86: K 3, set {0, 1, 2}; wrong, truth outside
        ([0.60, 0.35, 0.04, 0.01], 1),  # cum 0.60 0.95: K 1, set {0}; wrong, truth outside
        ([0.26, 0.25, 0.25, 0.24], 255),  # K 3; unknown truth: in the K shares, not in the accuracy
        ([0.99, 0.00, 0.00, 0.01], 0),  # crop padding (not valid): in neither
    ]
    probabilities = torch.tensor([p for p, _ in pixels]).T.reshape(1, 4, 1, 6).clamp(min=1e-6)
    teacher = probabilities.log()
    diagnostic = torch.tensor([[[truth for _, truth in pixels]]])
    valid = torch.tensor([[[True] * 5 + [False]]])
    trainer.unsupervised_loss(PseudoLabelPair(torch.zeros_like(teacher), teacher, valid, diagnostic))
    logged = {name: values[-1] for name, values in trainer._metrics["train"].items()}
    assert (logged["k1"], logged["k2"], logged["k3+"]) == pytest.approx((2 / 5, 1 / 5, 2 / 5))
    assert logged["pseudo_label_accuracy"] == pytest.approx(1 / 4)
    assert logged["case_wrong_in_set"] == pytest.approx(1 / 4)
    assert logged["case_outside_set"] == pytest.approx(2 / 4)
