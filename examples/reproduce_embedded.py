"""FPL against its baselines on the embedded data: every framework with CE and FPL, supervised and the oracle.

    python examples/reproduce_embedded.py                       # the README table (about 100 min on 2 CPU cores)
    python examples/reproduce_embedded.py --seeds 0 --max_steps 40 --burn_in_steps 20   # a quick look
    python examples/reproduce_embedded.py --settings supervised:ce cps:fpl --jobs 1

Each run is one `run_fpl.py` command on examples/configs/embedded.yaml (model, data, optimizer, burn-in and
ramp-up of the unsupervised weight), with one labeled split and one set of scenes for all (`--data_seed 0`) and the
seed varied (model initialisation, augmentation). The supervised runs train the same number of steps on the
labeled images alone; the oracle trains them on every training scene's label, the ceiling that unlabeled images
could reach. `--jobs 2` runs two commands at once, one thread each. Writes results.json (each run as it ends),
results.md (mean +- std, per seed, the pseudo-label statistics of the semi-supervised phase) and curves.png
(validation mIoU over training, mean over seeds, and the share of unlabeled pixels with K = 1).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from matplotlib.figure import Figure

RUN_FPL = Path(__file__).resolve().parent / "run_fpl.py"
SEGFORMER = Path(__file__).resolve().parent / "configs" / "segformer-b0-embedded"
SETTINGS = (
    ("oracle", "ce"),
    ("supervised", "ce"),
    ("cps", "ce"),
    ("cps", "fpl"),
    ("mean_teacher", "ce"),
    ("mean_teacher", "fpl"),
    ("unimatch", "ce"),
    ("unimatch", "fpl"),
    ("unimatch_v2", "ce"),
    ("unimatch_v2", "fpl"),
    ("segformer_supervised", "ce"),
    ("segformer_unimatch_v2", "fpl"),
)
# What a setting runs where its name is not a framework's: the oracle, and a transformers SegFormer-B0 (random
# weights: no ImageNet weights for it install offline) instead of the config's DeepLabv3+.
FLAGS = {
    "oracle": ["--framework", "supervised", "--all_labeled", "true"],
    "segformer_supervised": ["--framework", "supervised", "--config_name", str(SEGFORMER)],
    "segformer_unimatch_v2": ["--framework", "unimatch_v2", "--config_name", str(SEGFORMER)],
}
NAMES = {"oracle": "oracle (all scenes labeled)", "supervised": "supervised only", "cps": "CPS",
         "mean_teacher": "mean teacher", "unimatch": "UniMatch-style", "unimatch_v2": "UniMatch V2-style",
         "segformer_supervised": "SegFormer-B0, supervised only", "segformer_unimatch_v2": "SegFormer-B0, UniMatch V2-style"}
# Statistics of the semi-supervised phase that the trainer logs against the hidden labels.
STATISTICS = ("pseudo_label_accuracy", "case_wrong_in_set", "case_outside_set", "k1")


def label(framework: str, loss: str) -> str:
    if framework in ("oracle", "supervised", "segformer_supervised"):  # trained on labels alone
        return NAMES[framework]
    return f"{NAMES[framework]} + FPL" if loss == "fpl" else f"{NAMES[framework]} (CE)"


def setting(text: str) -> tuple[str, str]:
    pair = tuple(text.split(":"))
    if pair not in SETTINGS:
        raise argparse.ArgumentTypeError(f"unknown setting {text!r}; choose from {[':'.join(s) for s in SETTINGS]}.")
    return pair


def command(framework: str, loss: str, seed: int, options: argparse.Namespace, output_dir: Path) -> list[str]:
    flags = FLAGS.get(framework, ["--framework", framework]) + [
        "--unsup_loss", loss, "--seed", str(seed), "--data_seed", "0", "--output_dir", str(output_dir),
        "--save_strategy", "no", "--eval_strategy", "steps", "--eval_steps", str(options.eval_steps),
        "--logging_steps", "20", "--report_to", "none", "--disable_tqdm", "true",
    ]
    for name in ("max_steps", "burn_in_steps", "unsup_rampup_steps"):
        if getattr(options, name) is not None:
            flags += [f"--{name}", str(getattr(options, name))]
    return [sys.executable, str(RUN_FPL)] + flags


def run(framework: str, loss: str, seed: int, options: argparse.Namespace) -> dict:
    output_dir = Path(options.output_dir) / f"{framework}-{loss}-seed{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // options.jobs))}
    result = subprocess.run(command(framework, loss, seed, options, output_dir), env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{framework}:{loss} seed {seed} failed:\n{result.stderr[-3000:]}")
    summary = json.loads((output_dir / "run_summary.json").read_text())
    history = summary["log_history"]
    ssl_logs = [entry for entry in history if "unsup" in entry]
    # Statistics over the second half of the semi-supervised phase, when the pseudo-labels have settled.
    late = ssl_logs[len(ssl_logs) // 2 :]
    return {
        "seed": seed, "framework": framework, "unsup_loss": loss,
        "final_mean_iou": summary["final_mean_iou"], "best_mean_iou": summary["best_mean_iou"],
        "seconds": summary["seconds"],
        "curve": [(entry["step"], entry["eval_mean_iou"]) for entry in history if "eval_mean_iou" in entry],
        "k1_curve": [(entry["step"], entry["k1"]) for entry in ssl_logs],
        **{name: statistics.mean(entry[name] for entry in late) for name in STATISTICS if late and name in late[0]},
    }


def experiment(options: argparse.Namespace) -> list[dict]:
    output = Path(options.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    results_path = output / "results.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {(r["seed"], r["framework"], r["unsup_loss"]) for r in results}
    todo = [(framework, loss, seed) for seed in options.seeds for framework, loss in options.settings
            if (seed, framework, loss) not in done]
    with ThreadPoolExecutor(options.jobs) as pool:
        for result in pool.map(lambda job: run(*job, options), todo):
            results.append(result)
            results_path.write_text(json.dumps(results, indent=1))
            print(f"{label(result['framework'], result['unsup_loss'])}, seed {result['seed']}: "
                  f"{100 * result['final_mean_iou']:.2f} mIoU, {result['seconds'] / 60:.1f} min", flush=True)
    return results


def _mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


def table(results: list[dict], options: argparse.Namespace) -> str:
    lines = [
        "| setting | final mIoU (mean +- std) | seed: mIoU | vs. supervised (same model) | pseudo-labels right | truth outside "
        "fuzzy set | K = 1 | time per run |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for framework, loss in options.settings:
        # Each model against its own labels-only runs: the SegFormer rows against the SegFormer's.
        baseline = "segformer_supervised" if framework.startswith("segformer") else "supervised"
        supervised = [100 * r["final_mean_iou"] for r in results if r["framework"] == baseline]
        runs = sorted((r for r in results if (r["framework"], r["unsup_loss"]) == (framework, loss)),
                      key=lambda r: r["seed"])
        if not runs:
            continue
        final = [100 * r["final_mean_iou"] for r in runs]
        delta = "" if not supervised or framework in (baseline, "oracle") else (
            f"{statistics.mean(final) - statistics.mean(supervised):+.2f}")
        shown = ("pseudo_label_accuracy", "case_outside_set") + (("k1",) if loss == "fpl" else ())  # CE: K is 1
        stats = [f"{100 * statistics.mean(r[name] for r in runs):.0f}%" if name in runs[0] and name in shown else ""
                 for name in ("pseudo_label_accuracy", "case_outside_set", "k1")]
        seeds = ", ".join(f"{r['seed']}: {value:.1f}" for r, value in zip(runs, final))
        seconds = statistics.mean(r["seconds"] for r in runs)
        lines.append(f"| {label(framework, loss)} | {_mean_std(final)} | {seeds} | {delta} | {' | '.join(stats)} "
                     f"| {seconds / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def curves_figure(results: list[dict], path: Path) -> None:
    figure = Figure(figsize=(11, 4))
    miou_axis, k_axis = figure.subplots(1, 2)
    colors = [f"C{index}" for index in range(10)] + ["black", "dimgray"]  # one per setting
    for (framework, loss), color in zip(SETTINGS, colors):
        runs = [r for r in results if (r["framework"], r["unsup_loss"]) == (framework, loss)]
        if not runs:
            continue
        labels_only = framework in ("oracle", "supervised", "segformer_supervised")
        style = dict(linestyle="--" if loss == "ce" and not labels_only else "-", color=color)
        steps = [step for step, _ in runs[0]["curve"]]
        miou = [100 * statistics.mean(dict(r["curve"])[step] for r in runs) for step in steps]
        miou_axis.plot(steps, miou, label=label(framework, loss), **style)
        if loss == "fpl" and runs[0]["k1_curve"]:  # the cross-entropy's K is 1 by definition
            k_steps = [step for step, _ in runs[0]["k1_curve"]]
            k_axis.plot(k_steps, [statistics.mean(dict(r["k1_curve"])[s] for r in runs) for s in k_steps],
                        **style)
    miou_axis.set(xlabel="step", ylabel="validation mIoU (%)", title="validation mIoU, mean over seeds")
    k_axis.set(xlabel="step", ylabel="share of unlabeled pixels", title="FPL runs: K = 1 (teacher certain)")
    miou_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--settings", type=setting, nargs="+", default=list(SETTINGS),
                        help="framework:loss pairs to run, e.g. supervised:ce cps:fpl (default: all eight).")
    parser.add_argument("--max_steps", type=int, help="Override the config's steps (burn-in included).")
    parser.add_argument("--burn_in_steps", type=int, help="Override the config's burn-in.")
    parser.add_argument("--unsup_rampup_steps", type=int, help="Override the config's ramp-up.")
    parser.add_argument("--eval_steps", type=int, default=100, help="Validation every this many steps (the curves).")
    parser.add_argument("--jobs", type=int, default=2, help="Runs at once; the cores are shared among them.")
    parser.add_argument("--output_dir", default="outputs/reproduce-embedded")
    options = parser.parse_args(argv)
    # results.json may hold runs of other seeds or settings from earlier calls; report the ones asked for.
    results = [r for r in experiment(options)
               if r["seed"] in options.seeds and (r["framework"], r["unsup_loss"]) in options.settings]
    output = Path(options.output_dir)
    (output / "results.md").write_text(table(results, options))
    curves_figure(results, output / "curves.png")
    print(table(results, options))


if __name__ == "__main__":
    main(sys.argv[1:])
