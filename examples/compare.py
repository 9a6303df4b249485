"""Does semi-supervision pay on my data? Labels-only training, semi-supervised settings and, optionally, the
all-labels oracle, at the same budget, over seeds and draws of the labeled split.

    python examples/compare.py                       # what run_fpl.py trains, with FPL and CE, against labels alone
    python examples/compare.py --settings cps:fpl cps:ce mean_teacher:fpl --seeds 0 1 --draws 0 1 2 --jobs 2
    python examples/compare.py --oracle --dataset folders --num_labels 8 --images_dir train/images \
        --masks_dir train/masks --num_labeled 16 --validation_images_dir val/images --validation_masks_dir val/masks
    python examples/compare.py --settings unimatch_v2:fpl --sweep threshold=0.85,0.9,0.95
    python examples/compare.py --gpus_per_run 2 ...          # a machine of 8 GPUs: 4 runs at once, 2 GPUs each
    python examples/compare.py --launcher slurm --slurm_partition gpu --slurm_time 600 --slurm_option account=lab ...

Every other flag is run_fpl.py's and applies to every run: the data, the model, the schedule (the same budget for
every row). A draw is a `--data_seed`: which images are labeled (on the embedded data, the scenes too); data sets
whose labeled part is fixed (split lists, an unlabeled folder) have one. Writes results.json (each run as it ends, so
that the same command resumes a half-finished comparison, and tries failed runs again), table.md (as runs end) and
curves.png in --output_dir; each run's folder keeps its log.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import run_fpl

from fpl_hf.comparison import Comparison, check_comparison_data, labels_only, oracle, run_name, setting, swept
from fpl_hf.launchers import LocalLauncher, SlurmLauncher


class OneLineErrors(argparse.ArgumentParser):
    """A mistake in compare.py's own flags raises, so that `command_line` says it in one line, as any other."""

    def error(self, message: str):
        raise ValueError(f"{message} (see --help)")


def argument_parser() -> argparse.ArgumentParser:
    """compare.py's own flags; every other flag is run_fpl.py's (`parse_known_args` leaves them)."""
    parser = OneLineErrors(description=__doc__.split("\n\n")[0], usage="%(prog)s [options] [run_fpl.py flags]")
    parser.add_argument(
        "--settings",
        nargs="+",
        metavar="FRAMEWORK:LOSS",
        help="Semi-supervised rows (default: the framework run_fpl.py's flags give, with FPL and CE).",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="Seeds of each row.")
    parser.add_argument(
        "--draws", type=int, nargs="+", default=[0, 1, 2], help="Data seeds: draws of the labeled split."
    )
    parser.add_argument("--oracle", action="store_true", help="Add the all-labels row (every training image labeled).")
    parser.add_argument("--sweep", metavar="OPTION=V1,V2", help="Each semi-supervised row once per value of a flag.")
    parser.add_argument(
        "--jobs", type=int, default=1, help="Runs at once on a machine without GPUs; the cores are shared among them."
    )
    parser.add_argument(
        "--gpus_per_run",
        type=int,
        default=1,
        help="GPUs of each run (accelerate launch over them when more than one); on a machine with GPUs, as many runs "
        "go at once as they allow, each with its own (CUDA_VISIBLE_DEVICES).",
    )
    parser.add_argument(
        "--launcher", choices=("local", "slurm"), default="local", help="Train here, or one SLURM job a run."
    )
    parser.add_argument("--slurm_partition", help="SLURM: the partition.")
    parser.add_argument("--slurm_time", type=int, default=240, help="SLURM: a job's time limit in minutes.")
    parser.add_argument("--slurm_cpus_per_run", type=int, default=8, help="SLURM: CPU cores of a job.")
    parser.add_argument(
        "--slurm_option",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="SLURM: further sbatch options, e.g. account=my-lab qos=high.",
    )
    parser.add_argument(
        "--progress_seconds", type=float, default=60, help="How often the runs in progress are reported."
    )
    parser.add_argument(
        "--start_from",
        metavar="DIR",
        help="An earlier comparison's output_dir: every run starts from its labels-only model of the same draw and "
        "seed (labels alone here train that model on, at the same total budget).",
    )
    parser.add_argument("--output_dir", default="outputs/compare")
    return parser


