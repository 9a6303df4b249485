"""The Hub: model cards with the run's mIoU in `model-index`, and pushes of an output directory.

fpl-hf-push outputs/fpl-embedded my-name/fpl-embedded       # push a finished run (model, processor, card)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.utils import httpx  # the HTTP client huggingface_hub itself uses (httpx or httpx2)
from transformers.utils import logging

from .viz import k_shares_figure, validation_curve_figure

logger = logging.get_logger(__name__)

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"
# Models whose code ships with fpl_hf (their cards say `import fpl_hf`); any other loads with transformers alone.
FPL_HF_MODEL_TYPES = ("deeplabv3plus", "timm_dpt")
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md")


@dataclass
class ModelCardInfo:
    """What a model card says that the model and the training arguments do not know.

    Args:
        dataset_name: the training data set, as named on the card and in `model-index` (e.g. "voc_aug").
        dataset_split: the split the reported mIoU comes from.
        labeled_split: how the labeled images were chosen (e.g. "1/16 of train, CPS list"); counts are added.
        backbone_weights: where the encoder's pretrained weights came from (e.g. "ImageNet, timm").
        demo_space: a Space that shows the model (owner/name; examples/demo is one, ready to push): the card links it.
        recipe: the config file the run's defaults came from (e.g. "examples/configs/real_images.yaml").
    """

    dataset_name: str = "custom"
    dataset_split: str = "validation"
    labeled_split: str | None = None
    backbone_weights: str | None = None
    demo_space: str | None = None
    recipe: str | None = None


class HubPushError(RuntimeError):
    """A push to the Hub failed; the message says why and how to retry. Local files are never touched."""


def write_model_card(
    directory: str,
    *,
    args: Any,
    model_config: Any,
    info: ModelCardInfo,
    facts: dict[str, Any],
    metrics: dict[str, float] | None = None,
    best_metrics: dict[str, float] | None = None,
    repo_id: str | None = None,
    log_history: list[dict] | None = None,
) -> ModelCard:
    """Renders the card of a run into `directory/README.md` (written atomically) and returns it.

    `args` is the run's `FPLConfig` and `facts` what the run does (`FPLTrainer.run_facts`: images, steps of each
    phase); `metrics` the latest evaluation (keys `mean_iou`, `iou_<class>`) and `best_metrics` the best one (plus
    `step`); without `metrics` the card says the model is not evaluated yet. From `log_history` (the Trainer's) the
    card's pictures are drawn beside it, and pushed with it: the validation curve and, for FPL, the K shares.
    """
    repo_id = repo_id or args.hub_model_id or Path(args.output_dir).name
    framework = args.framework_declaration
    semi_supervised = framework.unlabeled
    eval_results = None
    if metrics is not None:
        eval_results = [
            EvalResult(
                task_type="image-segmentation",
                dataset_type=info.dataset_name,
                dataset_name=info.dataset_name,
                dataset_split=info.dataset_split,
                metric_type="mean_iou",
                metric_value=round(float(metrics["mean_iou"]), 4),
            )
        ]
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        pipeline_tag="image-segmentation",
        tags=["fpl-hf", "semantic-segmentation", model_config.model_type, args.framework]
        + (["semi-supervised", args.unsup_loss] if semi_supervised else []),
        datasets=[info.dataset_name],
        model_name=repo_id,
        eval_results=eval_results,
    )
    per_class = []
    for index in range(model_config.num_labels):
        name = model_config.id2label.get(index, str(index))
        value = (metrics or {}).get(f"iou_{name}", float("nan"))
        per_class.append((name, "n/a" if math.isnan(value) else f"{100 * value:.2f}"))
    pictures = card_pictures(directory, log_history or [])
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        repo_id=repo_id,
        args=args,
        config=model_config,
        framework=framework,
        loss=args.unsupervised_loss,
        semi_supervised=semi_supervised,
        framework_options=describe_options(args.framework_options),
        loss_options=describe_options(args.loss_options),
        steps=describe_steps(facts),
        facts=facts,
        architecture=describe_architecture(model_config),
        fpl_hf_model=model_config.model_type in FPL_HF_MODEL_TYPES,
        info=info,
        optim=str(args.optim).split(".")[-1].lower(),
        lr_scheduler=str(args.lr_scheduler_type).split(".")[-1].lower(),
        metrics=metrics,
        best_metrics=best_metrics,
        per_class=per_class,
        pictures=pictures,
    )
    path = Path(directory) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(str(card))
    os.replace(temporary, path)
    return card


CARD_PICTURES = {
    "validation_curve.png": ("validation mIoU over training", validation_curve_figure, "eval_mean_iou"),
    "k_shares.png": ("share of unlabeled pixels with K = 1, 2, 3+ (FPL's fuzzy positive sets)", k_shares_figure, "k1"),
}


def card_pictures(directory: str, log_history: list[dict]) -> dict[str, str]:
    """Draws the card's pictures that `log_history` has the figures for into `directory`: {file name: caption}."""
    drawn = {}
    for name, (caption, draw, key) in CARD_PICTURES.items():
        if any(key in entry for entry in log_history):
            Path(directory).mkdir(parents=True, exist_ok=True)
            draw(log_history, Path(directory) / name)
            drawn[name] = caption
    return drawn


def describe_options(options: Any) -> str:
    """An entry's options in words: "threshold = 0.9, fpl_weight = concave"."""
    return ", ".join(f"{name} = {value}" for name, value in dataclasses.asdict(options).items())


def describe_steps(facts: dict[str, Any]) -> str:
    """The steps of a run and of its phases: "600 steps (200 of supervised burn-in, then 400 semi-supervised)"."""
    if not facts["burn_in_steps"]:
        return f"{facts['steps']} steps"
    return (
        f"{facts['steps']} steps ({facts['burn_in_steps']} of supervised burn-in, then "
        f"{facts['semi_supervised_steps']} semi-supervised)"
    )


def describe_run(facts: dict[str, Any]) -> str:
    """A run in a line: "cps + fpl, 600 steps (200 of supervised burn-in, then 400 semi-supervised), 20 labeled and
    980 unlabeled images"."""
    if facts["unsup_loss"] is None:
        return f"{facts['framework']}, {describe_steps(facts)}, {facts['labeled_images']} labeled images alone"
    unlabeled = "a streamed pool of" if facts["unlabeled_images"] is None else facts["unlabeled_images"]
    return (
        f"{facts['framework']} + {facts['unsup_loss']}, {describe_steps(facts)}, {facts['labeled_images']} "
        f"labeled and {unlabeled} unlabeled images"
    )


def describe_architecture(config: Any) -> str:
    """The network in a phrase, e.g. "A DeepLabv3+ network (resnet101d encoder, output stride 16, 21 classes)"."""
    if config.model_type == "deeplabv3plus":
        return (
            f"A DeepLabv3+ semantic segmentation network ({config.backbone} encoder, output stride "
            f"{config.output_stride}, {config.num_labels} classes)"
        )
    if config.model_type == "timm_dpt":
        return (
            f"A DPT semantic segmentation network on a {config.backbone} encoder (blocks {config.out_indices}, "
            f"{config.num_labels} classes)"
        )
    name = (config.architectures or [config.model_type])[0]
    return f"A {name} semantic segmentation network ({config.num_labels} classes)"


@contextlib.contextmanager
def explained_hub_errors(action: str, local_dir: str | None = None) -> Iterator[None]:
    """Turns network and HTTP failures of `action` into a `HubPushError` that says what to do."""
    kept = (
        f" Nothing in {local_dir} was changed; push it later with `fpl-hf-push {local_dir} REPO_ID`."
        if local_dir
        else ""
    )
    try:
        yield
    except (httpx.TransportError, OfflineModeIsEnabled) as error:
        raise HubPushError(
            f"Could not {action}: the Hub at {constants.ENDPOINT} is unreachable ({type(error).__name__}: {error}). "
            f"Check the network (or HF_ENDPOINT, HF_HUB_OFFLINE).{kept}"
        ) from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        hint = " Check that your token has write access to this namespace." if status in (401, 403) else ""
        raise HubPushError(f"Could not {action}: the Hub answered {status} ({error}).{hint}{kept}") from error


def require_token(token: str | None) -> str:
    """The token to push with: `token`, else HF_TOKEN or the one stored by `hf auth login`."""
    token = token or get_token()
    if not token:
        raise HubPushError(
            "Pushing to the Hub needs a token with write access, and none is set: run `hf auth login`, set HF_TOKEN, "
            "or pass one (`--hub_token` in training, `--token` to fpl-hf-push)."
        )
    return token


class ExplainedHubPushes:
    """A `Trainer` mixin: pushes whose failures say what to do, background pushes whose failures are reported, and
    checkpoint pushes that carry the card and the model code with the weights."""

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        token = require_token(token or self.args.hub_token)
        with explained_hub_errors(f"create the Hub repo {self.args.hub_model_id or self.args.output_dir}"):
            super().init_hf_repo(token=token, private=private)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        self._warn_about_failed_pushes()
        # Trainer copies only config and weights to the root it uploads; the card and the code files (for
        # trust_remote_code users) must go with them.
        if self.is_world_process_zero():
            for name in os.listdir(checkpoint_folder):
                if name.endswith(".py") or name == "README.md" or name in CARD_PICTURES:
                    shutil.copy(os.path.join(checkpoint_folder, name), os.path.join(self.args.output_dir, name))
        super()._push_from_checkpoint(checkpoint_folder)

    def _warn_about_failed_pushes(self) -> None:
        # Trainer pushes checkpoints in the background and never looks at the outcome.
        pending = getattr(self, "push_in_progress", None)
        for job in pending.jobs if pending is not None else []:
            if job.done() and not job.cancelled() and job.exception() is not None:
                logger.warning(
                    f"A background push to {self.hub_model_id} failed ({job.exception()}); training goes on, the next "
                    f"save pushes again, and everything is kept in {self.args.output_dir}."
                )

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True, **kwargs: Any):
        self._finish_current_push()
        self._warn_about_failed_pushes()
        with explained_hub_errors(f"push {self.args.output_dir} to the Hub", self.args.output_dir):
            return super().push_to_hub(commit_message=commit_message, blocking=blocking, **kwargs)


