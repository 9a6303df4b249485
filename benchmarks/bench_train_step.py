"""Time and peak memory of one whole training step per framework, `unsup_loss="fpl"` against `"ce"`.

    python benchmarks/bench_train_step.py              # the embedded default's step (tf_efficientnet_lite0, crop 64)
    python benchmarks/bench_train_step.py --backbone resnet50d --crop_size 256 --batch_size 4 --num_labels 21

A step is `FPLTrainer.training_step` (every forward, the losses, backward) plus the optimizer step, on one fixed
batch; both losses use the same model initialisation, data and seed, in the same run.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from _measure import median_seconds, peak_bytes

from fpl_hf import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation
from fpl_hf.data import SemiSupervisedDataset, make_fashion_scenes, split_labeled_unlabeled
from fpl_hf.launchers import describe_device
from fpl_hf.trainer import FPLConfig, FPLTrainer


def step_function(framework: str, unsup_loss: str, options: argparse.Namespace, scenes, device: torch.device):
    args = FPLConfig(
        output_dir=tempfile.mkdtemp(),
        framework=framework,
        unsup_loss=unsup_loss,
        crop_size=options.crop_size,
        per_device_train_batch_size=options.batch_size,
        max_steps=100,
        use_cpu=device.type == "cpu",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    torch.manual_seed(0)
    config = DeepLabV3PlusConfig(
        backbone=options.backbone,
        num_labels=options.num_labels,
        aspp_channels=options.channels,
        decoder_channels=options.channels,
    )
    model = DeepLabV3PlusForSemanticSegmentation(config)
    labeled, unlabeled = scenes
    dataset = SemiSupervisedDataset(
        labeled,
        unlabeled,
        num_labels=options.num_labels,
        image_mean=[0.5] * 3,
        image_std=[0.5] * 3,
        **args.train_dataset_options(),
    )
    trainer = FPLTrainer(model, args, train_dataset=dataset)
    trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
    trainer.current_gradient_accumulation_steps = 1  # set by train(), which this drives by hand
    batch = trainer.data_collator([dataset[index] for index in range(options.batch_size)])
    # As on real unlabeled data: no hidden labels, so neither loss pays for the diagnostic case statistics.
    batch["unlabeled_diagnostic_labels"] = torch.full_like(batch["unlabeled_diagnostic_labels"], 255)
    batch = {name: value.to(device) for name, value in batch.items()}
    trainer.model.to(device)

    def step() -> None:
        trainer.training_step(trainer.model, batch)
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frameworks", nargs="+", default=["cps", "mean_teacher", "unimatch"])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--channels", type=int, default=64, help="ASPP and decoder channels.")
    parser.add_argument("--num_labels", type=int, default=6)
    parser.add_argument("--crop_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    options = parser.parse_args()
    device = torch.device(options.device)
    scenes = split_labeled_unlabeled(
        make_fashion_scenes(4 * options.batch_size, size=options.crop_size, seed=0),
        num_labeled=options.batch_size,
        seed=0,
    )
    print(
        f"device: {describe_device(device)}, torch {torch.__version__}; {options.backbone}, {options.num_labels} "
        f"classes, crop {options.crop_size}, batch {options.batch_size}; median of {options.repeats} steps"
    )
    print(
        f"{'framework':>13} {'CE ms':>8} {'FPL ms':>8} {'time x CE':>10} {'CE MiB':>8} {'FPL MiB':>8} {'mem x CE':>9}"
    )
    for framework in options.frameworks:
        steps = {loss: step_function(framework, loss, options, scenes, device) for loss in ("ce", "fpl")}
        # Alternate the two so that drifts of the machine (clocks, other load) fall on both alike.
        seconds = {"ce": [], "fpl": []}
        for _ in range(3):
            for loss, step in steps.items():
                seconds[loss].append(median_seconds(step, device, repeats=options.repeats, warmup=2))
        time = {loss: min(values) for loss, values in seconds.items()}
        memory = {loss: peak_bytes(step, device) / 2**20 for loss, step in steps.items()}
        print(
            f"{framework:>13} {1e3 * time['ce']:8.1f} {1e3 * time['fpl']:8.1f} {time['fpl'] / time['ce']:10.3f} "
            f"{memory['ce']:8.1f} {memory['fpl']:8.1f} {memory['fpl'] / memory['ce']:9.3f}"
        )


if __name__ == "__main__":
    main()
