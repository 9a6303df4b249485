"""The shape of a framework: a declaration the trainer, config, data and card ask, a typed step, one loss entry
per loss; UniMatch V2 as a framework added in one file."""

import pytest
import torch
import torch.nn.functional as F

from conftest import make_trainer
from fpl_hf.trainer import UNSUPERVISED_LOSSES, FPLConfig, FPLTrainer
from fpl_hf.trainer.frameworks import FRAMEWORKS, Framework, unimatch_v2
from fpl_hf.trainer.frameworks.base import eval_mode_logits, mix
from fpl_hf.losses import pseudo_label_cross_entropy


def one_batch(trainer, size=4):
    return trainer.data_collator([trainer.train_dataset[index] for index in range(size)])


def self_training_step(context, model, batch):
    """A framework the package does not know: the EMA teacher labels the unmixed image for the student."""
    sup = context.supervised_loss(model(pixel_values=batch["pixel_values"]).logits, batch["labels"])
    unlabeled = batch["unlabeled_pixel_values"][:, 0]
    teacher = eval_mode_logits(context.teacher, unlabeled)
    pair = (model(pixel_values=unlabeled).logits, teacher, batch["unlabeled_valid"][:, 0],
            batch["unlabeled_diagnostic_labels"][:, 0])
    (unsup,) = context.unsupervised_loss(pair)
    context.record(sup=sup, unsup=unsup)
    return sup + context.unsup_weight * unsup


def test_a_framework_declared_outside_the_package_runs_with_no_other_edit(scenes, tmp_path, monkeypatch):
    declaration = Framework(name="self_training", step=self_training_step, description="plain self-training",
                            cutmix_masks=0, ema_decay=0.5, confidence_threshold=0.7)
    monkeypatch.setitem(FRAMEWORKS, "self_training", declaration)
    trainer = make_trainer(scenes, tmp_path, framework="self_training", cutmix=False, unsup_loss="ce",
                           save_strategy="steps", save_steps=2)
    assert (trainer.args.ema_decay, trainer.args.confidence_threshold) == (0.5, 0.7)  # its defaults
    assert trainer.train_dataset.num_unlabeled == 1 and trainer.train_dataset.num_cutmix_masks == 0
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "unsup" in entry]
    assert logs and "pseudo_label_accuracy" in logs[-1]
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert (checkpoint / "teacher.safetensors").is_file()  # the extra network it declares is checkpointed
    assert "plain self-training" in (checkpoint / "README.md").read_text()


def test_a_loss_entry_added_to_the_table_is_used_without_a_trainer_edit(scenes, tmp_path, monkeypatch):
    calls = []

    def scaled_cross_entropy(pairs, args):
        calls.append(len(pairs))
        return [pseudo_label_cross_entropy(s, t, ignore_mask=~v) for s, t, v, _ in pairs]

    monkeypatch.setitem(UNSUPERVISED_LOSSES, "scaled_ce", scaled_cross_entropy)
    trainer = make_trainer(scenes, tmp_path, framework="cps", unsup_loss="scaled_ce", max_steps=1)
    trainer.train()
    assert calls == [2]  # one call with CPS's two directions
    with pytest.raises(ValueError, match="unsup_loss"):
        FPLConfig(output_dir=str(tmp_path), unsup_loss="unknown")


def test_the_config_refuses_what_the_trainer_must_not_change(tmp_path):
    with pytest.raises(ValueError, match="batch_eval_metrics"):
        FPLConfig(output_dir=str(tmp_path), batch_eval_metrics=False)
    with pytest.raises(ValueError, match="always mixed"):
        FPLConfig(output_dir=str(tmp_path), framework="unimatch_v2", cutmix=False)


def test_the_trainer_leaves_the_callers_arguments_alone(tmp_path, tiny_model):
    args = FPLConfig(output_dir=str(tmp_path), framework="cps", use_cpu=True)
    before = args.to_dict()
    FPLTrainer(tiny_model, args)
    assert args.to_dict() == before


