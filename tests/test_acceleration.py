"""The GPU path, checked on the CPU: channels-last memory, torch.compile and fused AdamW give the training eager fp32
gives, with teachers and second branches."""

import pytest
import torch
from conftest import make_trainer, tiny_config, tiny_model_of

from fpl_hf import DeepLabV3PlusForSemanticSegmentation
from fpl_hf.trainer import FPLConfig, FPLTrainer
from fpl_hf.trainer.frameworks import unimatch_v2

FRAMEWORKS = ["cps", "mean_teacher", "unimatch", "unimatch_v2"]


def deterministic_model():
    """The tiny network without dropout, so that two trainings differ only by how they compute."""
    torch.manual_seed(0)
    return DeepLabV3PlusForSemanticSegmentation(
        tiny_config(num_labels=11, aspp_dropout=0.0, classifier_dropout=0.0, backbone_kwargs={"zero_init_last": False})
    )


def deterministic_network(family):
    """A tiny network of `family` with its dropout and stochastic depth off: random masks are drawn in memory
    order, so two memory layouts would drop different elements."""
    network = tiny_model_of(family)
    for module in network.modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            module.p = 0.0
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0
    return network


def losses(scenes, tmp_path, framework, model=None, **overrides):
    trainer = make_trainer(
        scenes,
        tmp_path,
        model=deterministic_model() if model is None else model,
        framework=framework,
        max_steps=3,
        burn_in_steps=1,
        framework_options={"feature_dropout": 0.0} if framework == "unimatch" else None,
        **overrides,
    )
    trainer.train()
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry], trainer


@pytest.fixture
def no_random_perturbation(monkeypatch):
    monkeypatch.setattr(unimatch_v2, "complementary_channel_dropout", lambda features: features * 0.5)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_channels_last_trains_as_contiguous_memory_does(scenes, tmp_path, framework, no_random_perturbation):
    reference, _ = losses(scenes, tmp_path / "eager", framework)
    nhwc, trainer = losses(scenes, tmp_path / "nhwc", framework, channels_last=True)
    assert nhwc == pytest.approx(reference, rel=1e-4, abs=1e-5)
    weights = [p for p in trainer.model.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)
    batch = trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[0], trainer.train_dataset[1]]))
    assert batch["pixel_values"].is_contiguous(memory_format=torch.channels_last)
    assert batch["unlabeled_pixel_values"][:, 0].stride(1) == 1  # channels innermost: every image of it NHWC


@pytest.mark.parametrize(
    ("family", "framework"),
    [
        ("segformer", "unimatch_v2"),
        ("upernet_dinov2", "unimatch_v2"),
        ("dpt", "unimatch_v2"),
        ("timm_dpt", "unimatch_v2"),
        ("mobilevit", "mean_teacher"),  # no encoder features to perturb
    ],
)
def test_channels_last_trains_every_model_family_as_contiguous_memory_does(
    scenes, tmp_path, family, framework, no_random_perturbation
):
    """real_images.yaml trains channels-last whatever the model: its layer norms, attention and token reshapes
    must compute what they compute on contiguous tensors."""
    reference, contiguous = losses(scenes, tmp_path / "eager", framework, model=deterministic_network(family))
    nhwc, trainer = losses(
        scenes, tmp_path / "nhwc", framework, model=deterministic_network(family), channels_last=True
    )
    assert len(nhwc) == 3 and nhwc == pytest.approx(reference, rel=1e-4, abs=1e-5)
    # A tiny random DPT or MobileViT scores every input alike (its losses stay near ln 11): the trained weights,
    # which follow the gradients, are what shows a layout that mixes up pixels or channels.
    trained = dict(trainer.model.named_parameters())
    for name, value in contiguous.model.named_parameters():
        torch.testing.assert_close(trained[name], value, rtol=1e-4, atol=1e-5, msg=name)
    weights = [p for p in trainer.model.parameters() if p.dim() == 4]
    assert weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in weights)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_torch_compile_trains_as_eager_does(scenes, tmp_path, framework, no_random_perturbation):
    torch._dynamo.reset()
    reference, _ = losses(scenes, tmp_path / "eager", framework)
    compiled, trainer = losses(
        scenes, tmp_path / "compiled", framework, torch_compile=True, torch_compile_backend="aot_eager"
    )
    assert compiled == pytest.approx(reference, rel=1e-4, abs=1e-5)
    assert type(trainer.model_wrapped).__name__ == "OptimizedModule"


def test_adamw_runs_fused_on_cuda_and_as_asked_elsewhere(tmp_path, monkeypatch):
    args = FPLConfig(output_dir=str(tmp_path), optim="adamw_torch", use_cpu=True)
    assert "fused" not in FPLTrainer.get_optimizer_cls_and_kwargs(args)[1]
    monkeypatch.setattr(FPLConfig, "device", property(lambda self: torch.device("cuda")))
    optimizer_class, kwargs = FPLTrainer.get_optimizer_cls_and_kwargs(args)
    assert optimizer_class is torch.optim.AdamW and kwargs["fused"] is True
    sgd = FPLConfig(output_dir=str(tmp_path), optim="sgd", use_cpu=True)
    assert "fused" not in FPLTrainer.get_optimizer_cls_and_kwargs(sgd)[1]
