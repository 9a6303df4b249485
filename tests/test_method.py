"""Tests that fail when the method breaks: who teaches whom in CPS, what reaches the loss, what gets logged."""

import copy
from types import SimpleNamespace

import pytest
import torch
from conftest import capture_pairs, make_trainer, one_batch, recorded_inputs
from transformers import Trainer

from fpl_hf.losses import fuzzy_positive_loss, pseudo_label_cross_entropy
from fpl_hf.trainer.frameworks import FRAMEWORKS, PseudoLabelPair, unimatch_v2
from fpl_hf.trainer.frameworks.base import eval_mode_logits, mix, without_dropout


@pytest.mark.parametrize("cutmix", [True, False])
def test_each_cps_branch_learns_from_the_other_branch(scenes, tmp_path, cutmix):
    trainer = make_trainer(
        scenes, tmp_path, framework="cps", cutmix=cutmix, unsup_weight=3.0, framework_options={"strong_views": False}
    )
    pair = trainer.model.train()
    batch = one_batch(trainer, 2)
    pairs = capture_pairs(trainer)
    loss = FRAMEWORKS["cps"].step(trainer, pair, batch)
    # The total holds the unsupervised terms, weighted: 2 pairs x 7.0 x beta 3.
    assert loss.item() == pytest.approx(float(trainer._metrics["train"]["sup"][-1]) + 3.0 * 14.0, rel=1e-5)

    unlabeled = batch["unlabeled_pixel_values"]
    with torch.no_grad(), without_dropout(pair):
        if cutmix:
            box = batch["cutmix_masks"][:, 0]
            expected = [
                mix(branch(pixel_values=unlabeled[:, 0]).logits, branch(pixel_values=unlabeled[:, 1]).logits, box)
                for branch in (pair.branch_1, pair.branch_2)
            ]
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
        other_grad = torch.autograd.grad(student.sum(), other.classifier.weight, retain_graph=True, allow_unused=True)[
            0
        ]
        assert own_grad.abs().sum() > 0 and other_grad is None
    if not cutmix:  # without CutMix each branch is taught by the other's prediction of the same image
        torch.testing.assert_close(teacher_for_1, student_2.detach())
        torch.testing.assert_close(teacher_for_2, student_1.detach())


@pytest.mark.parametrize("cutmix", [True, False])
def test_cps_students_learn_on_strong_views_what_the_teachers_say_of_the_weak_ones(scenes, tmp_path, cutmix):
    trainer = make_trainer(scenes, tmp_path, framework="cps", cutmix=cutmix)  # strong student views by default
    pair = trainer.model.train()
    batch = one_batch(trainer, 4)
    inputs = recorded_inputs(pair)
    pairs = capture_pairs(trainer)
    FRAMEWORKS["cps"].step(trainer, pair, batch)
    weak, strong = batch["unlabeled_pixel_values"], batch["unlabeled_strong_pixel_values"][:, :, 0]
    with torch.no_grad(), without_dropout(pair):
        if cutmix:
            box = batch["cutmix_masks"][:, 0]
            students = mix(strong[:, 0], strong[:, 1], box)
            expected = [
                mix(branch(pixel_values=weak[:, 0]).logits, branch(pixel_values=weak[:, 1]).logits, box)
                for branch in (pair.branch_1, pair.branch_2)
            ]
        else:
            students = strong[:, 0]
            expected = [branch(pixel_values=weak[:, 0]).logits for branch in (pair.branch_1, pair.branch_2)]
    assert torch.equal(inputs[-1], students) and not torch.equal(students, weak[:, 0])
    torch.testing.assert_close(pairs[0].teacher, expected[1])  # branch 1 taught by branch 2, on the weak view
    torch.testing.assert_close(pairs[1].teacher, expected[0])


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
        student,
        teacher,
        options["threshold"],
        weight=options["fpl_weight"],
        semantics=options["semantics"],
        kmax=options.get("kmax"),
        A=options.get("concave_a", 50.0),
        ignore_mask=~valid,
    ).loss
    torch.testing.assert_close(loss, expected)
    defaults = fuzzy_positive_loss(student, teacher, ignore_mask=~valid).loss
    unmasked = fuzzy_positive_loss(
        student,
        teacher,
        options["threshold"],
        weight=options["fpl_weight"],
        semantics=options["semantics"],
        kmax=options.get("kmax"),
        A=options.get("concave_a", 50.0),
    ).loss
    assert not torch.isclose(loss, defaults) and not torch.isclose(loss, unmasked)


