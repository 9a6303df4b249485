"""What FPLTrainer costs over a plain training loop: for each framework, the same training (model, data, seed,
steps) through `FPLTrainer` and through a loop as the released code writes it (forward, losses, backward, optimizer,
scheduler, EMA), alternated in one run; both must end at the same weights.

    python benchmarks/bench_overhead.py                    # the embedded default's step, every framework
    python benchmarks/bench_overhead.py --frameworks cps --steps 40 --rounds 6

The plain loop runs each framework's own step function (the method's arithmetic) with a bare context: the
supervised cross-entropy, the FPL loss, the unsupervised weight and the EMA teacher, and nothing else (no
statistics, no logs, no callbacks). Both read the same items in order (`train_sampling_strategy="sequential"`).
Printed: seconds a step after the warm-up steps (median over the rounds; the two swap which goes first from round
to round), peak memory above the start of a run (CPU: resident set size, sampled; median over the rounds), the
ratio, and the largest weight difference at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from _measure import PeakMemory
from transformers import TrainerCallback

from fpl_hf import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation
from fpl_hf.data import (
    EMBEDDED_CLASSES,
    make_fashion_scenes,
    prepared_batch,
    semi_supervised_collate,
    split_labeled_unlabeled,
    training_dataset,
)
from fpl_hf.launchers import describe_device
from fpl_hf.modeling.transformers_segmenter import label_fields
from fpl_hf.trainer import FRAMEWORKS, FPLConfig, FPLTrainer, ema_update
from fpl_hf.trainer.networks import ema_teacher, trained_module


class StepTimes(TrainerCallback):
    """Wall time from the end of a step to the end of the next: loading its batch included, as in the loop."""

    def __init__(self):
        self.times: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self._last = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        self.times.append(now - self._last)
        self._last = now


@dataclass
class BareContext:
    """What a step needs of a trainer, and nothing more: the released code's loop."""

    options: Any
    mixes: bool
    teacher: torch.nn.Module | None
    unsup_weight: float
    loss_options: Any
    compute_loss: Any

    def supervised_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, ignore_index=255)

    def unsupervised_loss(self, *pairs) -> list[torch.Tensor]:
        return [output.loss for output in self.compute_loss(pairs, self.loss_options)]

    def record(self, **values: Any) -> None:
        pass


def config(framework: str, steps: int, directory: str) -> FPLConfig:
    return FPLConfig(
        output_dir=directory,
        framework=framework,
        crop_size=64,
        scale_range=[0.75, 1.5],
        per_device_train_batch_size=8,
        max_steps=steps,
        optim="adamw_torch",
        learning_rate=3e-3,
        weight_decay=0.01,
        save_strategy="no",
        logging_steps=10,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        train_sampling_strategy="sequential",
        dataloader_num_workers=0,
        skip_data_check=True,
    )


def new_model() -> DeepLabV3PlusForSemanticSegmentation:
    torch.manual_seed(0)
    return DeepLabV3PlusForSemanticSegmentation(
        DeepLabV3PlusConfig(
            backbone="tf_efficientnet_lite0", aspp_channels=64, decoder_channels=64, **label_fields(EMBEDDED_CLASSES)
        )
    )


def through_the_trainer(framework: str, steps: int, data, device) -> tuple[list[float], int, dict]:
    args = config(framework, steps, tempfile.mkdtemp())
    items = training_dataset(
        *data, num_labels=6, image_mean=[0.5] * 3, image_std=[0.5] * 3, **args.train_dataset_options()
    )
    trainer = FPLTrainer(new_model(), args, train_dataset=items)
    times = StepTimes()
    trainer.add_callback(times)
    with PeakMemory(device) as memory:
        trainer.train()
    return times.times, memory.peak, trainer.model.state_dict()


