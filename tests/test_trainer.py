import math
from pathlib import Path

import pytest
import torch
from conftest import make_trainer, tiny_config
from transformers import TrainerCallback

from fpl_hf import DeepLabV3PlusForSemanticSegmentation
from fpl_hf.evaluation import evaluate_model
from fpl_hf.trainer import BranchPair, FPLConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("max_grad_norm", [0.0, 1.0])
def test_the_gradient_norm_is_taken_at_the_steps_that_log_it(scenes, tmp_path, monkeypatch, max_grad_norm):
    trainer = make_trainer(
        scenes, tmp_path, framework="supervised", max_steps=5, logging_steps=2, max_grad_norm=max_grad_norm
    )
    norms = []
    clip = trainer.accelerator.clip_grad_norm_
    monkeypatch.setattr(
        trainer.accelerator, "clip_grad_norm_", lambda *args, **kwargs: norms.append(clip(*args, **kwargs)) or norms[-1]
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry and "train_runtime" not in entry]
    assert [entry["step"] for entry in logged] == [2, 4]
    assert all(math.isfinite(entry["grad_norm"]) for entry in logged)
    # Without clipping, only the two logging steps pay for the norm; clipping takes it every step, as it must.
    assert len(norms) == (2 if max_grad_norm == 0 else 5)


def snapshot(module):
    return {name: parameter.detach().clone() for name, parameter in module.named_parameters()}


CASES = [
    ("supervised", "fpl"),
    ("cps", "fpl"),
    ("cps", "ce"),
    ("mean_teacher", "fpl"),
    ("mean_teacher", "ce"),
    ("unimatch", "fpl"),
    ("unimatch", "ce"),
    ("unimatch_v2", "fpl"),
    ("unimatch_v2", "ce"),
]


@pytest.mark.parametrize("framework, unsup_loss", CASES)
def test_every_framework_trains_logs_its_terms_and_changes_every_parameter(scenes, tmp_path, framework, unsup_loss):
    trainer = make_trainer(scenes, tmp_path, framework=framework, unsup_loss=unsup_loss)
    before = snapshot(trainer.model)
    teacher_before = snapshot(trainer.teacher) if trainer.teacher is not None else None
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 2 and all(math.isfinite(entry["loss"]) for entry in logs)
    expected = (
        {"loss"}
        if framework == "supervised"
        else {
            "sup",
            "unsup",
            "k1",
            "k2",
            "k3+",
            "weight",
            "pseudo_label_accuracy",
            "case_wrong_in_set",
            "case_outside_set",
        }
    )
    assert expected <= set(logs[-1])
    unchanged = [name for name, value in snapshot(trainer.model).items() if torch.equal(value, before[name])]
    assert not unchanged, unchanged
    if framework == "cps":
        assert isinstance(trainer.model, BranchPair)
        assert any(name.startswith("branch_2.") for name in before)  # both branches were checked above
    if teacher_before is not None:
        assert all(parameter.grad is None for parameter in trainer.teacher.parameters())
        moved = [
            name for name, value in snapshot(trainer.teacher).items() if not torch.equal(value, teacher_before[name])
        ]
        assert moved and len(moved) == len(teacher_before)


def test_mean_teacher_follows_the_student_by_ema_including_batchnorm_buffers(scenes, tmp_path):
    from fpl_hf.trainer import ema_update

    student = DeepLabV3PlusForSemanticSegmentation(tiny_config())
    teacher = DeepLabV3PlusForSemanticSegmentation(tiny_config())
    expected = {
        k: 0.9 * v + 0.1 * student.state_dict()[k] for k, v in teacher.state_dict().items() if v.is_floating_point()
    }
    ema_update(teacher, student, 0.9)
    state = teacher.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value)
    assert any("running_mean" in key for key in expected)


