"""The networks a framework trains, assembled from its declaration: the model itself or a `NetworkPair` (CPS), an
EMA teacher where it declares one, and which of them are evaluated, exported and checkpointed."""

from __future__ import annotations

import copy
from typing import Optional

from torch import nn

from ..modeling import SegmentationNetwork
from ..modeling.transformers_segmenter import as_segmenter
from .frameworks import Framework, NetworkPair
from .frameworks.base import framework_names

TEACHER_FILE = "teacher.safetensors"


def trained_module(framework: Framework, model: nn.Module, second_network: Optional[nn.Module], seed: int) -> nn.Module:
    """What the trainer optimises: `model` as a `SegmentationNetwork`, or the framework's pair built around it."""
    network = as_segmenter(model)
    if framework.perturbs_features and not network.supports_feature_perturbation:
        raise ValueError(
            f"Framework {framework.name!r} perturbs encoder features, which fpl_hf does not read for "
            f"{network.config.model_type!r} models. Train it with framework "
            f"{framework_names(lambda other: other.unlabeled and not other.perturbs_features)}."
        )
    if framework.pair is not None:
        return framework.pair(network, second_network, seed)
    if second_network is not None:
        raise ValueError(f"`branch_2` is a second network to train; framework {framework.name!r} trains one.")
    return network


def ema_teacher(framework: Framework, module: nn.Module) -> Optional[nn.Module]:
    """A frozen copy of the trained network, where the framework keeps an EMA teacher."""
    return copy.deepcopy(module).eval().requires_grad_(False) if framework.ema_decay is not None else None


def evaluated_network(module: nn.Module) -> SegmentationNetwork:
    """The network that is evaluated and exported: a pair's own choice (CPS: branch 1), else the module itself."""
    return module.evaluated_network if isinstance(module, NetworkPair) else module


def checkpointed_networks(module: nn.Module, teacher: Optional[nn.Module]) -> dict[str, nn.Module]:
    """The networks a checkpoint holds beside the exported model, by file name."""
    networks = module.checkpointed_networks() if isinstance(module, NetworkPair) else {}
    return {**networks, **({TEACHER_FILE: teacher} if teacher is not None else {})}


__all__ = ["TEACHER_FILE", "checkpointed_networks", "ema_teacher", "evaluated_network", "trained_module"]
