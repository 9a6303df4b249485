"""The shape of a framework: a declaration the trainer, config, data and card ask, a typed step, one loss entry
per loss; UniMatch V2 as a framework added in one file."""

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from conftest import ROOT, TINY_MODEL_FLAGS, capture_pairs, make_trainer, one_batch, run_fpl
from safetensors.torch import load_file

from fpl_hf.trainer import UNSUPERVISED_LOSSES, FPLConfig, FPLTrainer, register_framework
from fpl_hf.trainer.frameworks import FRAMEWORKS, Framework, unimatch_v2
from fpl_hf.trainer.frameworks.base import eval_mode_logits, mix


def documented_block(heading: str) -> str:
    """The first python block after `heading` in docs/extending.md: the file the documentation says a user writes."""
    text = (ROOT / "docs" / "extending.md").read_text()
    after = text[text.index(heading) :]
    return after[after.index("```python\n") + len("```python\n") :].split("```", 1)[0]


@pytest.fixture
def registries():
    """The framework and loss registries, restored after the test whatever it registered."""
    saved = dict(FRAMEWORKS), dict(UNSUPERVISED_LOSSES)
    yield
    for registry, entries in zip((FRAMEWORKS, UNSUPERVISED_LOSSES), saved):
        registry.clear()
        registry.update(entries)


def tiny_run(tmp_path, *flags):
    return [
        *TINY_MODEL_FLAGS,
        "--crop_size",
        "32",
        "--scene_size",
        "32",
        "--num_train_scenes",
        "12",
        "--num_validation_scenes",
        "2",
        "--num_labeled",
        "4",
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "4",
        "--burn_in_steps",
        "1",
        "--unsup_rampup_steps",
        "0",
        "--save_strategy",
        "steps",
        "--save_steps",
        "2",
        "--save_total_limit",
        "2",
        "--eval_strategy",
        "no",
        "--logging_steps",
        "1",
        "--disable_tqdm",
        "true",
        "--report_to",
        "none",
        "--output_dir",
        str(tmp_path / "run"),
        *flags,
    ]