def through_a_plain_loop(framework: str, steps: int, data, device) -> tuple[list[float], int, dict]:
    args = config(framework, steps, tempfile.mkdtemp())
    declaration = FRAMEWORKS[framework]
    items = training_dataset(
        *data, num_labels=6, image_mean=[0.5] * 3, image_std=[0.5] * 3, **args.train_dataset_options()
    )
    module = trained_module(declaration, new_model(), None, args.seed).to(device).train()
    teacher = ema_teacher(declaration, module)
    torch.manual_seed(args.seed)  # as the Trainer seeds, once the networks are built
    # Weight decay on weights (convolution kernels), never on norms or biases.
    groups = [
        {"params": [p for p in module.parameters() if p.dim() > 1], "weight_decay": 0.01},
        {"params": [p for p in module.parameters() if p.dim() <= 1], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=3e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: (1 - step / steps) ** 0.9)
    schedule = args.schedule
    context = BareContext(
        args.framework_options,
        declaration.mixes(args.cutmix),
        teacher,
        schedule.unsup_weight,
        args.loss_options,
        args.unsupervised_loss.compute,
    )
    loader = torch.utils.data.DataLoader(items, batch_size=8, collate_fn=semi_supervised_collate, drop_last=True)
    times, epoch = [], 0
    with PeakMemory(device) as memory:
        batches, last = iter(loader), time.perf_counter()
        for step in range(steps):
            batch = next(batches, None)
            if batch is None:  # a new epoch: new augmentations, as the Trainer's epoch callback says
                epoch += 1
                items.set_epoch(epoch)
                batches = iter(loader)
                batch = next(batches)
            batch = prepared_batch({k: v.to(device) for k, v in batch.items()}, [0.5] * 3, [0.5] * 3)
            loss = declaration.step(context, module, batch)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if teacher is not None:
                ema_update(teacher, module, min(1 - 1 / (step + 1), args.ema_decay))
            now = time.perf_counter()
            times.append(now - last)
            last = now
    return times, memory.peak, module.state_dict()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS))
    parser.add_argument("--steps", type=int, default=25, help="Steps of each run, warm-up included.")
    parser.add_argument("--warmup", type=int, default=5, help="Steps left out of the timing.")
    parser.add_argument("--rounds", type=int, default=4, help="Trainer/loop pairs, alternated.")
    options = parser.parse_args()
    device = torch.device("cpu")
    scenes = make_fashion_scenes(200, size=64, seed=0)
    # 40 labeled images: whole batches in every epoch of the labels-only run (the Trainer keeps a last partial one).
    data = split_labeled_unlabeled(scenes, num_labeled=40, seed=0)
    print(
        f"device: {describe_device(device)}, torch {torch.__version__}; the embedded step, {options.steps} steps, "
        f"the first {options.warmup} left out, {options.rounds} rounds"
    )
    print(
        "| framework | FPLTrainer s/step | plain loop s/step | time ratio | peak memory MiB (trainer / loop) "
        "| largest weight difference |"
    )
    print("|---|---|---|---|---|---|")
    for framework in options.frameworks:
        step_times, peaks, final_weights, difference = [[], []], [[], []], [None, None], 0.0
        for round_index in range(options.rounds):
            # Which goes first swaps from round to round: the first run of a process pays its one-time costs.
            order = (0, 1) if round_index % 2 == 0 else (1, 0)
            for index in order:
                run = (through_the_trainer, through_a_plain_loop)[index]
                times, peak, final_weights[index] = run(framework, options.steps, data, device)
                step_times[index].append(statistics.median(times[options.warmup :]))
                peaks[index].append(peak / 2**20)
            trainer_weights, loop_weights = final_weights
            difference = max(
                difference,
                max(float((trainer_weights[k].float() - v.float()).abs().max()) for k, v in loop_weights.items()),
            )
        trainer_step, loop_step = (statistics.median(times) for times in step_times)
        trainer_peak, loop_peak = (statistics.median(values) for values in peaks)
        print(
            f"| {framework} | {trainer_step:.3f} | {loop_step:.3f} | {trainer_step / loop_step:.3f}x | "
            f"{trainer_peak:.0f} / {loop_peak:.0f} | {difference:.2e} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