def test_the_trainer_gives_the_cross_entropy_its_confidence_threshold_and_mask(scenes, tmp_path):
    trainer = make_trainer(
        scenes, tmp_path, framework="unimatch", unsup_loss="ce", loss_options={"confidence_threshold": 0.3}
    )
    pair = random_pair()
    student, teacher, valid, _ = pair
    (loss,) = trainer.unsupervised_loss(pair)
    torch.testing.assert_close(loss, pseudo_label_cross_entropy(student, teacher, 0.3, ignore_mask=~valid).loss)
    assert not torch.isclose(loss, pseudo_label_cross_entropy(student, teacher, 0.95, ignore_mask=~valid).loss)


def test_logged_k_shares_and_pseudo_label_statistics_equal_a_count_by_hand(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps", loss_options={"threshold": 0.9, "semantics": "code"})
    trainer.model.train()
    trainer.state.global_step = trainer.state.max_steps = 2  # the last step: the classes are counted
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
    logged = {name: float(values[-1]) for name, values in trainer._metrics["train"].items()}
    assert (logged["k1"], logged["k2"], logged["k3+"]) == pytest.approx((2 / 5, 1 / 5, 2 / 5))
    assert logged["pseudo_label_accuracy"] == pytest.approx(1 / 4)
    assert logged["case_wrong_in_set"] == pytest.approx(1 / 4)
    assert logged["case_outside_set"] == pytest.approx(2 / 4)
    # By class: 0 has one pixel (right), 1 two (both wrong, one outside), 3 one (outside); 2 none, left out.
    names = trainer.model.config.id2label
    assert trainer.pseudo_labels_by_class() == {
        names[0]: {"pixels": 1 / 4, "pseudo_label_accuracy": 1.0, "case_outside_set": 0.0},
        names[1]: {"pixels": 2 / 4, "pseudo_label_accuracy": 0.0, "case_outside_set": 0.5},
        names[3]: {"pixels": 1 / 4, "pseudo_label_accuracy": 0.0, "case_outside_set": 1.0},
    }


def test_the_counts_by_class_are_kept_over_the_second_half_of_the_semi_supervised_phase(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps", max_steps=10, burn_in_steps=2)
    trainer.model.train()
    teacher = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]]).T.reshape(1, 3, 1, 2).log()
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    for step, labels in ((5, [[[1, 1]]]), (6, [[[0, 0]]]), (9, [[[0, 255]]])):  # steps 6-9 are the second half
        trainer.state.global_step, trainer.state.max_steps = step, 10
        trainer.unsupervised_loss(PseudoLabelPair(torch.zeros_like(teacher), teacher, valid, torch.tensor(labels)))
    by_class = trainer.pseudo_labels_by_class()
    assert set(by_class) == {trainer.model.config.id2label[0]}  # step 5's pixels of class 1 are not counted
    assert by_class[trainer.model.config.id2label[0]] == {
        "pixels": 1.0,
        "pseudo_label_accuracy": pytest.approx(2 / 3),
        "case_outside_set": pytest.approx(1 / 3),
    }


def test_a_step_without_known_labels_leaves_the_cases_out_of_the_logged_means(scenes, tmp_path, monkeypatch):
    trainer = make_trainer(scenes, tmp_path, framework="cps")
    trainer.model.train()
    teacher = torch.tensor([[0.9, 0.05, 0.05], [0.2, 0.7, 0.1]]).T.reshape(1, 3, 1, 2).log()
    valid = torch.ones(1, 1, 2, dtype=torch.bool)
    for labels in ([[[0, 0]]], [[[255, 255]]]):  # the first step's truth: one right, one wrong; the second's unknown
        pair = PseudoLabelPair(torch.zeros_like(teacher), teacher, valid, torch.tensor(labels))
        trainer.unsupervised_loss(pair)
    recorded = trainer._metrics["train"]
    assert all(torch.is_tensor(value) for values in recorded.values() for value in values)  # read when logged
    assert torch.isnan(recorded["pseudo_label_accuracy"][-1])
    logs = {}
    monkeypatch.setattr(Trainer, "log", lambda self, values, start_time=None: logs.update(values))
    trainer.log({})
    assert logs["pseudo_label_accuracy"] == pytest.approx(1 / 2)  # the first step's alone
    assert logs["k1"] == pytest.approx(1.0)  # both steps: K = 1 on every pixel


