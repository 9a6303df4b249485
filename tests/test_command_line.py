"""examples/run_fpl.py as a person meets it at a terminal: mistakes end in one message and exit status 2, runs are
quiet."""

import os
import subprocess
import sys

import pytest
from conftest import ROOT, TINY_MODEL_FLAGS

RUN_FPL = str(ROOT / "examples" / "run_fpl.py")


def run(*flags: str, launcher: tuple[str, ...] = (sys.executable,), **environment: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **environment}
    return subprocess.run([*launcher, RUN_FPL, *flags], capture_output=True, text=True, env=env, timeout=600)


def assert_one_message(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("run_fpl.py: error:")]
    assert len(errors) == 1 and all(word in errors[0] for word in words), result.stderr


def test_a_missing_folder_is_one_message_before_anything_is_built(tmp_path):
    result = run("--dataset", "folders", "--num_labels", "2", "--images_dir", "/nonexistent", "--masks_dir", "/x")
    assert_one_message(result, "--images_dir", "/nonexistent", "no such folder")
    assert not (tmp_path / "outputs").exists()


def test_a_burn_in_covering_the_run_is_refused_when_the_flags_are_read(tmp_path):
    result = run("--max_steps", "2", "--output_dir", str(tmp_path / "run"))
    assert_one_message(result, "`burn_in_steps` (200) covers all 2 steps", "Lower `burn_in_steps`")
    assert not (tmp_path / "run").exists()


def test_a_missing_checkpoint_to_resume_from_is_one_message(tmp_path):
    result = run("--resume_from_checkpoint", str(tmp_path / "checkpoint-9"), "--output_dir", str(tmp_path / "run"))
    assert_one_message(result, "checkpoint-9: no such folder")


def test_debug_shows_the_traceback():
    result = run("--max_steps", "2", "--debug")
    assert result.returncode != 0 and "Traceback" in result.stderr and "check_burn_in" in result.stderr
    assert run("--max_steps", "2", FPL_DEBUG="1").stderr.count("Traceback") == 1


def accelerate_launch_as_documented(tmp_path, *flags: str) -> subprocess.CompletedProcess:
    """`accelerate launch --quiet examples/run_fpl.py ...`, as the pages teach, after scripts/setup.sh has written
    accelerate's default config (here into a fresh HF_HOME of the test's own)."""
    home = str(tmp_path / "hf_home")
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "write_accelerate_config.py")],
        check=True,
        capture_output=True,
        env={**os.environ, "HF_HOME": home},
    )
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    return run(*flags, launcher=(accelerate, "launch", "--quiet"), HF_HOME=home)


def test_through_accelerate_launch_a_mistake_is_our_message_once_and_nothing_else(tmp_path):
    direct = run("--max_steps", "2")
    launched = accelerate_launch_as_documented(tmp_path, "--max_steps", "2")
    assert launched.returncode != 0 and "burn_in_steps" in direct.stderr
    assert (launched.stdout + launched.stderr).strip() == direct.stderr.strip()


def test_through_accelerate_launch_a_misspelt_flag_is_a_short_usage_and_the_flag_meant(tmp_path):
    result = accelerate_launch_as_documented(tmp_path, "--learnin_rate", "0.1")
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert result.returncode != 0 and len(lines) <= 15, lines
    assert "--learnin_rate: did you mean --learning_rate?" in lines[-1], lines


def test_a_default_cpu_run_prints_no_warning_or_error_line(tmp_path):
    flags = [*TINY_MODEL_FLAGS, "--max_steps", "3", "--burn_in_steps", "1", "--unsup_rampup_steps", "1"]
    flags += ["--num_train_scenes", "24", "--num_validation_scenes", "4", "--eval_steps", "3", "--save_steps", "3"]
    result = run(*flags, "--output_dir", str(tmp_path / "run"), "--disable_tqdm", "true")
    assert result.returncode == 0, result.stderr
    noisy = [line for line in result.stderr.splitlines() if any(w in line.lower() for w in ("warn", "error"))]
    assert not noisy, noisy


@pytest.mark.parametrize("flag", ["--preset", "--framework"])
def test_an_unknown_choice_names_the_choices(flag):
    result = run(flag, "radiology")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "radiology" in result.stderr


def test_a_misspelt_flag_gets_a_short_usage_and_the_flag_meant():
    result = run("--learnin_rate", "0.1", "--per_device_batch_size", "4", "--zzz", "1")
    assert result.returncode == 2 and len(result.stderr.splitlines()) <= 15, result.stderr
    error = result.stderr.splitlines()[-1]
    assert error.startswith("run_fpl.py: error: unrecognized arguments: --learnin_rate 0.1"), result.stderr
    assert "--learnin_rate: did you mean --learning_rate?" in error
    assert "did you mean --per_device_eval_batch_size or --per_device_train_batch_size?" in error
    assert "--zzz:" not in error  # nothing near: no guess
