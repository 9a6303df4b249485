"""What the tracker pictures cost: the embedded default run (run_fpl.py, UniMatch V2-style + FPL) for a short
schedule with `--report_to tensorboard`, timing each evaluation and, inside it, the drawing of the panels.

    python benchmarks/bench_pictures.py                      # 40 steps, an evaluation every 20
    python benchmarks/bench_pictures.py --picture_images 8

Printed: seconds a training step (median of Trainer.training_step: the forwards and the backward), seconds an
evaluation without its pictures, seconds the pictures add to it, and what they add to the default 600-step run
(6 evaluations) in per cent of its training and evaluation time.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fpl_hf.trainer import FPLTrainer
from fpl_hf.trainer.pictures import TrackerPictures

ROOT = Path(__file__).resolve().parents[1]


def load_run_fpl():
    spec = importlib.util.spec_from_file_location("run_fpl", ROOT / "examples" / "run_fpl.py")
    module = sys.modules["run_fpl"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(owner: type, name: str, times: list[float]) -> None:
    original = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            times.append(time.perf_counter() - start)

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--picture_images", type=int, default=4)
    options = parser.parse_args()
    run_fpl = load_run_fpl()
    evaluations, pictures, steps = [], [], []
    timed(FPLTrainer, "evaluate", evaluations)
    timed(FPLTrainer, "training_step", steps)
    timed(TrackerPictures, "panels", pictures)
    with tempfile.TemporaryDirectory() as directory:
        flags = ["--config", str(ROOT / "examples" / "configs" / "embedded.yaml"), "--output_dir", directory]
        flags += ["--max_steps", str(options.steps), "--eval_steps", str(options.steps // 2)]
        flags += ["--burn_in_steps", str(options.steps // 4), "--unsup_rampup_steps", "0", "--save_strategy", "no"]
        flags += ["--report_to", "tensorboard", "--picture_images", str(options.picture_images), "--disable_tqdm", "1"]
        run_fpl.main(*run_fpl.parse_arguments(flags))
    if not pictures:
        raise SystemExit("No pictures were drawn: is tensorboard installed?")
    evaluation = statistics.median(e - p for e, p in zip(evaluations, pictures))
    picture = statistics.median(pictures)
    step = statistics.median(steps)
    default_run = 600 * step + 6 * evaluation
    print(f"training step {step:.3f} s, evaluation {evaluation:.2f} s without pictures")
    count = options.picture_images
    print(f"pictures of {count} validation + {count} unlabeled images: {picture:.3f} s an evaluation")
    print(f"the default 600-step run (6 evaluations): +{100 * 6 * picture / default_run:.2f}% of {default_run:.0f} s")


if __name__ == "__main__":
    main()
