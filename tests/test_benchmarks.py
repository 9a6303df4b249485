"""benchmarks/bench_gpu_step.py runs the GPU path at a tiny size on the CPU: every recipe, eager and compiled."""

import subprocess
import sys

import pytest
from conftest import ROOT


def test_the_gpu_step_benchmark_runs_every_recipe_eager_and_compiled_at_a_tiny_size():
    result = subprocess.run(
        [
            sys.executable,
            "bench_gpu_step.py",
            "--tiny",
            "--device",
            "cpu",
            "--compile_backend",
            "aot_eager",
            "--steps",
            "1",
            "--warmup",
            "1",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT / "benchmarks",
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [
        line.strip("| ").split(" | ")
        for line in result.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| recipe")
    ]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_gpu_step import RECIPES

    assert sorted((row[0], row[5]) for row in rows) == sorted(
        (recipe, mode) for recipe in RECIPES for mode in ("eager", "compiled")
    )
    for row in rows:
        labeled, unlabeled = (int(count) for count in row[4].split(" + "))
        seconds = float(row[6])
        assert seconds > 0 and float(row[7]) == pytest.approx(labeled / seconds, rel=0.02, abs=0.01)
        assert float(row[8]) == pytest.approx(unlabeled / seconds, rel=0.02, abs=0.01)
