import importlib.util
import os
import sys
from pathlib import Path

from hub_server import TOKEN, MockHub, free_port

# Every Hub call of the tests goes to a stand-in on 127.0.0.1 (tests/hub_server.py), never to the network;
# huggingface_hub reads HF_ENDPOINT once, at import.
HUB_PORT = free_port()
os.environ["HF_ENDPOINT"] = f"http://127.0.0.1:{HUB_PORT}"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

import fpl_hf  # noqa: E402,F401  (registers the Auto classes)

torch.set_num_threads(2)

ROOT = Path(__file__).resolve().parents[1]
# run_fpl.py's flags for a tiny randomly initialised DeepLabv3+ (no download).
TINY_MODEL_FLAGS = "--backbone test_resnet --backbone_weights none --aspp_channels 16 --decoder_channels 16".split()
# examples/run_fpl.py, loaded by path: putting examples/ on sys.path would let examples/evaluate.py shadow the
# evaluate library.
_spec = importlib.util.spec_from_file_location("run_fpl", ROOT / "examples" / "run_fpl.py")
run_fpl = sys.modules["run_fpl"] = importlib.util.module_from_spec(_spec)  # dataclasses look their module up
_spec.loader.exec_module(run_fpl)


def tiny_config(**overrides):
    from fpl_hf import DeepLabV3PlusConfig

    values = dict(
        backbone="test_resnet",
        num_labels=4,
        aspp_channels=16,
        decoder_channels=16,
        low_level_channels=8,
        aspp_rates=[1, 2, 3],
    )
    values.update(overrides)
    return DeepLabV3PlusConfig(**values)


@pytest.fixture(scope="session")
def scenes():
    from fpl_hf.data import make_fashion_scenes, split_labeled_unlabeled

    data = make_fashion_scenes(24, size=32, seed=0)
    labeled, unlabeled = split_labeled_unlabeled(data, num_labeled=6, seed=0)
    return labeled, unlabeled, make_fashion_scenes(4, size=32, split="validation")