PAIRS_PER_STEP = {"cps": 2, "mean_teacher": 1, "unimatch": 3, "unimatch_v2": 2}


@pytest.mark.parametrize("framework", sorted(PAIRS_PER_STEP))
@pytest.mark.parametrize("ratio", [1, 2])
def test_every_framework_takes_each_allowed_unlabeled_batch(scenes, tmp_path, framework, ratio):
    # 2 labeled images a step, with 2 or 4 unlabeled ones: each term sees the rows of its own kind.
    trainer = make_trainer(scenes, tmp_path, framework=framework, per_device_unlabeled_batch_size=2 * ratio)
    assert PAIRS_PER_STEP.keys() == {name for name, declared in FRAMEWORKS.items() if declared.unlabeled}
    batch = one_batch(trainer, 2)
    supervised_rows = []
    supervised = trainer.supervised_loss
    trainer.supervised_loss = lambda logits, labels: (
        supervised_rows.append(logits.shape[0]) or supervised(logits, labels)
    )
    pairs = capture_pairs(trainer)
    FRAMEWORKS[framework].step(trainer, trainer.model.train(), batch)
    assert supervised_rows and set(supervised_rows) == {2}
    assert len(pairs) == PAIRS_PER_STEP[framework]
    for pair in pairs:
        assert {tensor.shape[0] for tensor in pair} == {2 * ratio} and pair.student.shape == pair.teacher.shape


def drifted_teacher(trainer):
    """The EMA teacher moved away from the student, so that whose predictions are targets shows."""
    with torch.no_grad():
        for parameter in trainer.teacher.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return trainer.teacher


@pytest.mark.parametrize("strong", [True, False])
def test_the_mean_teachers_student_learns_on_its_own_cutmix_the_teachers_targets_mixed_by_its_box(
    scenes, tmp_path, strong
):
    trainer = make_trainer(
        scenes, tmp_path, framework="mean_teacher", unsup_weight=3.0, framework_options={"strong_views": strong}
    )
    teacher = drifted_teacher(trainer)
    batch = one_batch(trainer, 4)
    inputs = recorded_inputs(trainer.model)
    pairs = capture_pairs(trainer)
    loss = FRAMEWORKS["mean_teacher"].step(trainer, trainer.model.train(), batch)
    assert loss.item() == pytest.approx(float(trainer._metrics["train"]["sup"][-1]) + 3.0 * 7.0, rel=1e-5)

    unlabeled, box = batch["unlabeled_pixel_values"], batch["cutmix_masks"][:, 0]
    views = batch["unlabeled_strong_pixel_values"][:, :, 0] if strong else unlabeled
    assert 0 < box.float().mean() < 1  # a box that mixes, so that mixing shows
    assert torch.equal(inputs[-1], mix(views[:, 0], views[:, 1], box))  # the student sees its own views mixed
    assert strong == ("unlabeled_strong_pixel_values" in batch)
    ((student, targets, valid, diagnostic),) = pairs
    expected = mix(eval_mode_logits(teacher, unlabeled[:, 0]), eval_mode_logits(teacher, unlabeled[:, 1]), box)
    torch.testing.assert_close(targets, expected)  # the teacher's, mixed by the student's own box
    assert torch.equal(valid, mix(batch["unlabeled_valid"][:, 0], batch["unlabeled_valid"][:, 1], box))
    assert torch.equal(
        diagnostic, mix(batch["unlabeled_diagnostic_labels"][:, 0], batch["unlabeled_diagnostic_labels"][:, 1], box)
    )
    assert student.requires_grad and not targets.requires_grad


