"""Forward+backward time and peak memory of `fuzzy_positive_loss` against the pseudo-label cross-entropy.

    python benchmarks/bench_loss.py            # CPU, or the GPU when there is one
    python benchmarks/bench_loss.py --device cpu --repeats 30

The baseline is `F.cross_entropy(student, teacher.argmax(1))` on the same logits, in the same run.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
from _measure import median_seconds, peak_bytes

from fpl_hf.launchers import describe_device
from fpl_hf.losses import fuzzy_positive_loss

SHAPES = [(8, 21, 128, 128), (2, 19, 256, 512), (4, 21, 256, 256)]


def cross_entropy(student: torch.Tensor, teacher: torch.Tensor) -> None:
    F.cross_entropy(student, teacher.argmax(1)).backward()
    student.grad = None


def fpl(student: torch.Tensor, teacher: torch.Tensor, semantics: str) -> None:
    fuzzy_positive_loss(student, teacher, 0.9, semantics=semantics).loss.backward()
    student.grad = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"device: {describe_device(device)}, torch {torch.__version__}")
    print(f"{'shape (B,C,H,W)':>20} {'loss':>14} {'ms':>8} {'peak MiB':>9} {'time x CE':>10} {'mem x CE':>9}")
    for shape in SHAPES:
        generator = torch.Generator(device=device).manual_seed(0)
        student = torch.randn(shape, device=device, generator=generator).requires_grad_(True)
        teacher = torch.randn(shape, device=device, generator=generator) * 3

        variants = {"CE (baseline)": partial(cross_entropy, student, teacher)}
        for semantics in ("code", "paper"):
            variants[f"FPL {semantics}"] = partial(fpl, student, teacher, semantics)
        results = {
            name: (median_seconds(fn, device, args.repeats), peak_bytes(fn, device)) for name, fn in variants.items()
        }
        base_time, base_memory = results["CE (baseline)"]
        for name, (seconds, memory) in results.items():
            print(
                f"{str(shape):>20} {name:>14} {seconds * 1e3:8.2f} {memory / 2**20:9.1f} "
                f"{seconds / base_time:9.2f}x {memory / base_memory:8.2f}x"
            )


if __name__ == "__main__":
    main()
