"""The training recipe as the released CPS/AEL code runs it, and burn-in with a ramped unsupervised weight."""

import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer, one_batch
from torch import nn
from transformers import TrainerCallback

from fpl_hf.losses import fuzzy_positive_loss, pseudo_label_cross_entropy
from fpl_hf.trainer import FPLConfig
from fpl_hf.trainer.frameworks import FRAMEWORKS, PseudoLabelPair


class GradientNormAtStep(TrainerCallback):
    """The gradient norm the optimizer actually applies (after any clipping)."""

    def __init__(self, trainer):
        self.trainer, self.norms = trainer, []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        grads = [p.grad for p in self.trainer.model.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))


def test_gradients_are_not_clipped_by_default(scenes, tmp_path):
    assert FPLConfig(output_dir=str(tmp_path)).max_grad_norm == 0
    trainer = make_trainer(scenes, tmp_path, framework="cps", unsup_weight=20.0, max_steps=1)
    applied = GradientNormAtStep(trainer)
    trainer.add_callback(applied)
    trainer.train()
    logged = next(entry["grad_norm"] for entry in trainer.state.log_history if "grad_norm" in entry)
    assert logged > 1.0  # large enough that a clip at 1.0 would have changed it
    assert applied.norms[0] == pytest.approx(logged, rel=1e-4)


@pytest.mark.parametrize("framework", ["cps", "mean_teacher", "unimatch", "unimatch_v2"])
def test_teacher_targets_do_not_depend_on_dropout(scenes, tmp_path, framework):
    trainer = make_trainer(scenes, tmp_path, framework=framework)
    trainer.model.train()
    batch = one_batch(trainer, 2)
    targets = []
    trainer.unsupervised_loss = lambda *pairs: (
        targets.append([teacher for _, teacher, _, _ in pairs]) or [student.sum() * 0 for student, _, _, _ in pairs]
    )
    batchnorm_modes = []
    for module in trainer.model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.register_forward_hook(
                lambda m, i, o: batchnorm_modes.append(m.training) if not torch.is_grad_enabled() else None
            )
    for seed in (1, 2):  # other dropout masks
        torch.manual_seed(seed)
        FRAMEWORKS[framework].step(trainer, trainer.model, batch)
    # The last pair's targets come from the teacher pass in train mode (CPS, UniMatch's weak view) or eval mode.
    torch.testing.assert_close(targets[0][-1], targets[1][-1])
    if framework == "cps":
        assert batchnorm_modes and all(batchnorm_modes)  # CPS's teacher passes keep train-mode BatchNorm


@pytest.mark.parametrize(
    "framework, network, passes",
    [("mean_teacher", "teacher", 2), ("unimatch", "model", 1), ("unimatch_v2", "teacher", 1)],
)
def test_eval_mode_teachers_ignore_the_configured_inference_protocol(scenes, tmp_path, framework, network, passes):
    trainer = make_trainer(scenes, tmp_path, framework=framework)
    teacher = getattr(trainer, network)
    teacher.config.update(dict(inference_mode="slide", inference_crop_size=16, inference_stride=8, inference_flip=True))
    calls = []
    teacher.backbone.register_forward_hook(lambda m, i, o: calls.append(not torch.is_grad_enabled()))
    trainer.model.train()
    FRAMEWORKS[framework].step(trainer, trainer.model, one_batch(trainer, 2))
    assert sum(calls) == passes  # one plain pass per unlabeled image, no windows, no flip