def test_unimatch_learns_mixed_strong_views_and_a_perturbed_weak_view_from_the_weak_prediction(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="unimatch", unsup_weight=3.0, cutmix_probability=1.0)
    model = trainer.model.train()
    reference = copy.deepcopy(model)  # the step updates BatchNorm statistics: targets are recomputed from before
    batch = one_batch(trainer, 4)
    inputs = recorded_inputs(model)
    pairs = capture_pairs(trainer, values=(1.0, 2.0, 4.0))
    loss = FRAMEWORKS["unimatch"].step(trainer, model, batch)
    # (sup + beta * (0.5 * mean of the strong terms + 0.5 * the perturbed term)) / 2
    expected_unsup = 0.5 * (0.5 * (1.0 + 2.0)) + 0.5 * 4.0
    assert loss.item() == pytest.approx(
        (float(trainer._metrics["train"]["sup"][-1]) + 3.0 * expected_unsup) / 2, rel=1e-5
    )

    labeled, weak, strong, boxes = (
        batch[name]
        for name in ("pixel_values", "unlabeled_pixel_values", "unlabeled_strong_pixel_values", "cutmix_masks")
    )
    partner = eval_mode_logits(reference, weak[:, 1])
    with torch.no_grad(), without_dropout(reference):
        weak_logits = reference(pixel_values=torch.cat([labeled, weak[:, 0]])).logits[labeled.shape[0] :]
    strong_views = [mix(strong[:, 0, view], strong[:, 1, view], boxes[:, view]) for view in (0, 1)]
    assert torch.equal(inputs[-1], torch.cat(strong_views))  # the student sees both mixed strong views
    for (_student, targets, valid, _), box in zip(pairs[:2], (boxes[:, 0], boxes[:, 1])):
        torch.testing.assert_close(targets, mix(weak_logits, partner, box))  # mixed by that view's own box
        assert torch.equal(valid, mix(batch["unlabeled_valid"][:, 0], batch["unlabeled_valid"][:, 1], box))
    assert not torch.equal(boxes[:, 0], boxes[:, 1])
    torch.testing.assert_close(pairs[2].teacher, weak_logits)  # the perturbed branch: the unmixed weak prediction
    assert torch.equal(pairs[2].valid, batch["unlabeled_valid"][:, 0])


def test_unimatch_v2_trains_the_channel_dropout_decodings(scenes, tmp_path, monkeypatch):
    # With every channel dropped, a decoding holds no trace of the image: its logits are the same at every pixel.
    monkeypatch.setattr(unimatch_v2, "complementary_channel_dropout", lambda features: features * 0)
    trainer = make_trainer(scenes, tmp_path, framework="unimatch_v2", cutmix_probability=1.0)
    pairs = capture_pairs(trainer)
    FRAMEWORKS["unimatch_v2"].step(trainer, trainer.model.train(), one_batch(trainer, 4))
    for pair in pairs:
        assert pair.student.flatten(2).std(-1).max() < 1e-5 and pair.teacher.flatten(2).std(-1).min() > 1e-3


def test_the_ema_teacher_follows_aels_decay_up_to_its_cap():
    from fpl_hf.trainer.callbacks import EMATeacherCallback
    from fpl_hf.trainer.schedule import SemiSupervisedSchedule

    teacher, student = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    callback = EMATeacherCallback(teacher, 0.99, SemiSupervisedSchedule(burn_in_steps=10))
    for step, expected_decay in [
        (5, 0.0),
        (11, 0.0),
        (12, 0.5),
        (13, 2 / 3),
        (60, 1 - 1 / 50),
        (110, 0.99),
        (5000, 0.99),
    ]:
        with torch.no_grad():
            teacher.weight.fill_(0.0)
            student.weight.fill_(1.0)
        callback.on_step_end(None, SimpleNamespace(global_step=step), None, model=student)
        # teacher = decay * 0 + (1 - decay) * 1
        assert 1 - teacher.weight.item() == pytest.approx(expected_decay, abs=1e-6), step
