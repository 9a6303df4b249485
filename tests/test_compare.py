"""examples/compare.py on a tiny folder data set: every run of the plan, the table, the JSON, the picture, resume."""

import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from PIL import Image
from test_run_fpl import TINY, write_slices

from fpl_hf.comparison import LABELS_ONLY, Comparison, Setting, describe_progress, labels_only, setting, swept
from fpl_hf.launchers import JOB_ID, RUN_LOG, LocalLauncher, SlurmLauncher, _cpu_model, training_command

_spec = importlib.util.spec_from_file_location("compare", ROOT / "examples" / "compare.py")
compare = sys.modules["compare"] = importlib.util.module_from_spec(_spec)
sys.path.insert(0, str(ROOT / "examples"))  # compare.py imports run_fpl beside it
_spec.loader.exec_module(compare)
sys.path.remove(str(ROOT / "examples"))


def test_compare_runs_each_row_draw_and_seed_and_writes_the_table_json_and_curves(tmp_path, capsys):
    write_slices(tmp_path / "train", 8)
    write_slices(tmp_path / "validation", 3, seed=2)
    output = tmp_path / "comparison"
    flags = [
        "--settings",
        "mean_teacher:fpl",
        "--oracle",
        "--seeds",
        "0",
        "--draws",
        "3",
        "4",
        "--output_dir",
        str(output),
        *TINY,
        "--max_steps",
        "3",
        "--burn_in_steps",
        "1",
        "--eval_strategy",
        "steps",
        "--eval_steps",
        "1",
        "--logging_steps",
        "1",
        "--dataset",
        "folders",
        "--num_labels",
        "8",
        "--images_dir",
        str(tmp_path / "train" / "images"),
        "--masks_dir",
        str(tmp_path / "train" / "masks"),
        "--num_labeled",
        "3",
        "--validation_images_dir",
        str(tmp_path / "validation" / "images"),
        "--validation_masks_dir",
        str(tmp_path / "validation" / "masks"),
    ]
    comparison = compare.main(flags)
    results = json.loads((output / "results.json").read_text())
    assert sorted((r["setting"], r["draw"], r["seed"]) for r in results) == sorted(
        (name, draw, 0) for name in ("labels only", "all labels (oracle)", "mean_teacher + fpl") for draw in (3, 4)
    )
    assert all(len(r["curve"]) == 3 and 0 <= r["final_mean_iou"] <= 1 for r in results)
    # Each run names where it ran (the same seed parts by points across machines): this CPU, its threads, torch.
    machine = re.compile(rf"{re.escape(_cpu_model())} \(\d+ threads?\), torch {re.escape(torch.__version__)}")
    assert all(machine.fullmatch(r["machine"]) for r in results), [r["machine"] for r in results]
    semi = [r for r in results if r["setting"] == "mean_teacher + fpl"]
    assert all(len(r["k1_curve"]) == 2 and "pseudo_label_accuracy" in r for r in semi)  # the drawn-away labels
    for run in semi:  # counted by class over the second half of the semi-supervised phase (step 2)
        by_class = run["pseudo_labels_by_class"]
        assert sum(value["pixels"] for value in by_class.values()) == pytest.approx(1.0)
        assert all(0 <= value["pseudo_label_accuracy"] <= 1 for value in by_class.values())
    assert not any("pseudo_labels_by_class" in r for r in results if r["setting"] != "mean_teacher + fpl")

    table = (output / "table.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in table.split("\n\n")[0].splitlines()[2:]}
    assert set(rows) == {"labels only", "all labels (oracle)", "mean_teacher + fpl"}
    final = {key: [100 * r["final_mean_iou"] for r in results if r["setting"] == key] for key in rows}
    mean = {key: sum(values) / len(values) for key, values in final.items()}
    assert f"{mean['mean_teacher + fpl']:.2f} +- " in rows["mean_teacher + fpl"]
    assert f"| {mean['mean_teacher + fpl'] - mean['labels only']:+.2f} |" in rows["mean_teacher + fpl"]
    assert "3: " in rows["mean_teacher + fpl"] and "4: " in rows["mean_teacher + fpl"]  # the gain of each draw
    with Image.open(output / "curves.png") as picture:
        assert picture.size == (1200, 450)

    # The same command again finds every run done: nothing runs, the table is the same.
    capsys.readouterr()
    compare.main(flags)
    assert "6 runs, 6 done already, 0 to go" in capsys.readouterr().out
    assert (output / "table.md").read_text() == table and comparison.rows()
    # A smaller plan in the same directory counts only its own runs as done.
    draw_4 = flags.index("4")
    compare.main(flags[:draw_4] + flags[draw_4 + 1 :])
    assert "3 runs, 3 done already, 0 to go" in capsys.readouterr().out


def test_the_gain_compares_each_run_with_labels_only_on_its_own_draw(tmp_path):
    comparison = Comparison([labels_only(), setting("cps", "fpl")], tmp_path)
    run = dict(seconds=60.0, curve=[], k1_curve=[])
    comparison.results = [
        dict(setting=LABELS_ONLY, draw=0, seed=0, final_mean_iou=0.30, **run),
        dict(setting=LABELS_ONLY, draw=1, seed=0, final_mean_iou=0.40, **run),
        dict(setting="cps + fpl", draw=0, seed=0, final_mean_iou=0.35, **run),  # draw 1 not run yet
    ]
    _, cps = comparison.rows()
    assert cps["gain"] == pytest.approx(5.0) and cps["gain_per_draw"] == {0: pytest.approx(5.0)}


def test_fpl_is_compared_with_the_ce_it_replaces_on_the_runs_both_have(tmp_path):
    rows = [labels_only(), *swept([setting("cps", "fpl"), setting("cps", "ce")], "threshold", ["0.9"])]
    comparison = Comparison(rows, tmp_path)
    run = dict(seconds=60.0, curve=[], k1_curve=[])
    comparison.results = [
        dict(setting="cps + fpl, threshold 0.9", draw=0, seed=0, final_mean_iou=0.40, **run),
        dict(setting="cps + fpl, threshold 0.9", draw=0, seed=1, final_mean_iou=0.50, **run),
        dict(setting="cps + fpl, threshold 0.9", draw=1, seed=0, final_mean_iou=0.30, **run),  # no CE run to pair
        dict(setting="cps + ce, threshold 0.9", draw=0, seed=0, final_mean_iou=0.37, **run),
        dict(setting="cps + ce, threshold 0.9", draw=0, seed=1, final_mean_iou=0.49, **run),
    ]
    fpl, ce = comparison.rows()
    assert fpl["versus_replaced"] == pytest.approx(2.0) and fpl["paired_runs"] == 2
    assert "versus_replaced" not in ce
    line = next(line for line in comparison.table().splitlines() if line.startswith("| cps + fpl"))
    assert "| +2.00 (2) |" in line


def test_the_table_names_the_machines_when_its_runs_ran_on_more_than_one(tmp_path):
    comparison = Comparison([labels_only(), setting("cps", "fpl")], tmp_path)
    run = dict(seconds=60.0, curve=[], k1_curve=[], final_mean_iou=0.4, seed=0)
    comparison.results = [
        dict(setting=LABELS_ONLY, draw=0, machine="CPU A (1 thread), torch 2", **run),
        dict(setting=LABELS_ONLY, draw=1, machine="CPU A (1 thread), torch 2", **run),
        dict(setting="cps + fpl", draw=0, machine="GPU B, torch 2", **run),
        dict(setting="cps + ce", draw=0, machine="GPU C, torch 2", **run),  # not a row of this comparison
        dict(setting="cps + fpl", draw=1, **run),  # from before runs named their machine
    ]
    assert "Runs of more than one machine: 2 on CPU A (1 thread), torch 2; 1 on GPU B, torch 2\n" in comparison.table()
    comparison.results = comparison.results[:2]
    assert "machine" not in comparison.table()


def test_the_table_shows_the_pseudo_labels_of_each_class_over_the_runs_that_counted_them(tmp_path):
    comparison = Comparison([labels_only(), setting("cps", "fpl"), setting("cps", "ce")], tmp_path)
    run = dict(seconds=60.0, curve=[], k1_curve=[], final_mean_iou=0.4)

    def counted(road, fence):
        return {
            "road": {"pixels": 0.9, "pseudo_label_accuracy": road, "case_outside_set": 1 - road},
            "fence": {"pixels": 0.1, "pseudo_label_accuracy": fence, "case_outside_set": 0.5},
        }

    comparison.results = [
        dict(setting=LABELS_ONLY, draw=0, seed=0, **run),
        dict(setting="cps + fpl", draw=0, seed=0, pseudo_labels_by_class=counted(0.9, 0.2), **run),
        dict(setting="cps + fpl", draw=0, seed=1, pseudo_labels_by_class=counted(0.7, 0.4), **run),
        dict(setting="cps + ce", draw=0, seed=0, **run),  # an older run, without the counts
    ]
    lines = comparison.table().split("\n\n")[-1].splitlines()
    assert lines[0] == "| setting | road | fence |"
    assert lines[2] == "| share of the pixels | 90 | 10 |"
    assert lines[3] == "| cps + fpl | 80 / 20 | 30 / 50 |" and len(lines) == 4  # CE counted nothing: no row


def _tiny_folder_flags(tmp_path):
    write_slices(tmp_path / "train", 8)
    write_slices(tmp_path / "validation", 3, seed=2)
    return [
        *TINY,
        *("--dataset", "folders", "--num_labels", "8", "--num_labeled", "3"),
        *("--images_dir", str(tmp_path / "train" / "images"), "--masks_dir", str(tmp_path / "train" / "masks")),
        *("--validation_images_dir", str(tmp_path / "validation" / "images")),
        *("--validation_masks_dir", str(tmp_path / "validation" / "masks")),
    ]


def _fake_runs(monkeypatch, seconds=0.3, returncode=0):
    """Replaces the process a launcher starts: each call is recorded (command, environment, start, end) and leaves
    the run_summary.json a finished run leaves, whatever its exit status."""
    import subprocess
    import threading
    import time

    import fpl_hf.launchers

    calls, lock = [], threading.Lock()

    def fake_run(command, stdout=None, stderr=None, env=None):
        start = time.perf_counter()
        time.sleep(seconds)
        output = Path(command[command.index("--output_dir") + 1])
        summary = {"final_mean_iou": 0.5, "best_mean_iou": 0.5, "seconds": 1.0, "log_history": []}
        (output / "run_summary.json").write_text(json.dumps(summary))
        with lock:
            calls.append((command, env, start, time.perf_counter()))
        return subprocess.CompletedProcess(command, returncode)

    monkeypatch.setattr(fpl_hf.launchers.subprocess, "run", fake_run)
    return calls


def test_the_time_left_is_at_the_pace_since_the_last_report_not_since_the_start():
    # A fast supervised burn-in (500 steps in 10 minutes) and then slow semi-supervised steps (100 in 5 minutes).
    burn_in = {"step": 500, "max_steps": 2000, "seconds": 600.0}
    now = {"step": 600, "max_steps": 2000, "seconds": 900.0, "eval_mean_iou": 0.4, "eval_step": 500}
    assert describe_progress(burn_in) == "step 500/2000, about 30 min left"  # no earlier report: the mean pace
    assert describe_progress(now, burn_in) == "step 600/2000, mIoU 40.00 (step 500), about 70 min left"
    assert describe_progress(now, now).endswith("about 35 min left")  # no step since the last report: the mean pace


def test_draw_0_is_a_data_seed_like_any_other_and_no_draw_passes_none():
    comparison = Comparison([labels_only()], Path("out"), seeds=[1], draws=[0])
    flags = comparison.flags(labels_only(), 0, 1)
    assert flags[flags.index("--data_seed") + 1] == "0" and flags[flags.index("--seed") + 1] == "1"
    assert "--data_seed" not in comparison.flags(labels_only(), None, 1)


def test_a_run_that_exits_non_zero_is_failed_and_retried_even_with_a_summary_in_its_folder(tmp_path, monkeypatch):
    # A summary written before a failing final save or push, or left by an earlier attempt, is no proof of success.
    _fake_runs(monkeypatch, seconds=0.0, returncode=1)
    comparison = Comparison([labels_only()], tmp_path, seeds=[0], draws=[3])
    (result,) = comparison.run(report=lambda line: None)
    assert result["failed"] and "final_mean_iou" not in result
    calls = _fake_runs(monkeypatch, seconds=0.0)
    lines = []
    (result,) = Comparison([labels_only()], tmp_path, seeds=[0], draws=[3]).run(report=lines.append)
    assert "1 runs, 0 done already, 1 to go" in lines[0] and len(calls) == 1 and not result.get("failed")


def test_on_a_machine_of_four_gpus_two_runs_of_two_gpus_go_at_once_each_on_its_own(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch)
    launcher = LocalLauncher(gpus=4, gpus_per_run=2)
    assert launcher.parallel == 2
    Comparison([labels_only(), setting("cps", "fpl")], tmp_path, seeds=[0, 1, 2], launcher=launcher).run()
    assert len(calls) == 6
    for command, env, start, _ in calls:
        assert env["CUDA_VISIBLE_DEVICES"] in ("0,1", "2,3")
        assert command[1:6] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
        # The runs training when this one started (itself included): at most two, never two on the same GPUs.
        devices = [other[1]["CUDA_VISIBLE_DEVICES"] for other in calls if other[2] <= start < other[3]]
        assert len(devices) <= 2 and len(set(devices)) == len(devices), devices
    one_gpu = LocalLauncher(gpus=3, gpus_per_run=1)
    assert one_gpu.parallel == 3 and training_command(Path("run_fpl.py"), ["--x"], 1)[1:] == ["run_fpl.py", "--x"]
    with pytest.raises(ValueError, match="more GPUs than this machine has"):
        LocalLauncher(gpus=2, gpus_per_run=4)


def test_without_gpus_the_runs_share_the_cores(tmp_path, monkeypatch):
    calls = _fake_runs(monkeypatch, seconds=0.05)
    launcher = LocalLauncher(jobs=2, gpus=0)
    Comparison([labels_only()], tmp_path, seeds=[0, 1], launcher=launcher).run()
    assert launcher.parallel == 2 and len(calls) == 2
    for command, env, _, _ in calls:
        assert "CUDA_VISIBLE_DEVICES" not in env or env["CUDA_VISIBLE_DEVICES"] == os.environ.get(
            "CUDA_VISIBLE_DEVICES"
        )
        assert env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
        assert command[0] == sys.executable and command[1].endswith("run_fpl.py")


def test_start_from_starts_every_run_from_the_earlier_labels_only_model_of_its_draw_and_seed(
    tmp_path, monkeypatch, capsys
):
    earlier = Comparison([labels_only()], tmp_path / "earlier", seeds=[0, 1], draws=[3, 4])
    for _, draw, seed in earlier.planned():
        model = earlier.directory(labels_only(), draw, seed)
        model.mkdir(parents=True)
        (model / "config.json").write_text("{}")
    calls = _fake_runs(monkeypatch, seconds=0.0)
    rows = [labels_only(), setting("unimatch_v2", "fpl")]
    Comparison(rows, tmp_path / "later", seeds=[0, 1], draws=[3, 4], start_from=tmp_path / "earlier").run()
    assert len(calls) == 8
    for command, *_ in calls:
        draw, seed = command[command.index("--data_seed") + 1], command[command.index("--seed") + 1]
        start = command[command.index("--model_name_or_path") + 1]
        assert start == str(tmp_path / "earlier" / "runs" / f"labels_only-draw{draw}-seed{seed}")
    # A draw the earlier comparison did not run is named before anything trains.
    assert compare.command_line(["--start_from", str(tmp_path / "earlier"), "--draws", "5", "--seeds", "0", *TINY]) == 2
    error = capsys.readouterr().err
    assert error.startswith("compare.py: error: --start_from") and "no labels-only model of draw 5, seed 0" in error
    assert len(calls) == 8


def test_a_failing_run_is_recorded_the_others_go_on_and_the_same_command_retries_it(tmp_path):
    broken = Setting("cps + fpl, broken", ("--framework", "cps", "--unsup_loss", "fpl", "--threshold", "2"))
    lines = []
    comparison = Comparison(
        [labels_only(), broken],
        tmp_path / "comparison",
        base_flags=[
            *_tiny_folder_flags(tmp_path),
            "--max_steps",
            "12",
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "4",
        ],
        progress_seconds=0.5,
    )
    comparison.run(report=lines.append)
    by_setting = {r["setting"]: r for r in comparison.results}
    assert 0 <= by_setting[LABELS_ONLY]["final_mean_iou"] <= 1
    failure = by_setting["cps + fpl, broken"]
    assert failure["failed"] and "threshold" in failure["error"] and Path(failure["log"]).is_file()
    assert "`threshold` must be in (0, 1)" in Path(failure["log"]).read_text()
    table = (tmp_path / "comparison" / "table.md").read_text()
    assert "FAILED: cps + fpl, broken, draw 0, seed 0" in table and "| labels only |" in table
    # Every run keeps its log, success or not.
    assert all((comparison.directory(row, 0, 0) / RUN_LOG).is_file() for row in comparison.settings)
    # Progress lines came while the labels-only run trained, before it ended.
    ended = next(index for index, line in enumerate(lines) if line.startswith("[") and "labels only" in line)
    assert any("labels only" in line and "step " in line for line in lines[:ended]), lines
    retried = []
    comparison.run(report=retried.append)
    assert retried[0] == "2 runs, 1 done already, 1 to go, 1 at a time"
    assert sum(r["setting"] == "cps + fpl, broken" for r in comparison.results) == 1  # replaced, not added


def test_the_slurm_launcher_runs_a_tiny_comparison_through_submitits_local_executor(tmp_path):
    pytest.importorskip("submitit")
    launcher = SlurmLauncher(cluster="local", gpus_per_run=0, cpus_per_run=1, time_minutes=10)
    flags = [*_tiny_folder_flags(tmp_path), "--max_steps", "2"]
    comparison = Comparison([labels_only()], tmp_path / "comparison", seeds=[0, 1], base_flags=flags, launcher=launcher)
    comparison.progress_seconds = 1
    comparison.run(report=print)
    assert sorted(r["seed"] for r in comparison.results if not r.get("failed")) == [0, 1], comparison.results
    for seed in (0, 1):
        directory = comparison.directory(labels_only(), 0, seed)
        assert (directory / JOB_ID).is_file() and list((directory / "slurm").glob("*_log.out"))
    lines = []
    comparison.run(report=lines.append)
    assert lines[0] == "2 runs, 2 done already, 0 to go, as SLURM jobs"


def test_a_fake_sbatch_receives_the_resources_and_a_queued_job_is_not_submitted_twice(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path}/sbatch_calls\ncat "$1" >> {tmp_path}/sbatch_scripts\n'
        'echo "Submitted batch job 4242"\n'
    )
    (bin_dir / "sacct").write_text('#!/bin/sh\nprintf "JobID|State|NodeList\\n4242|PENDING|None\\n"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it to know it is on a cluster
    for tool in ("sbatch", "sacct", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    launcher = SlurmLauncher(
        partition="gpu", time_minutes=90, gpus_per_run=2, cpus_per_run=6, options={"account": "my-lab"}
    )
    comparison = Comparison(
        [labels_only()], tmp_path / "comparison", base_flags=["--max_steps", "5"], launcher=launcher
    )
    jobs = comparison.submit(comparison.to_go())
    script = (tmp_path / "sbatch_scripts").read_text()
    for line in ("--partition=gpu", "--time=90", "--gpus-per-node=2", "--cpus-per-task=6", "--account=my-lab"):
        assert f"#SBATCH {line}" in script, script
    directory = comparison.directory(labels_only(), 0, 0)
    assert (directory / JOB_ID).read_text() == "4242" and str(directory / "slurm") in script
    pickled = next((directory / "slurm").glob("*_submitted.pkl"))
    function = pickle.loads(pickled.read_bytes()).function  # the submitted command line
    assert function.command[1:6] == ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    assert function.command[function.command.index("--output_dir") + 1] == str(directory)
    assert "--max_steps" in function.command and len(jobs) == 1
    # Left and resumed: the job is still queued, so it is waited for, not submitted again.
    lines = []
    again = comparison.submit(comparison.to_go(), report=lines.append)
    assert (tmp_path / "sbatch_calls").read_text().count("\n") == 1 and len(again) == 1
    assert "job 4242 still queued or running" in lines[-1]


def compare_at_a_terminal(*flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(ROOT / "examples" / "compare.py"), *flags]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize(
    "mistake, words",
    [
        (["--images_dir", "/nonexistent"], ["--images_dir", "/nonexistent", "no such folder"]),
        (["--settings", "nonsense:fpl"], ["`framework` must be one of", "'nonsense'"]),
        (["--settings", "cps"], ["--settings takes FRAMEWORK:LOSS pairs"]),
        (["--seeds", "one"], ["--seeds", "invalid int value"]),
        # The masks hold 8 classes: the data check (once, not in each run) lists every bad sample under the line.
        (["--num_labels", "4"], ["of the 11 samples checked", "labeled sample 0", "outside [0, 4)"]),
    ],
)
def test_a_mistake_is_one_line_and_exit_2_before_any_run(tmp_path, mistake, words):
    output = tmp_path / "comparison"
    result = compare_at_a_terminal(*_tiny_folder_flags(tmp_path), "--output_dir", str(output), *mistake)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("compare.py: error: "), result.stderr
    assert all(word in result.stderr for word in words) and "Traceback" not in result.stderr, result.stderr
    assert not (output / "runs").exists()  # found before anything ran


def test_an_output_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    result = compare_at_a_terminal(*_tiny_folder_flags(tmp_path), "--output_dir", str(tmp_path / "file" / "out"))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("compare.py: error: ") and str(tmp_path / "file") in result.stderr


def test_a_comparison_with_a_failed_run_finishes_the_others_names_the_failure_and_exits_1(tmp_path):
    output = tmp_path / "comparison"
    flags = [*_tiny_folder_flags(tmp_path), "--output_dir", str(output), "--seeds", "0", "--draws", "3"]
    result = compare_at_a_terminal(*flags, "--settings", "cps:fpl", "--threshold", "0.9", "--cps_breaks", "x")
    assert result.returncode == 2  # an unknown flag of a run is a mistake found before any run
    # A run that fails as it trains: a framework whose options only fail once the run has started.
    result = compare_at_a_terminal(*flags, "--settings", "mean_teacher:fpl", "--per_device_train_batch_size", "16")
    assert result.returncode == 1, result.stderr
    failed = [line for line in result.stderr.splitlines() if line.startswith("compare.py: run failed: ")]
    assert len(failed) == 2 and "labels only, draw 3, seed 0" in failed[0], result.stderr
    assert "fewer than one batch" in failed[0]


def test_a_source_without_draws_names_its_runs_by_seed(tmp_path):
    comparison = Comparison([labels_only(), setting("cps", "fpl")], tmp_path, seeds=[0, 1], draws=[None])
    run = dict(seconds=60.0, curve=[], k1_curve=[])
    comparison.results = [
        dict(setting=LABELS_ONLY, draw=None, seed=0, final_mean_iou=0.30, **run),
        dict(setting="cps + fpl", draw=None, seed=0, final_mean_iou=0.35, **run),
        dict(setting="cps + fpl", draw=None, seed=1, failed=True, log="x.log", error="boom"),
    ]
    table = comparison.table()
    assert "None" not in table and "runs (seed: mIoU)" in table and "| 0: 35.0 |" in table
    assert "cps + fpl, seed 1: boom" in table


def test_the_data_are_checked_once_for_the_comparison_and_no_run_checks_them_again(tmp_path, monkeypatch):
    import fpl_hf.comparison

    checks = []
    real_check = fpl_hf.comparison.check_run_data
    monkeypatch.setattr(fpl_hf.comparison, "check_run_data", lambda *a, **k: checks.append(a) or real_check(*a, **k))
    calls = _fake_runs(monkeypatch, seconds=0.0)
    flags = [*_tiny_folder_flags(tmp_path), "--output_dir", str(tmp_path / "c"), "--seeds", "0", "1", "--draws", "3"]
    compare.main([*flags, "--settings", "cps:fpl"])
    assert len(checks) == 1 and len(calls) == 4
    for command, *_ in calls:
        assert command[command.index("--skip_data_check") + 1] == "true"
    compare.main([*flags, "--settings", "cps:ce", "--skip_data_check", "true"])  # the user's own skip: no check
    assert len(checks) == 1 and len(calls) == 6
