"""Data-parallel training on CPU: 1, 2 and 4 gloo processes started by torch.distributed.run (as accelerate does)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_MODEL_FLAGS
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]


def launch(tmp_path: Path, processes: int, **settings) -> list[dict[str, torch.Tensor]]:
    """Trains in `processes` processes (tests/ddp_worker.py); the final parameters of each rank."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        str(ROOT / "tests" / "ddp_worker.py"),
        str(tmp_path),
        json.dumps(settings),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT / "tests")
    assert result.returncode == 0, result.stderr[-3000:]
    return [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(processes)]


def seen(tmp_path: Path, processes: int) -> list[list]:
    return [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(processes)]


CASES = [
    (2, "cps", False),
    (2, "mean_teacher", False),
    (2, "unimatch", False),
    (2, "unimatch_v2", False),
    (4, "cps", False),
    (2, "cps", True),
    (4, "cps", True),
]


@pytest.mark.parametrize("processes, framework, stream", CASES)
def test_processes_end_with_identical_weights_after_disjoint_samples(tmp_path, processes, framework, stream):
    # Streamed: 2 unlabeled images (no mixing partner) per labeled one. Every process reads 3 batches (2 steps and
    # the one accelerate fetches ahead), within one pass over the pool of 58 images in 4 shards.
    options = dict(per_device_unlabeled_batch_size=4, cutmix=False) if stream else {}
    weights = launch(tmp_path, processes, framework=framework, stream=stream, max_steps=2, **options)
    assert any(name.startswith("model.") for name in weights[0])
    for other in weights[1:]:
        assert other.keys() == weights[0].keys()
        for name, value in weights[0].items():
            torch.testing.assert_close(other[name], value, rtol=0, atol=0, msg=name)
    parts = [set(part) for part in seen(tmp_path, processes)]
    # Map-style: the labeled items' indices; streamed: the digests of the unlabeled images read.
    assert all(parts) and sum(len(part) for part in parts) == len(set().union(*parts))


@pytest.mark.parametrize("processes", [2, 4])
def test_processes_reach_the_weights_of_one_process_with_the_same_global_batch(tmp_path, processes):
    # A model without BatchNorm (whose statistics are per process) and crops without padding (so that every
    # process's loss averages over as many pixels as every other's): the runs then differ by the order of float
    # sums alone. Measured after 3 steps: at most 8e-8 apart (parameters up to 1.7), while a global batch of 2
    # instead of 4 moves them by 0.16; the tolerance sits between, at 1e-6 + 1e-5 x |value|.
    settings = dict(model="dpt", framework="cps", max_steps=3, scale_range=[1.0, 1.0])
    reference = launch(tmp_path / "one", 1, per_device_train_batch_size=4, **settings)[0]
    weights = launch(tmp_path / "many", processes, per_device_train_batch_size=4 // processes, **settings)[0]
    assert sorted(sum(seen(tmp_path / "many", processes), [])) == sorted(seen(tmp_path / "one", 1)[0])
    for name, value in reference.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-5, atol=1e-6, msg=name)


RUN_FPL = [
    "examples/run_fpl.py",
    *TINY_MODEL_FLAGS,
    "--num_train_scenes",
    "16",
    "--num_validation_scenes",
    "4",
    "--scene_size",
    "32",
    "--num_labeled",
    "4",
    "--crop_size",
    "32",
    "--per_device_train_batch_size",
    "2",
    "--per_device_eval_batch_size",
    "2",
    "--max_steps",
    "2",
    "--burn_in_steps",
    "0",
    "--eval_strategy",
    "no",
    "--save_strategy",
    "no",
    "--ddp_backend",
    "gloo",
    "--disable_tqdm",
    "true",
]


def accelerate_launch(config: str, *flags: str) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        f"examples/accelerate/{config}",
        "--mixed_precision",
        "no",
        *flags,
    ]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def finished(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


def test_the_shipped_accelerate_configs_launch_one_node_and_two_nodes(tmp_path):
    # The GPU configs, run on CPU processes (gloo): one node of 2 processes, and 2 "nodes" of 1 process each here.
    one_node = finished(
        accelerate_launch("one_node.yaml", "--num_processes", "2", *RUN_FPL, "--output_dir", str(tmp_path / "one"))
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    nodes = [
        accelerate_launch(
            "two_nodes.yaml",
            "--machine_rank",
            str(rank),
            "--num_processes",
            "2",
            "--main_process_ip",
            "127.0.0.1",
            "--main_process_port",
            port,
            *RUN_FPL,
            "--output_dir",
            str(tmp_path / "two"),
        )
        for rank in (0, 1)
    ]
    outputs = [finished(node) for node in nodes]
    assert one_node.count("final mIoU") == 1 and sum(output.count("final mIoU") for output in outputs) == 1
    summaries = [json.loads((tmp_path / name / "run_summary.json").read_text()) for name in ("one", "two")]
    assert [summary["processes"] for summary in summaries] == [2, 2]
    # The same global batch of the same items: the same model, however the processes are spread.
    assert summaries[0]["final_mean_iou"] == pytest.approx(summaries[1]["final_mean_iou"], abs=1e-6)
    assert (tmp_path / "one" / "model.safetensors").is_file() and (tmp_path / "one" / "README.md").is_file()