def main(argv: list[str]) -> Comparison:
    """Runs the comparison; a mistake in the flags, files or data raises before any run starts."""
    parser = argument_parser()
    options, run_flags = parser.parse_known_args(argv)

    with tempfile.TemporaryDirectory() as scratch:  # the run flags are checked before anything runs
        _, source, args, _ = run_fpl.parse_arguments([*run_flags, "--output_dir", scratch])
    rows = [labels_only()] + ([oracle()] if options.oracle else [])
    for text in options.settings or [f"{args.framework}:fpl", f"{args.framework}:ce"]:
        framework, _, loss = text.partition(":")
        if not loss:
            raise ValueError(f"--settings takes FRAMEWORK:LOSS pairs, got {text!r}.")
        rows.append(setting(framework, loss))
    if options.sweep:
        name, _, values = options.sweep.partition("=")
        rows = swept(rows, name, values.split(","))
    if options.oracle and (source.unlabeled_dir or source.unlabeled_dataset or source.labeled_list):
        raise ValueError(
            "--oracle trains on every training image's mask, and the unlabeled images of this data have none."
        )
    with tempfile.TemporaryDirectory() as scratch:  # and each row's, so that a typo fails now, not hours later
        for row in rows:
            run_fpl.parse_arguments([*run_flags, *row.flags, "--output_dir", scratch])
    drawn = source.drawn_labeled or source.labeled_fraction
    if not drawn:
        print("The labeled part of this data is fixed: one draw.")
    if options.launcher == "slurm":
        extra = dict(option.split("=", 1) for option in options.slurm_option if "=" in option)
        if len(extra) != len(options.slurm_option):
            raise ValueError(f"--slurm_option takes KEY=VALUE pairs, got {options.slurm_option}.")
        launcher = SlurmLauncher(
            partition=options.slurm_partition,
            time_minutes=options.slurm_time,
            gpus_per_run=options.gpus_per_run,
            cpus_per_run=options.slurm_cpus_per_run,
            options=extra,
        )
    else:
        launcher = LocalLauncher(jobs=options.jobs, gpus_per_run=options.gpus_per_run)
    comparison = Comparison(
        rows,
        Path(options.output_dir),
        seeds=options.seeds,
        draws=options.draws if drawn else [None],
        base_flags=run_flags,
        launcher=launcher,
        progress_seconds=options.progress_seconds,
        start_from=options.start_from and Path(options.start_from),
    )
    if comparison.start_from:  # a missing start fails now, not hours later
        for _, draw, seed in comparison.planned():
            comparison.start_model(draw, seed)
    # The data are checked once here, and every run skips its own check: a bad mask fails now, not in every run.
    if not args.skip_data_check:
        draw = args.data_seed if args.data_seed is not None else options.draws[0] if drawn else args.seed
        note = check_comparison_data(source, draw, semi_supervised=any(row.semi_supervised for row in rows))
        if note:
            print(f"Note: {note}")
        comparison.base_flags = [*run_flags, "--skip_data_check", "true"]
    try:
        comparison.run()
    except KeyboardInterrupt:
        print(f"\nLeft; the same command resumes (finished runs are kept in {comparison.results_path}).")
        raise SystemExit(130) from None
    comparison.write()
    print(comparison.table())
    return comparison


def command_line(argv: list[str]) -> int:
    """`main` for a person at a terminal, as run_fpl.py's: a mistake in the flags, files or data is one line and exit
    status 2 (`--debug` or FPL_DEBUG=1: the traceback); a comparison in which a run failed names each failure and
    exits 1 (the same command tries them again)."""
    debug = "--debug" in argv or os.environ.get("FPL_DEBUG", "") not in ("", "0")
    try:
        comparison = main([word for word in argv if word != "--debug"])
    except (ValueError, OSError, ImportError) as error:
        if debug:
            raise
        print(f"compare.py: error: {error}\n(--debug shows where it was raised)", file=sys.stderr)
        return 2
    failures = comparison.failed()
    for failure in failures:
        name = f"{failure['setting']}, {run_name(failure['draw'], failure['seed'])}"
        print(f"compare.py: run failed: {name}: {failure['error']} (log: {failure['log']})", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(command_line(sys.argv[1:]))