def test_balance_to_ce_shares_one_ratio_between_the_cps_directions(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps", loss_options={"balance_to_ce": True})
    generator = torch.Generator().manual_seed(0)
    student_1, student_2, teacher_1, teacher_2 = (3 * torch.randn(2, 11, 8, 8, generator=generator) for _ in range(4))
    valid, diagnostic = torch.ones(2, 8, 8, dtype=torch.bool), torch.full((2, 8, 8), 255)
    loss_12, loss_21 = trainer.unsupervised_loss(
        PseudoLabelPair(student_1, teacher_2, valid, diagnostic),
        PseudoLabelPair(student_2, teacher_1, valid, diagnostic),
    )

    def fpl(student, teacher):
        return fuzzy_positive_loss(student, teacher, 0.9, weight="concave", semantics="code").loss

    def ce(student, teacher):
        return pseudo_label_cross_entropy(student, teacher).loss

    ratio = (ce(student_1, teacher_2) + ce(student_2, teacher_1)) / (
        fpl(student_1, teacher_2) + fpl(student_2, teacher_1)
    )
    torch.testing.assert_close(loss_12, fpl(student_1, teacher_2) * ratio)
    torch.testing.assert_close(loss_21, fpl(student_2, teacher_1) * ratio)
    assert not torch.isclose(loss_12, ce(student_1, teacher_2))  # not one ratio per direction


def test_ohem_keeps_its_minimum_per_image(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="supervised", ohem=True, ohem_threshold=1e-6, ohem_min_kept=64)
    logits, labels = torch.randn(2, 11, 8, 8), torch.randint(0, 11, (2, 8, 8))
    # 64 per image of two 8x8 images keeps all 128 pixels: the plain mean.
    torch.testing.assert_close(trainer.supervised_loss(logits, labels), F.cross_entropy(logits, labels))


def test_the_first_ema_update_copies_the_student(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="mean_teacher", max_steps=1)
    trainer.train()
    for (name, teacher), student in zip(trainer.teacher.state_dict().items(), trainer.model.state_dict().values()):
        torch.testing.assert_close(teacher, student, msg=name)


def logged_steps(trainer):
    return {entry["step"]: entry for entry in trainer.state.log_history if "loss" in entry}


@pytest.mark.parametrize("framework", ["cps", "mean_teacher", "unimatch", "unimatch_v2"])
def test_burn_in_is_supervised_then_the_unsupervised_weight_ramps_up(scenes, tmp_path, framework):
    trainer = make_trainer(
        scenes, tmp_path, framework=framework, burn_in_steps=2, unsup_rampup_steps=4, unsup_weight=2.0, max_steps=5
    )
    trainer.train()
    logs = logged_steps(trainer)
    assert all("unsup" not in logs[step] and "sup" in logs[step] for step in (1, 2))
    assert [logs[step]["unsup_weight"] for step in (3, 4, 5)] == [0.5, 1.0, 1.5]
    assert all("unsup" in logs[step] and "k1" in logs[step] for step in (3, 4, 5))


def test_a_supervised_run_logs_no_unsupervised_weight(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="supervised", max_steps=2)
    trainer.train()
    logs = logged_steps(trainer)
    assert all("sup" in logs[step] and not {"unsup", "unsup_weight"} & set(logs[step]) for step in (1, 2))


def test_burn_in_trains_both_cps_branches_on_the_labels(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps", burn_in_steps=2, max_steps=3)
    before = {name: value.detach().clone() for name, value in trainer.model.named_parameters()}
    trainer.train()
    unchanged = [name for name, value in trainer.model.named_parameters() if torch.equal(value, before[name])]
    assert not unchanged, unchanged
    logs = logged_steps(trainer)
    assert "unsup" not in logs[2]


def test_the_mean_teacher_follows_the_student_during_burn_in(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="mean_teacher", burn_in_steps=2, max_steps=3)
    trainer.train()
    for (name, teacher), student in zip(trainer.teacher.state_dict().items(), trainer.model.state_dict().values()):
        torch.testing.assert_close(teacher, student, msg=name)


@pytest.mark.parametrize("value", [dict(burn_in_steps=-1), dict(unsup_rampup_steps=-5)])
def test_negative_schedules_are_refused(tmp_path, value):
    with pytest.raises(ValueError, match=next(iter(value))):
        FPLConfig(output_dir=str(tmp_path), **value)
