"""The networks a framework trains, assembled from its declaration: the model itself or a `NetworkPair` (CPS), an
EMA teacher where it declares one, and which of them are evaluated, exported and checkpointed."""

from __future__ import annotations

import copy
import os

from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig

from ..hub import describe_architecture
from ..modeling import SegmentationNetwork
from ..modeling.transformers_segmenter import as_segmenter
from .frameworks import Framework, NetworkPair
from .frameworks.base import framework_names

TEACHER_FILE = "teacher.safetensors"


def trained_module(framework: Framework, model: nn.Module, second_network: nn.Module | None, seed: int) -> nn.Module:
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


def ema_teacher(framework: Framework, module: nn.Module) -> nn.Module | None:
    """A frozen copy of the trained network, where the framework keeps an EMA teacher."""
    return copy.deepcopy(module).eval().requires_grad_(False) if framework.ema_decay is not None else None


def evaluated_network(module: nn.Module) -> SegmentationNetwork:
    """The network that is evaluated and exported: a pair's own choice (CPS: branch 1), else the module itself."""
    return module.evaluated_network if isinstance(module, NetworkPair) else module


def checkpointed_networks(module: nn.Module, teacher: nn.Module | None) -> dict[str, nn.Module]:
    """The networks a checkpoint holds beside the exported model, by file name."""
    networks = module.checkpointed_networks() if isinstance(module, NetworkPair) else {}
    return {**networks, **({TEACHER_FILE: teacher} if teacher is not None else {})}


class CheckpointedNetworks:
    """A `Trainer` mixin: every save is the exported network, a model `from_pretrained` loads, with its processor, code
    and card; checkpoints also hold the framework's other networks (CPS's branch 2, an EMA teacher), which resume
    restores."""

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Every save is a model `from_pretrained` loads (CPS: branch 1), with its processor, code and card;
        checkpoints also hold the other networks (CPS branch 2, an EMA teacher) to resume from."""
        output_dir = output_dir or self.args.output_dir
        if self.args.should_save:
            self._inference_model(self.model).save_pretrained(output_dir)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)
            if _internal_call:
                for filename, network in self._checkpointed_networks().items():
                    temporary = os.path.join(output_dir, f"{filename}.tmp")
                    save_file({name: tensor.contiguous() for name, tensor in network.state_dict().items()}, temporary)
                    os.replace(temporary, os.path.join(output_dir, filename))
            self.create_model_card(output_dir=output_dir)
        if self.args.push_to_hub and not _internal_call:
            self.push_to_hub(commit_message="Model save", revision=self.args.hub_revision)

    def _checkpointed_networks(self) -> dict[str, nn.Module]:
        return checkpointed_networks(self.accelerator.unwrap_model(self.model), self.teacher)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        exported_model = self._inference_model(model if model is not None else self.model)
        networks = {"model.safetensors": exported_model, **self._checkpointed_networks()}
        for filename, network in networks.items():
            path = os.path.join(resume_from_checkpoint, filename)
            if not os.path.isfile(path):
                raise FileNotFoundError(
                    f"{resume_from_checkpoint} has no {filename}: it is not a checkpoint of a "
                    f"{self.args.framework} run."
                )
            try:
                if network is exported_model:  # saved by `save_pretrained`, whose key layout its class's loader knows
                    network.load_state_dict(type(exported_model).from_pretrained(resume_from_checkpoint).state_dict())
                else:
                    network.load_state_dict(load_file(path))
            except (RuntimeError, ValueError, OSError) as error:
                saved = AutoConfig.from_pretrained(resume_from_checkpoint)
                raise ValueError(
                    f"{resume_from_checkpoint} does not fit this run: it holds {describe_architecture(saved)}, this "
                    f"run trains {describe_architecture(exported_model.config)}. Resume with the model flags the "
                    f"checkpoint was trained with, or start a new run. ({type(error).__name__}: {str(error)[:300]})"
                ) from error

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)


__all__ = [
    "TEACHER_FILE",
    "CheckpointedNetworks",
    "checkpointed_networks",
    "ema_teacher",
    "evaluated_network",
    "trained_module",
]
