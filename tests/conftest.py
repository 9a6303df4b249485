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


def make_trainer(scenes, tmp_path, trainer_kwargs=None, **overrides):
    """A trainer of a tiny 11-class model on `scenes`; `overrides` are FPLConfig fields."""
    from fpl_hf import DeepLabV3PlusForSemanticSegmentation
    from fpl_hf.data import EvaluationDataset, SemiSupervisedDataset
    from fpl_hf.trainer import FPLConfig, FPLTrainer

    labeled, unlabeled, validation = scenes
    values = dict(
        output_dir=str(tmp_path / "run"), crop_size=32, max_steps=2, per_device_train_batch_size=2, logging_steps=1,
        use_cpu=True, save_strategy="no", learning_rate=0.01, disable_tqdm=True, seed=0,
    )
    values.update(overrides)
    args = FPLConfig(**values)
    torch.manual_seed(0)
    # timm zero-initialises each residual block's last BatchNorm: the BatchNorm before it would then need many
    # steps to move measurably, and "every parameter changed" could not be checked in two.
    model = DeepLabV3PlusForSemanticSegmentation(tiny_config(num_labels=11, backbone_kwargs={"zero_init_last": False}))
    train = SemiSupervisedDataset(labeled, unlabeled, num_labels=11, image_mean=[0.5] * 3, image_std=[0.5] * 3,
                                  **args.train_dataset_options())
    evaluation = EvaluationDataset(validation, num_labels=11, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return FPLTrainer(model, args, train_dataset=train, eval_dataset=evaluation, **(trainer_kwargs or {}))


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