def test_cps_branches_start_with_the_same_backbone_and_different_heads(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps")
    pair = trainer.model
    assert torch.equal(pair.branch_1.backbone.conv1[0].weight, pair.branch_2.backbone.conv1[0].weight)
    assert not torch.equal(pair.branch_1.classifier.weight, pair.branch_2.classifier.weight)


@pytest.mark.parametrize(
    "framework, burn_in_steps",
    [
        ("cps", 0),
        ("mean_teacher", 0),
        ("unimatch", 0),
        ("unimatch_v2", 0),
        ("supervised", 0),
        ("cps", 3),
        ("mean_teacher", 3),
    ],
)
def test_resuming_gives_the_weights_of_an_uninterrupted_run(scenes, tmp_path, framework, burn_in_steps):
    # With burn_in_steps=3 the checkpoint of step 2 is inside burn-in and the resumed run crosses the switch.
    schedule = dict(burn_in_steps=burn_in_steps, unsup_rampup_steps=2)
    full = make_trainer(scenes, tmp_path / "full", framework=framework, max_steps=4, **schedule)
    full.train()
    interrupted = make_trainer(
        scenes, tmp_path / "cut", framework=framework, max_steps=4, save_strategy="steps", save_steps=2, **schedule
    )
    interrupted.train()
    resumed = make_trainer(scenes, tmp_path / "cut", framework=framework, max_steps=4, **schedule)
    resumed.train(resume_from_checkpoint=str(tmp_path / "cut" / "run" / "checkpoint-2"))
    networks = [(full.model, resumed.model)] + ([(full.teacher, resumed.teacher)] if full.teacher is not None else [])
    for uninterrupted, continued in networks:  # parameters and buffers (BatchNorm statistics) alike
        state = continued.state_dict()
        assert any("running_mean" in name for name in state)
        for name, value in uninterrupted.state_dict().items():
            torch.testing.assert_close(state[name], value, msg=name)
    if full.teacher is not None:
        assert (tmp_path / "cut" / "run" / "checkpoint-2" / "teacher.safetensors").is_file()


@pytest.mark.parametrize("framework", ["cps", "mean_teacher", "unimatch", "unimatch_v2"])
def test_bf16_on_cpu_trains_under_autocast(scenes, tmp_path, framework):
    trainer = make_trainer(scenes, tmp_path, framework=framework, bf16=True)
    dtypes = []
    for network in (trainer.model, trainer.teacher):  # every pass, the teachers' included
        for name, module in network.named_modules() if network is not None else ():
            if name.endswith("classifier"):
                module.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    trainer.train()
    assert all(math.isfinite(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry)
    assert dtypes and all(dtype == torch.bfloat16 for dtype in dtypes)


class ReferenceMeanIoU(TrainerCallback):
    """The mIoU of the evaluated network at each evaluation, computed apart from the trainer's streamed one."""

    def __init__(self, trainer, validation):
        self.trainer, self.validation, self.values = trainer, validation, []

    def on_evaluate(self, args, state, control, **kwargs):
        network = self.trainer._evaluated_network(self.trainer.model)
        self.values.append(
            evaluate_model(network, self.validation, image_mean=[0.5] * 3, image_std=[0.5] * 3).compute()["mean_iou"]
        )


def test_evaluation_streams_miou_and_keeps_the_best(scenes, tmp_path):
    trainer = make_trainer(
        scenes,
        tmp_path,
        framework="cps",
        max_steps=3,
        eval_strategy="steps",
        eval_steps=1,
        per_device_eval_batch_size=3,
        learning_rate=0.05,
    )
    reference = ReferenceMeanIoU(trainer, scenes[2])
    trainer.add_callback(reference)
    trainer.train()
    evaluations = [entry["eval_mean_iou"] for entry in trainer.state.log_history if "eval_mean_iou" in entry]
    assert evaluations == pytest.approx(reference.values) and len(set(evaluations)) > 1
    best = max(range(3), key=lambda index: evaluations[index])
    assert (trainer.best_metrics["mean_iou"], trainer.best_metrics["step"]) == (evaluations[best], best + 1)


def test_final_cps_model_is_a_plain_model_that_from_pretrained_loads(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps")
    trainer.train()
    trainer.save_model(str(tmp_path / "final"))
    loaded = DeepLabV3PlusForSemanticSegmentation.from_pretrained(tmp_path / "final").eval()
    branch = trainer.model.branch_1.eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, branch(pixels).logits)


def test_optimizer_is_sgd_without_decay_on_batchnorm_and_biases(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="supervised")
    trainer.create_optimizer()
    optimizer = trainer.optimizer
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    names = {id(p): n for n, p in trainer.model.named_parameters()}
    for group in optimizer.param_groups:
        group_names = [names[id(p)] for p in group["params"]]
        if group["weight_decay"] > 0:
            assert not any(n.endswith("bias") or ".bn" in n or "running" in n for n in group_names)
            assert all(trainer.model.get_parameter(n).dim() > 1 for n in group_names)


def test_other_optimizers_step_by_their_own_rule(scenes, tmp_path):
    trainer = make_trainer(
        scenes, tmp_path, framework="cps", optim="adamw_torch", max_steps=1, learning_rate=0.01, weight_decay=0.1
    )
    before = snapshot(trainer.model)
    trainer.train()
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    assert isinstance(optimizer, torch.optim.AdamW)
    decayed = set(trainer.get_decay_parameter_names(trainer.model))
    for name, parameter in trainer.model.named_parameters():
        state = optimizer.state[parameter]
        # After one AdamW step: m = 0.1 g and v = 0.001 g^2, so the step is -lr g / (|g| + eps) after the decoupled
        # decay p <- p (1 - lr wd), on weights only.
        gradient = state["exp_avg"] / 0.1
        decay = 0.1 if name in decayed else 0.0
        expected = before[name] * (1 - 0.01 * decay) - 0.01 * gradient / (gradient.abs() + 1e-8)
        torch.testing.assert_close(parameter.detach(), expected, rtol=1e-4, atol=1e-6, msg=name)


def test_non_finite_loss_is_reported_with_the_step(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="cps", learning_rate=1e30, max_steps=5)
    with pytest.raises(FloatingPointError, match="at step"):
        trainer.train()


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(framework="fixmatch"), "framework"),
        (dict(unsup_loss="kl"), "unsup_loss"),
        (dict(loss_options={"threshold": 1.0}), "threshold"),
        (dict(loss_options={"fpl_weight": "cubic"}), "fpl_weight"),
        (dict(loss_options={"semantics": "both"}), "semantics"),
        (dict(framework="unimatch", framework_options={"feature_dropout": 1.0}), "feature_dropout"),
        (dict(unsup_loss="ce", loss_options={"confidence_threshold": 1.5}), "threshold"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(framework="unimatch", cutmix=False), "cutmix"),
        (dict(cutmix_area_min=0.6, cutmix_area_max=0.5), "cutmix_area"),
        (dict(remove_unused_columns=True), "remove_unused_columns"),
        (dict(loss_options={"kmax": 0}), "kmax"),
        (dict(eval_mode="tiles"), "eval_mode"),
        (dict(eval_mode="slide", eval_crop_size=64, eval_stride=65), "eval_stride"),
    ],
)
def test_bad_configs_name_the_field(tmp_path, overrides, field):
    with pytest.raises(ValueError, match=field):
        FPLConfig(output_dir=str(tmp_path), **overrides)