def test_complementary_channel_dropout_gives_the_two_views_opposite_halves():
    torch.manual_seed(0)
    pairs, channels = 8, 32
    masks = unimatch_v2.complementary_channel_dropout(torch.ones(2 * pairs, channels, 3, 3))[:, :, 0, 0]
    first, second = masks[:pairs], masks[pairs:]
    torch.testing.assert_close(first + second, torch.full_like(first, 2.0))
    unperturbed = (first == 1).all(1)
    assert int(unperturbed.sum()) == pairs // 2  # half of the images keep every channel in both views
    perturbed = first[~unperturbed]
    assert set(perturbed.unique().tolist()) == {0.0, 2.0}
    assert 0.3 < float((perturbed == 2).float().mean()) < 0.7  # about half of the channels each


def capture_pairs(trainer):
    pairs = []

    def fake(*given):
        pairs.extend(given)
        return [student.sum() * 0 + 7.0 for student, _, _, _ in given]

    trainer.unsupervised_loss = fake
    return pairs


def test_unimatch_v2_strong_views_learn_from_the_ema_teachers_mixed_weak_prediction(scenes, tmp_path, monkeypatch):
    trainer = make_trainer(scenes, tmp_path, framework="unimatch_v2", unsup_weight=3.0, cutmix_probability=1.0)
    perturbed_batches, original = [], unimatch_v2.complementary_channel_dropout

    def recording_dropout(features):
        perturbed_batches.append(features.shape[0])
        return original(features)

    monkeypatch.setattr(unimatch_v2, "complementary_channel_dropout", recording_dropout)
    with torch.no_grad():  # a teacher apart from the student, so that whose targets they are shows
        for parameter in trainer.teacher.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    batch = one_batch(trainer)
    pairs = capture_pairs(trainer)
    model = trainer.model.train()
    loss = FRAMEWORKS["unimatch_v2"].step(trainer, model, batch)
    # (sup + beta * mean of the two strong terms) / 2, as UniMatch V2 weighs them.
    assert loss.item() == pytest.approx((trainer._metrics["train"]["sup"][-1] + 3.0 * 7.0) / 2, rel=1e-5)

    weak, boxes = batch["unlabeled_pixel_values"], batch["cutmix_masks"]
    assert len(pairs) == 2 and perturbed_batches == [8, 8]  # both feature maps of the 2 x 4 strong views
    for (student, teacher, valid, _), box in zip(pairs, (boxes[:, 0], boxes[:, 1])):
        expected = mix(eval_mode_logits(trainer.teacher, weak[:, 0]), eval_mode_logits(trainer.teacher, weak[:, 1]), box)
        torch.testing.assert_close(teacher, expected, rtol=1e-4, atol=1e-4)  # the teacher's, not the student's
        assert student.requires_grad and not teacher.requires_grad
        torch.testing.assert_close(valid, mix(batch["unlabeled_valid"][:, 0], batch["unlabeled_valid"][:, 1], box))
    assert not torch.equal(boxes[:, 0], boxes[:, 1])  # each strong view has its own box


def test_the_encoder_learns_at_its_fraction_of_the_learning_rate(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps", encoder_lr_ratio=0.025, learning_rate=0.01)
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    rate = {id(p): group["lr"] for group in trainer.optimizer.param_groups for p in group["params"]}
    assert len(rate) == len(list(trainer.model.parameters()))  # every parameter in exactly one group
    for name, parameter in trainer.model.named_parameters():  # both CPS branches
        encoder = ".backbone." in f".{name}"
        assert rate[id(parameter)] == pytest.approx(0.01 * (0.025 if encoder else 1.0)), name
    assert trainer.lr_scheduler.get_last_lr()[-1] == pytest.approx(0.01 * 0.025)  # the schedule scales each group


def test_a_feature_perturbation_decodes_the_same_features_again(tiny_model):
    pixels = torch.randn(2, 3, 32, 32)
    tiny_model.eval()
    with torch.no_grad():
        same = tiny_model(pixels, feature_perturbation=lambda features: features)
        zeroed = tiny_model(pixels, feature_perturbation=lambda features: F.dropout2d(features, 1.0, True))
    torch.testing.assert_close(same.perturbed_logits, same.logits)
    torch.testing.assert_close(zeroed.logits, same.logits)
    assert not torch.allclose(zeroed.perturbed_logits, same.logits)
