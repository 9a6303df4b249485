"""benchmarks/bench_gpu_step.py runs the GPU path at a tiny size on the CPU: every recipe, eager and compiled;
bench_overhead.py's trainer and plain loop end at the same weights."""

import subprocess
import sys

import pytest
from conftest import ROOT


def benchmark_rows(script: str, *flags: str) -> list[list[str]]:
    """The rows of the table a script in benchmarks/ prints (its header left out), once it has run to the end."""
    result = subprocess.run(
        [sys.executable, script, *flags], capture_output=True, text=True, cwd=ROOT / "benchmarks", timeout=1200
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [line.strip("| ").split(" | ") for line in result.stdout.splitlines() if line.startswith("| ")][1:]


def test_the_gpu_step_benchmark_runs_every_recipe_eager_and_compiled_at_a_tiny_size():
    rows = benchmark_rows(
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
    )
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


def test_the_overhead_benchmark_trains_the_same_weights_through_the_trainer_and_a_plain_loop():
    # Which path runs first swaps between the two rounds; both must end where the other does, every round.
    rows = benchmark_rows(
        "bench_overhead.py", "--frameworks", "unimatch_v2", "--steps", "3", "--warmup", "1", "--rounds", "2"
    )
    assert [row[0] for row in rows] == ["unimatch_v2"]
    (row,) = rows
    trainer_step, loop_step, ratio = float(row[1]), float(row[2]), float(row[3].rstrip("x"))
    assert trainer_step > 0 and loop_step > 0 and ratio == pytest.approx(trainer_step / loop_step, rel=0.02)
    assert float(row[5]) == 0.0, "the trainer and the plain loop ended at different weights"


def test_the_metric_benchmark_prints_no_error_line_on_a_machine_without_a_gpu():
    result = subprocess.run(
        [sys.executable, "bench_metric.py", "--maps", "2", "--size", "64"],
        capture_output=True,
        text=True,
        cwd=ROOT / "benchmarks",
        timeout=600,
    )
    assert result.returncode == 0 and "equal results: yes" in result.stdout
    printed = (result.stdout + result.stderr).splitlines()
    assert not [line for line in printed if "ERROR" in line or "USDT" in line], printed