def test_sliding_window_evaluation_runs_in_the_trainer(scenes, tmp_path):
    trainer = make_trainer(
        scenes,
        tmp_path,
        framework="supervised",
        max_steps=1,
        eval_mode="slide",
        eval_crop_size=24,
        eval_stride=8,
        eval_flip=True,
    )
    trainer.train()
    result = trainer.evaluate()
    protocol = trainer.args.evaluation_protocol
    assert protocol.description == "single scale, sliding window 24 stride 8, flip"
    expected = evaluate_model(
        trainer.model, scenes[2], image_mean=[0.5] * 3, image_std=[0.5] * 3, protocol=protocol
    ).compute()["mean_iou"]
    whole = evaluate_model(trainer.model, scenes[2], image_mean=[0.5] * 3, image_std=[0.5] * 3).compute()["mean_iou"]
    assert result["eval_mean_iou"] == pytest.approx(expected) and expected != pytest.approx(whole)


def test_center_crop_evaluation_in_the_trainer_scores_the_crop_alone(scenes, tmp_path):
    trainer = make_trainer(scenes, tmp_path, framework="supervised", max_steps=1, eval_mode="center", eval_crop_size=16)
    trainer.train()
    trainer.evaluate()
    protocol = trainer.args.evaluation_protocol
    expected = evaluate_model(
        trainer.model, scenes[2], image_mean=[0.5] * 3, image_std=[0.5] * 3, protocol=protocol
    ).compute()
    assert trainer.last_metrics["mean_iou"] == pytest.approx(expected["mean_iou"])
    assert protocol.description == "single scale, center crop 16"