def push_output_dir(
    output_dir: str,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    include_checkpoints: bool = False,
    commit_message: str = "Upload FPL model",
) -> str:
    """Uploads a run's model, processor, card and code to the model repo `repo_id` (created if needed).

    Checkpoint folders stay local unless `include_checkpoints`. Returns the URL of the commit.
    """
    directory = Path(output_dir)
    missing = [name for name in MODEL_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{output_dir} is not a finished fpl_hf run: it lacks {missing}. Push the output directory of a "
            "training run (it holds config.json, model.safetensors, preprocessor_config.json and README.md)."
        )
    token = require_token(token)
    api = HfApi(token=token)
    with explained_hub_errors(f"create the repo {repo_id}", output_dir):
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    ignore = ["_*", "*.tmp"] + ([] if include_checkpoints else ["checkpoint-*"])
    with explained_hub_errors(f"upload {output_dir} to {repo_id}", output_dir):
        commit = api.upload_folder(
            repo_id=repo_id, folder_path=output_dir, commit_message=commit_message, ignore_patterns=ignore
        )
    return commit.commit_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Push an fpl_hf output directory to the Hugging Face Hub.")
    parser.add_argument("output_dir", help="The run's output directory (config.json, model.safetensors, README.md).")
    parser.add_argument("repo_id", help="The model repo, e.g. my-name/fpl-voc-1-16.")
    parser.add_argument("--token", help="Hub token with write access (default: HF_TOKEN or `hf auth login`).")
    parser.add_argument("--private", action="store_true", help="Create the repo private.")
    parser.add_argument("--include-checkpoints", action="store_true", help="Also upload checkpoint-* folders.")
    options = parser.parse_args(argv)
    try:
        url = push_output_dir(
            options.output_dir,
            options.repo_id,
            token=options.token,
            private=options.private or None,
            include_checkpoints=options.include_checkpoints,
        )
    except (HubPushError, FileNotFoundError) as error:
        parser.exit(1, f"fpl-hf-push: {error}\n")  # the message says what to do; a traceback would not add to it
    print(url)


__all__ = [
    "CARD_PICTURES",
    "card_pictures",
    "describe_architecture",
    "describe_options",
    "describe_run",
    "describe_steps",
    "ExplainedHubPushes",
    "HubPushError",
    "ModelCardInfo",
    "explained_hub_errors",
    "push_output_dir",
    "require_token",
    "write_model_card",
]