def make_trainer(scenes, tmp_path, trainer_kwargs=None, model=None, **overrides):
    """A trainer of a tiny 11-class model (by default a DeepLabv3+) on `scenes`; `overrides` are FPLConfig fields."""
    from fpl_hf import DeepLabV3PlusForSemanticSegmentation
    from fpl_hf.data import EvaluationDataset, training_dataset
    from fpl_hf.trainer import FPLConfig, FPLTrainer

    labeled, unlabeled, validation = scenes
    values = dict(
        output_dir=str(tmp_path / "run"),
        crop_size=32,
        max_steps=2,
        per_device_train_batch_size=2,
        logging_steps=1,
        use_cpu=True,
        save_strategy="no",
        learning_rate=0.01,
        disable_tqdm=True,
        seed=0,
    )
    values.update(overrides)
    args = FPLConfig(**values)
    torch.manual_seed(0)
    # timm zero-initialises each residual block's last BatchNorm: the BatchNorm before it would then need many
    # steps to move measurably, and "every parameter changed" could not be checked in two.
    if model is None:
        model = DeepLabV3PlusForSemanticSegmentation(
            tiny_config(num_labels=11, backbone_kwargs={"zero_init_last": False})
        )
    train = training_dataset(
        labeled, unlabeled, num_labels=11, image_mean=[0.5] * 3, image_std=[0.5] * 3, **args.train_dataset_options()
    )
    evaluation = EvaluationDataset(validation, num_labels=11, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return FPLTrainer(model, args, train_dataset=train, eval_dataset=evaluation, **(trainer_kwargs or {}))


def one_batch(trainer, size=4):
    """The first `size` training items of `trainer` as a framework step takes them (collated, normalised)."""
    return trainer._prepare_inputs(trainer.data_collator([trainer.train_dataset[index] for index in range(size)]))


def capture_pairs(trainer, values=(7.0,)):
    """Replaces the trainer's unsupervised loss by constants (the i-th pair of a call gets `values[i]`, the last value
    for the rest), with gradient, and keeps every pair it is given."""
    pairs = []

    def fake(*given):
        pairs.extend(given)
        return [pair.student.sum() * 0 + values[min(index, len(values) - 1)] for index, pair in enumerate(given)]

    trainer.unsupervised_loss = fake
    return pairs


def recorded_inputs(module):
    """The `pixel_values` of every forward of `module` from now on."""
    inputs = []

    def record(_, args, kwargs):
        inputs.append(kwargs["pixel_values"] if "pixel_values" in kwargs else args[0])

    module.register_forward_pre_hook(record, with_kwargs=True)
    return inputs


def tiny_dinov2_dpt_config(**overrides):
    """fpl_hf's DPT head on a DINOv2-architecture ViT (patch 14, layer scale) of 4 blocks of width 32. Its layer
    scale starts at 1, not DINOv2's 1e-5, so that two test steps move every parameter measurably."""
    from fpl_hf import TimmDPTConfig

    values = dict(
        backbone="vit_small_patch14_dinov2",
        num_labels=11,
        out_indices=[0, 1, 2, 3],
        backbone_kwargs={"embed_dim": 32, "depth": 4, "num_heads": 2, "img_size": 28, "init_values": 1.0},
        dpt_out_channels=[8, 8, 16, 16],
        dpt_features=16,
    )
    values.update(overrides)
    return TimmDPTConfig(**values)


def tiny_model_of(family: str):
    """A tiny random 11-class model of any family fpl_hf trains: "deeplabv3plus", "timm_dpt" (fpl_hf's DPT on a
    DINOv2 ViT) or a transformers family of `tiny_transformers_model`."""
    from fpl_hf import DeepLabV3PlusForSemanticSegmentation, TimmDPTForSemanticSegmentation

    if family == "deeplabv3plus":
        torch.manual_seed(0)
        return DeepLabV3PlusForSemanticSegmentation(tiny_config(num_labels=11))
    if family == "timm_dpt":
        torch.manual_seed(0)
        return TimmDPTForSemanticSegmentation(tiny_dinov2_dpt_config())
    return tiny_transformers_model(family)


@pytest.fixture
def tiny_model():
    from fpl_hf import DeepLabV3PlusForSemanticSegmentation

    torch.manual_seed(0)
    return DeepLabV3PlusForSemanticSegmentation(tiny_config()).eval()


@pytest.fixture(scope="session")
def hub_server():
    server = MockHub(HUB_PORT).start()
    yield server
    server.stop()


@pytest.fixture
def hub(hub_server, monkeypatch, tmp_path):
    """The Hub stand-in, empty, online, with a write token in HF_TOKEN and a fresh download cache."""
    from huggingface_hub import constants

    hub_server.repos.clear()
    hub_server.refuse_commits = False
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub_server


def tiny_transformers_model(family: str, num_labels: int = 11):
    """A randomly initialised transformers segmentation model of a few thousand parameters (no download)."""
    from transformers import (
        AutoModelForSemanticSegmentation,
        Dinov2Config,
        DPTConfig,
        MobileViTConfig,
        SegformerConfig,
        UperNetConfig,
    )

    labels = dict(
        num_labels=num_labels,
        id2label={i: f"class_{i}" for i in range(num_labels)},
        label2id={f"class_{i}": i for i in range(num_labels)},
    )
    if family == "segformer":
        config = SegformerConfig(
            num_encoder_blocks=2,
            depths=[1, 1],
            sr_ratios=[2, 1],
            hidden_sizes=[8, 16],
            patch_sizes=[7, 3],
            strides=[4, 2],
            num_attention_heads=[1, 1],
            mlp_ratios=[2, 2],
            decoder_hidden_size=16,
            **labels,
        )
    elif family == "upernet_dinov2":
        backbone = Dinov2Config(
            hidden_size=16,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=32,
            patch_size=8,
            image_size=32,
            out_features=["stage1", "stage2", "stage3", "stage4"],
            reshape_hidden_states=True,
        )
        config = UperNetConfig(
            backbone_config=backbone, hidden_size=16, pool_scales=[1, 2], use_auxiliary_head=False, **labels
        )
    elif family == "dpt":
        config = DPTConfig(
            hidden_size=16,
            num_hidden_layers=4,
            num_attention_heads=2,
            intermediate_size=32,
            image_size=32,
            patch_size=8,
            backbone_out_indices=[0, 1, 2, 3],
            neck_hidden_sizes=[8, 8, 16, 16],
            fusion_hidden_size=16,
            reassemble_factors=[4, 2, 1, 0.5],
            use_auxiliary_head=False,
            **labels,
        )
    elif family == "mobilevit":
        config = MobileViTConfig(
            image_size=32,
            hidden_sizes=[16, 16, 16],
            neck_hidden_sizes=[8, 8, 16, 16, 16, 32, 32],
            num_attention_heads=2,
            aspp_out_channels=16,
            **labels,
        )
    else:
        raise ValueError(family)
    torch.manual_seed(0)
    return AutoModelForSemanticSegmentation.from_config(config)