def test_the_documented_framework_file_is_listed_trains_resumes_and_gets_its_card(tmp_path, registries, capsys):
    plugin = tmp_path / "my_self_training.py"
    plugin.write_text(documented_block("## Adding a framework"))
    with pytest.raises(SystemExit):
        run_fpl.parse_arguments(["--plugin", str(plugin), "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "'self_training': EMA self-training on noisy views" in help_text and "--noise" in help_text

    flags = tiny_run(tmp_path, "--plugin", str(plugin), "--framework", "self_training", "--noise", "0.3")
    model_args, data_source, args, _ = run_fpl.parse_arguments(flags)
    assert args.framework_options.noise == 0.3 and args.ema_decay == 0.99  # its option, its default decay
    summary = run_fpl.main(model_args, data_source, args)
    semi_supervised = [entry for entry in summary["log_history"] if "unsup" in entry]
    assert [entry["step"] for entry in semi_supervised] == [2, 3, 4] and "pseudo_label_accuracy" in semi_supervised[0]
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert (checkpoint / "teacher.safetensors").is_file()  # the teacher it declares is checkpointed
    card = (tmp_path / "run" / "README.md").read_text()
    assert "self_training: EMA self-training on noisy views" in card and "noise = 0.3" in card

    run_fpl.main(
        *run_fpl.parse_arguments(
            flags + ["--resume_from_checkpoint", str(checkpoint), "--output_dir", str(tmp_path / "resumed")]
        )
    )
    uninterrupted, resumed = (load_file(tmp_path / name / "model.safetensors") for name in ("run", "resumed"))
    for name, value in uninterrupted.items():
        torch.testing.assert_close(resumed[name], value, msg=name)


def test_the_documented_loss_file_trains_every_framework_and_feeds_the_logs(tmp_path, registries):
    plugin = tmp_path / "my_weighted_ce.py"
    plugin.write_text(documented_block("## Adding a loss"))
    flags = tiny_run(
        tmp_path,
        "--plugin",
        str(plugin),
        "--unsup_loss",
        "weighted_ce",
        "--gamma",
        "1.5",
        "--framework",
        "cps",
        "--save_strategy",
        "no",
    )
    model_args, data_source, args, _ = run_fpl.parse_arguments(flags)
    assert args.loss_options.gamma == 1.5
    summary = run_fpl.main(model_args, data_source, args)
    logged = [entry for entry in summary["log_history"] if "unsup" in entry]
    assert logged and all(0 <= entry["weight"] < 1 for entry in logged)  # the confidence ** gamma it returned
    card = (tmp_path / "run" / "README.md").read_text()
    assert "weighted by the teacher's confidence to the power gamma" in card and "gamma = 1.5" in card


def test_an_option_a_config_sets_for_other_frameworks_is_not_named_but_a_flag_is(tmp_path, caplog):
    (tmp_path / "recipe.yaml").write_text("strong_views_update_bn: false\n")  # as real_images.yaml's
    flags = ["--config", str(tmp_path / "recipe.yaml"), "--output_dir", str(tmp_path), "--framework", "supervised"]
    with caplog.at_level("WARNING"):
        run_fpl.parse_arguments(flags)
    assert "is an option of" not in caplog.text
    with caplog.at_level("WARNING"):
        run_fpl.parse_arguments([*flags, "--strong_views_update_bn", "true"])
    assert "--strong_views_update_bn True is an option of framework cps or mean_teacher or unimatch" in caplog.text


def test_options_of_another_framework_or_loss_are_named_not_used(tmp_path, caplog):
    with caplog.at_level("WARNING"):
        _, _, args, _ = run_fpl.parse_arguments(
            [
                "--output_dir",
                str(tmp_path),
                "--framework",
                "cps",
                "--feature_dropout",
                "0.3",
                "--unsup_loss",
                "ce",
                "--threshold",
                "0.8",
            ]
        )
    assert "--feature_dropout 0.3 is an option of framework unimatch" in caplog.text
    assert "--threshold 0.8 is an option of unsup_loss fpl" in caplog.text
    assert (
        dataclasses.asdict(args.framework_options) == {"strong_views": True, "strong_views_update_bn": True}
        and args.loss_options.confidence_threshold is None
    )
    with pytest.raises(ValueError, match=r"unknown options \['feature_dropout'\]"):
        FPLConfig(output_dir=str(tmp_path), framework="cps", framework_options={"feature_dropout": 0.3})


def test_a_declaration_whose_flags_contradict_each_other_is_refused():
    with pytest.raises(ValueError, match="`pair` and `ema_decay` exclude each other"):
        Framework(name="both", step=lambda *args: None, description="", pair=lambda *args: None, ema_decay=0.9)
    with pytest.raises(ValueError, match="no strong views"):
        Framework(name="none", step=lambda *args: None, description="", unlabeled=False, strong_views=2)
    with pytest.raises(ValueError, match="registered already"):
        register_framework(FRAMEWORKS["cps"])


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
    assert loss.item() == pytest.approx((float(trainer._metrics["train"]["sup"][-1]) + 3.0 * 7.0) / 2, rel=1e-5)

    weak, boxes = batch["unlabeled_pixel_values"], batch["cutmix_masks"]
    assert len(pairs) == 2 and perturbed_batches == [8, 8]  # both feature maps of the 2 x 4 strong views
    for (student, teacher, valid, _), box in zip(pairs, (boxes[:, 0], boxes[:, 1])):
        expected = mix(
            eval_mode_logits(trainer.teacher, weak[:, 0]), eval_mode_logits(trainer.teacher, weak[:, 1]), box
        )
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


def bn_running_statistics(model) -> list[torch.Tensor]:
    return [
        buffer.clone()
        for module in model.modules()
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm)
        for buffer in (module.running_mean, module.running_var)
    ]


@pytest.mark.parametrize("framework", ["unimatch", "unimatch_v2", "cps", "mean_teacher"])
def test_strong_views_update_bn_or_leave_it_to_the_other_passes(scenes, tmp_path, framework):
    for update in (True, False):
        options = {"strong_views_update_bn": update}
        trainer = make_trainer(scenes, tmp_path / str(update), framework=framework, framework_options=options)
        assert trainer.args.framework_options.strong_views_update_bn is update
        batch = one_batch(trainer)
        brighter = {**batch, "unlabeled_strong_pixel_values": batch["unlabeled_strong_pixel_values"] + 5.0}
        statistics = []
        for views in (batch, brighter):  # the same step, strong views alone changed
            model = copy.deepcopy(trainer.model).train()
            torch.manual_seed(1)
            assert torch.isfinite(FRAMEWORKS[framework].step(trainer, model, views))
            statistics.append(bn_running_statistics(model))
            momenta = {module.momentum for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)}
            assert 0.0 not in momenta  # restored after the pass
        traceless = all(torch.equal(a, b) for a, b in zip(*statistics, strict=True))
        assert traceless is not update, f"{framework}: strong views updating BatchNorm's statistics: {update}"
        assert not all(torch.equal(a, b) for a, b in zip(statistics[0], bn_running_statistics(trainer.model)))