def test_every_checkpoint_is_a_loadable_model_with_its_card_and_the_other_branch(scenes, tmp_path):
    trainer = make_trainer(
        scenes, tmp_path, framework="cps", save_strategy="steps", save_steps=2, eval_strategy="steps", eval_steps=2
    )
    trainer.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert (checkpoint / "branch_2.safetensors").is_file()
    card = (checkpoint / "README.md").read_text()
    assert f"value: {round(trainer.last_metrics['mean_iou'], 4)}" in card
    loaded = DeepLabV3PlusForSemanticSegmentation.from_pretrained(checkpoint).eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, trainer.model.branch_1.eval()(pixels).logits)


def test_cps_takes_a_given_second_branch_and_other_frameworks_refuse_one(scenes, tmp_path):
    torch.manual_seed(5)
    second = DeepLabV3PlusForSemanticSegmentation(tiny_config(num_labels=11, backbone_kwargs={"zero_init_last": False}))
    trainer = make_trainer(scenes, tmp_path, framework="cps", trainer_kwargs={"branch_2": second})
    assert trainer.model.branch_2 is second
    with pytest.raises(ValueError, match="branch_2"):
        make_trainer(scenes, tmp_path, framework="mean_teacher", trainer_kwargs={"branch_2": second})


@pytest.mark.parametrize("during_training", [True, False])
def test_a_failed_evaluation_leaves_the_trained_weights_loadable(scenes, tmp_path, during_training):
    trainer = make_trainer(
        scenes,
        tmp_path,
        framework="cps",
        max_steps=2,
        save_strategy="no",
        eval_strategy="steps" if during_training else "no",
        eval_steps=2,
    )

    def broken(*args, **kwargs):
        raise RuntimeError("injected evaluation failure")

    trainer.prediction_step = broken
    with pytest.raises(RuntimeError, match="injected"):
        trainer.train()
        trainer.evaluate()
    assert trainer.state.global_step == 2
    loaded = DeepLabV3PlusForSemanticSegmentation.from_pretrained(tmp_path / "run").eval()
    pixels = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(pixels).logits, trainer.model.branch_1.eval()(pixels).logits)


def test_resuming_into_another_architecture_names_both(scenes, tmp_path):
    make_trainer(scenes, tmp_path, framework="mean_teacher", save_strategy="steps", save_steps=2).train()
    other = DeepLabV3PlusForSemanticSegmentation(tiny_config(num_labels=11, backbone="test_efficientnet"))
    resumed = make_trainer(scenes, tmp_path, model=other, framework="mean_teacher")
    with pytest.raises(
        ValueError,
        match=r"does not fit this run: it holds .*test_resnet encoder.*this run trains "
        r".*test_efficientnet encoder",
    ):
        resumed.train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-2"))


def test_the_step_normalises_with_the_training_sets_own_mean_and_std_per_channel(scenes, tmp_path):
    from fpl_hf.data import training_dataset

    trainer = make_trainer(scenes, tmp_path, framework="supervised")
    mean, std = [0.2, 0.4, 0.6], [0.1, 0.2, 0.3]
    labeled, unlabeled, _ = scenes
    trainer.train_dataset = training_dataset(
        labeled, unlabeled, num_labels=11, image_mean=mean, image_std=std, **trainer.args.train_dataset_options()
    )
    items = [trainer.train_dataset[index] for index in range(2)]
    batch = trainer._prepare_inputs(trainer.data_collator(items))
    raw = torch.stack([item["pixel_values"] for item in items]).double() / 255
    by_hand = (raw - torch.tensor(mean).double()[:, None, None]) / torch.tensor(std).double()[:, None, None]
    torch.testing.assert_close(batch["pixel_values"].double(), by_hand, rtol=0, atol=1e-5)
