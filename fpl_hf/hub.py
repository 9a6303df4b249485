"""Model cards: the Hub's model-index metadata with the run's mIoU, and a description of the run."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE = Path(__file__).parent / "templates" / "model_card.md"


def write_model_card(
    output_dir: str,
    *,
    model_args: Any,
    data_args: Any,
    training_args: Any,
    metrics: dict[str, float],
    summary: dict[str, Any],
    class_names: tuple[str, ...],
    repo_id: Optional[str] = None,
) -> ModelCard:
    """Renders `templates/model_card.md` into `output_dir/README.md` (written atomically) and returns it."""
    args = training_args
    repo_id = repo_id or args.hub_model_id or Path(output_dir).name
    dataset = data_args.dataset
    card_data = ModelCardData(
        library_name="transformers",
        license="apache-2.0",
        pipeline_tag="image-segmentation",
        tags=["fpl-hf", "semantic-segmentation", "semi-supervised", "deeplabv3plus", args.framework, args.unsup_loss],
        datasets=[dataset],
        model_name=repo_id,
        eval_results=[
            EvalResult(
                task_type="image-segmentation",
                dataset_type=dataset,
                dataset_name=dataset,
                dataset_split=data_args.validation_split,
                metric_type="mean_iou",
                metric_value=round(float(metrics["eval_mean_iou"]), 4),
            )
        ],
    )
    per_class = []
    for name in class_names:
        value = metrics.get(f"eval_iou_{name}", float("nan"))
        per_class.append((name, "n/a" if math.isnan(value) else f"{100 * value:.2f}"))
    card = ModelCard.from_template(
        card_data,
        template_path=str(TEMPLATE),
        model_name=repo_id,
        repo_id=repo_id,
        backbone=getattr(model_args, "backbone", "?"),
        backbone_weights=getattr(model_args, "backbone_weights", None),
        unsup_loss=args.unsup_loss,
        framework=args.framework,
        threshold=args.threshold,
        semantics=args.semantics,
        fpl_weight=args.fpl_weight,
        cutmix=args.cutmix,
        unsup_weight=args.unsup_weight,
        dataset=dataset,
        num_labeled=summary["labeled_images"],
        num_unlabeled=summary["unlabeled_images"],
        optim=str(args.optim).split(".")[-1].lower(),
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay,
        lr_scheduler=str(args.lr_scheduler_type).split(".")[-1].lower(),
        max_steps=args.max_steps,
        batch_size=args.per_device_train_batch_size,
        unlabeled_per_item=args.num_unlabeled_images,
        crop_size=args.crop_size,
        seed=args.seed,
        evaluation_protocol=args.evaluation_protocol.capitalize(),
        mean_iou=metrics["eval_mean_iou"],
        best_mean_iou=summary["best_mean_iou"],
        best_step=summary["best_step"],
        per_class=per_class,
    )
    path = Path(output_dir) / "README.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".md.tmp")
    temporary.write_text(str(card))
    os.replace(temporary, path)
    return card


__all__ = ["write_model_card"]
