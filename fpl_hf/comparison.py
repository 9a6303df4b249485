"""What semi-supervision buys on a data set: labels-only training, the chosen semi-supervised settings and the
all-labels oracle, at the same budget, over seeds and draws of the labeled split; one `run_fpl.py` process a run.

`compare.py` is its command line; `reproduce_embedded.py` its use on the embedded data.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from datasets.utils.tqdm import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
from matplotlib.figure import Figure

from .data import DataSource, check_run_data, faint_border_note, load_training_data
from .launchers import RUN_LOG, LocalLauncher, SlurmLauncher
from .trainer.callbacks import PROGRESS_FILE

LABELS_ONLY, ORACLE = "labels only", "all labels (oracle)"
# Statistics of the semi-supervised phase, against the unlabeled images' own labels where the data has them.
STATISTICS = ("pseudo_label_accuracy", "case_outside_set", "k1")


@dataclass(frozen=True)
class Setting:
    """A row of the comparison: its name and the `run_fpl.py` flags that make it."""

    name: str
    flags: tuple[str, ...]
    semi_supervised: bool = True
    # The row whose loss this one replaces (FPL's: the same framework with the pseudo-label cross-entropy), compared
    # run by run on the same draws and seeds.
    replaces: str | None = None


def labels_only() -> Setting:
    return Setting(LABELS_ONLY, ("--framework", "supervised"), semi_supervised=False)


def oracle() -> Setting:
    return Setting(ORACLE, ("--framework", "supervised", "--all_labeled", "true"), semi_supervised=False)


def setting(framework: str, loss: str, name: str | None = None, extra: Sequence[str] = ()) -> Setting:
    """A semi-supervised row: `framework` + `loss` and any further flags (a swept option, another model)."""
    return Setting(
        name or f"{framework} + {loss}",
        ("--framework", framework, "--unsup_loss", loss, *extra),
        replaces=None if loss == "ce" else f"{framework} + ce",
    )


def swept(settings: Sequence[Setting], option: str, values: Sequence[str]) -> list[Setting]:
    """Each semi-supervised setting once per value of `--option` (the labels-only rows are left as they are)."""
    rows = []
    for row in settings:
        if not row.semi_supervised:
            rows.append(row)
            continue
        rows += [
            Setting(
                f"{row.name}, {option} {value}",
                (*row.flags, f"--{option}", value),
                replaces=row.replaces and f"{row.replaces}, {option} {value}",
            )
            for value in values
        ]
    return rows


def check_comparison_data(source: DataSource, seed: int, semi_supervised: bool) -> str | None:
    """The data check of a run, once for a whole comparison (its runs then skip their own): the data of the draw
    `seed`, every labeled and validation sample and a sample of the unlabeled pool; a problem raises a
    `DataCheckError` that names each bad sample. Returns the note on faint class borders for semi-supervised rows."""
    quiet = not are_progress_bars_disabled()
    if quiet:  # the comparison's own lines are its progress; the data set's building is no news
        disable_progress_bars()
    try:
        data = load_training_data(source, seed=seed)
        check_run_data(data.labeled, data.unlabeled, data.validation, len(data.class_names))
        return faint_border_note(data.labeled, data.class_names) if semi_supervised else None
    finally:
        if quiet:
            enable_progress_bars()


Job = tuple[Setting, "int | None", int]
RUN_SUMMARY = "run_summary.json"  # what run_fpl.py writes once a run has ended and been evaluated


@dataclass
class Comparison:
    """Every (setting, draw, seed) run of `run_fpl.py` with `base_flags`, in `output_dir`.

    Args:
        settings: the rows; compare them with `LABELS_ONLY`'s row where it is among them.
        seeds: `--seed` of each run (initialisation, augmentation).
        draws: `--data_seed` of each run (which images are labeled; on the embedded data, the scenes too); [None]
            where the labeled split is fixed (split lists, folders of unlabeled images).
        base_flags: the `run_fpl.py` flags common to every run (data, model, schedule).
        launcher: where the runs train: this machine (`LocalLauncher`: its cores shared, or its GPUs, each run its
            own) or a SLURM cluster (`SlurmLauncher`, one job a run).
        progress_seconds: how often the step, latest mIoU and time left of each run in progress are printed.
        start_from: the output directory of an earlier comparison: every run starts from its labels-only model of the
            same draw and seed (self-training from converged labels alone; this comparison's labels-only row then
            trains that model on for the same steps, the baseline at the same total budget).
    """

    settings: Sequence[Setting]
    output_dir: Path
    seeds: Sequence[int] = (0,)
    draws: Sequence[int | None] = (0,)
    base_flags: Sequence[str] = ()
    launcher: LocalLauncher | SlurmLauncher = field(default_factory=LocalLauncher)
    progress_seconds: float = 60.0
    start_from: Path | None = None
    run_fpl: Path = Path(__file__).resolve().parents[1] / "examples" / "run_fpl.py"
    results: list[dict] = field(default_factory=list)

    @property
    def results_path(self) -> Path:
        return Path(self.output_dir) / "results.json"

    def planned(self) -> list[Job]:
        return [(row, draw, seed) for draw in self.draws for seed in self.seeds for row in self.settings]

    def load(self) -> list[dict]:
        """The runs `results.json` holds (of any setting, draw and seed; the table shows this comparison's)."""
        self.results = json.loads(self.results_path.read_text()) if self.results_path.is_file() else []
        return self.results

    def directory(self, row: Setting, draw: int | None, seed: int) -> Path:
        return _run_directory(self.output_dir, row.name, draw, seed)

    def flags(self, row: Setting, draw: int | None, seed: int) -> list[str]:
        flags = [
            *self.base_flags,
            *row.flags,
            "--seed",
            str(seed),
            "--output_dir",
            str(self.directory(row, draw, seed)),
        ]
        flags += ["--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]
        if self.start_from is not None:
            flags += ["--model_name_or_path", str(self.start_model(draw, seed))]
        return flags + (["--data_seed", str(draw)] if draw is not None else [])

    def start_model(self, draw: int | None, seed: int) -> Path:
        """`start_from`'s labels-only model of a draw and seed (a missing one is an error that says so)."""
        model = _run_directory(self.start_from, LABELS_ONLY, draw, seed)
        if not (model / "config.json").is_file():
            raise FileNotFoundError(
                f"--start_from {self.start_from}: no labels-only model of {run_name(draw, seed)} ({model}). Run "
                "the earlier comparison with these draws and seeds first (its labels-only row is enough)."
            )
        return model

    def to_go(self, report: Callable[[str], None] = print) -> list[Job]:
        """The runs of the plan without a result yet: a half-finished comparison resumes, and a failed run is tried
        again (its failure is dropped from `results.json` when it starts anew)."""
        Path(self.output_dir).mkdir(parents=True, exist_ok=True)
        self.load()
        done = {(r["setting"], r["draw"], r["seed"]) for r in self.results if not r.get("failed")}
        plan = self.planned()
        todo = [job for job in plan if (job[0].name, job[1], job[2]) not in done]
        retried = {(row.name, draw, seed) for row, draw, seed in todo}
        self.results = [r for r in self.results if (r["setting"], r["draw"], r["seed"]) not in retried]
        where = f"{self.launcher.parallel} at a time" if isinstance(self.launcher, LocalLauncher) else "as SLURM jobs"
        report(f"{len(plan)} runs, {len(plan) - len(todo)} done already, {len(todo)} to go, {where}")
        return todo

    def run(self, report: Callable[[str], None] = print) -> list[dict]:
        """Trains every run still to go and records each as it ends (`results.json`, `table.md`); a failed run is
        recorded as failed, with its log and last error line, and the others go on."""
        todo = self.to_go(report)
        if isinstance(self.launcher, SlurmLauncher):
            self.wait(self.submit(todo, report), report)
            return self.results
        start, running = time.perf_counter(), {}

        def train(job: Job) -> dict:
            directory = self.directory(*job)
            running[directory] = job
            try:
                status = self.launcher.run(self.run_fpl, self.flags(*job), directory)
            finally:
                running.pop(directory, None)
            return self._result(*job, status == 0, directory / RUN_LOG)

        with ThreadPoolExecutor(self.launcher.parallel) as pool, self._progress(running, report):
            for finished, future in enumerate(as_completed([pool.submit(train, job) for job in todo]), start=1):
                left = (time.perf_counter() - start) / finished * (len(todo) - finished)
                self._record(future.result(), f"[{finished}/{len(todo)}]", f"about {left / 60:.0f} min left", report)
        return self.results

    def submit(self, todo: Sequence[Job], report: Callable[[str], None] = print) -> dict[Path, tuple[Job, object]]:
        """SLURM: a job for each run still to go, except those whose job is still queued or running (they are not
        started twice) and those that finished while nobody watched (read back from their folders)."""
        jobs = {}
        for job in todo:
            directory = self.directory(*job)
            earlier = self.launcher.job(directory)
            ended = earlier is None or earlier.done()  # each done() can ask SLURM (sacct) once
            if earlier is not None and ended and (directory / RUN_SUMMARY).is_file():
                self._record(self._result(*job, True, None), "[finished meanwhile]", "", report)
            elif not ended:
                report(f"{job[0].name}, {run_name(job[1], job[2])}: job {earlier.job_id} still queued or running")
                jobs[directory] = (job, earlier)
            else:
                (directory / RUN_SUMMARY).unlink(missing_ok=True)
                jobs[directory] = (job, self.launcher.submit(self.run_fpl, self.flags(*job), directory))
        return jobs

    def wait(self, jobs: dict[Path, tuple[Job, object]], report: Callable[[str], None] = print) -> None:
        """Records each SLURM job's run as it ends; the comparison can be left (Ctrl-C) and resumed at any time."""
        running = {directory: job for directory, (job, _) in jobs.items()}
        with self._progress(running, report):
            while jobs:
                for directory in [d for d, (_, handle) in jobs.items() if handle.done()]:
                    job, _ = jobs.pop(directory)
                    running.pop(directory, None)
                    succeeded = (directory / RUN_SUMMARY).is_file()
                    self._record(self._result(*job, succeeded, SlurmLauncher.log(directory)), "[job ended]", "", report)
                time.sleep(min(self.progress_seconds, 10) if jobs else 0)

    def _record(self, result: dict, prefix: str, suffix: str, report: Callable[[str], None]) -> None:
        self.results.append(result)
        self.results_path.write_text(json.dumps(self.results, indent=1))
        (Path(self.output_dir) / "table.md").write_text(self.table())
        name = f"{result['setting']}, {run_name(result['draw'], result['seed'])}"
        if result.get("failed"):
            report(f"{prefix} {name}: FAILED: {result['error']} (log: {result['log']})")
        else:
            minutes = result["seconds"] / 60
            report(f"{prefix} {name}: {100 * result['final_mean_iou']:.2f} mIoU in {minutes:.1f} min; {suffix}")

    @contextmanager
    def _progress(self, running: dict[Path, Job], report: Callable[[str], None]) -> Iterator[None]:
        """Every `progress_seconds`, a line for each run in progress: its step, latest mIoU and the time left."""
        stop = threading.Event()

        last: dict[Path, dict] = {}

        def watch() -> None:
            while not stop.wait(self.progress_seconds):
                for directory, (row, draw, seed) in list(running.items()):
                    progress = read_progress(directory)
                    if progress:
                        described = describe_progress(progress, last.get(directory))
                        report(f"  {row.name}, {run_name(draw, seed)}: {described}")
                        last[directory] = progress

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            yield
        finally:
            stop.set()
            watcher.join()

    def _result(self, row: Setting, draw: int | None, seed: int, succeeded: bool, log: Path | None) -> dict:
        directory = self.directory(row, draw, seed)
        if not succeeded or not (directory / RUN_SUMMARY).is_file():
            return {
                "setting": row.name,
                "draw": draw,
                "seed": seed,
                "flags": list(row.flags),
                "failed": True,
                "log": str(log),
                "error": last_error_line(log),
            }
        summary = json.loads((directory / RUN_SUMMARY).read_text())
        history = summary["log_history"]
        semi_supervised = [entry for entry in history if "unsup" in entry]
        late = semi_supervised[len(semi_supervised) // 2 :]  # the second half of the phase, pseudo-labels settled
        return {
            "setting": row.name,
            "draw": draw,
            "seed": seed,
            "flags": list(row.flags),
            "final_mean_iou": summary["final_mean_iou"],
            "best_mean_iou": summary["best_mean_iou"],
            "seconds": summary["seconds"],
            # One point a step: the final evaluation repeats the last one.
            "curve": list(
                {entry["step"]: entry["eval_mean_iou"] for entry in history if "eval_mean_iou" in entry}.items()
            ),
            "k1_curve": [(entry["step"], entry["k1"]) for entry in semi_supervised if "k1" in entry],
            **{
                name: statistics.mean(entry[name] for entry in late)
                for name in STATISTICS
                if late and all(name in entry for entry in late)
            },
            **{key: summary[key] for key in ("pseudo_labels_by_class", "machine") if key in summary},
        }

    def rows(self) -> list[dict]:
        """Per setting: the final mIoU of its runs (in %), mean, standard deviation, its gain over labels-only on the
        same draws, on average over its runs and per draw, against the row whose loss it replaces on the runs both
        have (same draw and seed), and the statistics of its semi-supervised phase."""
        baseline = self._final(LABELS_ONLY)
        summaries = []
        for row in self.settings:
            runs = sorted(self.succeeded(row.name), key=lambda r: (r["draw"] or 0, r["seed"]))
            if not runs:
                continue
            final = [100 * r["final_mean_iou"] for r in runs]
            summary = {
                "setting": row.name,
                "runs": len(runs),
                "mean": statistics.mean(final),
                "std": _std(final),
                "per_run": {(r["draw"], r["seed"]): value for r, value in zip(runs, final)},
                "minutes": statistics.mean(r["seconds"] for r in runs) / 60,
            }
            baseline_of_draw = {
                draw: statistics.mean(v for (d, _), v in baseline.items() if d == draw) for draw, _ in baseline
            }
            matched = {(d, s): v for (d, s), v in summary["per_run"].items() if d in baseline_of_draw}
            if matched and row.semi_supervised:
                # Against labels-only on the same draws: a half-finished comparison compares like with like.
                summary["gain"] = statistics.mean(v - baseline_of_draw[d] for (d, _), v in matched.items())
                summary["gain_per_draw"] = {
                    draw: statistics.mean(v for (d, _), v in matched.items() if d == draw) - baseline_of_draw[draw]
                    for draw in sorted({d for d, _ in matched}, key=lambda d: d or 0)
                }
            replaced = self._final(row.replaces) if row.replaces else {}
            paired = [value - replaced[run] for run, value in summary["per_run"].items() if run in replaced]
            if paired:
                summary["versus_replaced"] = statistics.mean(paired)
                summary["paired_runs"] = len(paired)
            for name in STATISTICS:
                values = [r[name] for r in runs if name in r]
                if values:
                    summary[name] = 100 * statistics.mean(values)
            summaries.append(summary)
        return summaries

    def succeeded(self, name: str) -> list[dict]:
        return [r for r in self.results if r["setting"] == name and not r.get("failed")]

    def failed(self) -> list[dict]:
        """The runs of this comparison's settings that failed (rerunning the command tries them again)."""
        names = {row.name for row in self.settings}
        return [r for r in self.results if r.get("failed") and r["setting"] in names]

    def _final(self, name: str) -> dict:
        return {(r["draw"], r["seed"]): 100 * r["final_mean_iou"] for r in self.succeeded(name)}

    def table(self) -> str:
        """Markdown: mean +- std over every run of a setting, the gain over labels-only, each draw's gain, FPL against
        the CE it replaces (same runs, their number in brackets), each run, the machines where runs ran on more than
        one, and the pseudo-label statistics (where the unlabeled images' own labels are known)."""
        runs_of = "seed" if list(self.draws) == [None] else "draw/seed"
        lines = [
            "| setting | final mIoU (mean +- std) | vs. labels only | per draw: gain | vs. CE, same runs "
            f"| runs ({runs_of}: mIoU) | pseudo-labels right | truth outside the trained set | K = 1 | minutes a run |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in self.rows():
            gain = f"{row['gain']:+.2f}" if "gain" in row else ""
            versus = f"{row['versus_replaced']:+.2f} ({row['paired_runs']})" if "versus_replaced" in row else ""
            per_draw = ", ".join(
                f"{draw}: {value:+.1f}" for draw, value in row.get("gain_per_draw", {}).items() if draw is not None
            )
            runs = ", ".join(
                f"{seed if draw is None else f'{draw}/{seed}'}: {value:.1f}"
                for (draw, seed), value in row["per_run"].items()
            )
            shown = [f"{row[name]:.0f}%" if name in row else "" for name in STATISTICS]
            lines.append(
                f"| {row['setting']} | {row['mean']:.2f} +- {row['std']:.2f} ({row['runs']}) | {gain} | "
                f"{per_draw} | {versus} | {runs} | {' | '.join(shown)} | {row['minutes']:.1f} |"
            )
        # The same seed parts by a few points between machines: say so where the runs compared crossed machines.
        machines = Counter(r["machine"] for row in self.settings for r in self.succeeded(row.name) if "machine" in r)
        if len(machines) > 1:
            lines += ["", "Runs of more than one machine: " + "; ".join(f"{n} on {m}" for m, n in machines.items())]
        failures = [
            f"- FAILED: {r['setting']}, {run_name(r['draw'], r['seed'])}: {r['error']} (log: {r['log']})"
            for r in self.failed()
        ]
        if failures:
            lines += ["", f"{len(failures)} failed (the same command tries them again):", *failures]
        return "\n".join(lines + self._class_table()) + "\n"

    def _class_table(self) -> list[str]:
        """Markdown lines: per semi-supervised setting, each class's pseudo-labels right and truth outside the trained
        set (mean over the runs that counted them), and each class's share of the pixels; none where no run did."""
        counted = {
            row.name: [r["pseudo_labels_by_class"] for r in self.succeeded(row.name) if "pseudo_labels_by_class" in r]
            for row in self.settings
        }
        counted = {name: runs for name, runs in counted.items() if runs}
        if not counted:
            return []
        every_run = [run for runs in counted.values() for run in runs]
        classes = list(dict.fromkeys(name for run in every_run for name in run))

        def cells(runs: list[dict], *keys: str) -> str:
            """Each class's mean of `keys` over `runs`, joined by a slash, as the row's cells."""
            shown = []
            for name in classes:
                values = [run[name] for run in runs if name in run]
                means = (f"{100 * statistics.mean(value[key] for value in values):.0f}" for key in keys)
                shown.append(" / ".join(means) if values else "")
            return " | ".join(shown)

        return [
            "",
            "Pseudo-labels by class (`pseudo_labels_by_class`, second half of the semi-supervised phase, mean over "
            "runs): right / truth outside the trained set, % of the class's pixels whose label is known.",
            "",
            f"| setting | {' | '.join(classes)} |",
            f"|---|{'---|' * len(classes)}",
            f"| share of the pixels | {cells(every_run, 'pixels')} |",
            *(
                f"| {setting} | {cells(runs, 'pseudo_label_accuracy', 'case_outside_set')} |"
                for setting, runs in counted.items()
            ),
        ]

    def curves_figure(self, path: Path) -> None:
        """Validation mIoU over training (mean over runs) of every setting, and the share of unlabeled pixels with
        K = 1 of the runs that log it."""
        figure = Figure(figsize=(12, 4.5))
        miou_axis, k_axis = figure.subplots(1, 2)
        for index, row in enumerate(self.settings):
            runs = self.succeeded(row.name)
            if not runs:
                continue
            style = dict(color=f"C{index % 10}", linestyle="-" if index < 10 else "--")
            steps = [step for step, _ in runs[0]["curve"]]
            mean = [100 * statistics.mean(dict(r["curve"]).get(step, float("nan")) for r in runs) for step in steps]
            miou_axis.plot(steps, mean, label=row.name, **style)
            if runs[0]["k1_curve"]:
                k_steps = [step for step, _ in runs[0]["k1_curve"]]
                k_axis.plot(
                    k_steps,
                    [statistics.mean(dict(r["k1_curve"]).get(step, float("nan")) for r in runs) for step in k_steps],
                    **style,
                )
        miou_axis.set(xlabel="step", ylabel="validation mIoU (%)", title="validation mIoU, mean over runs")
        k_axis.set(xlabel="step", ylabel="share of unlabeled pixels", title="K = 1 (one class trusted)")
        miou_axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(path, dpi=100)

    def write(self) -> None:
        """table.md and curves.png beside results.json."""
        Path(self.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.output_dir) / "table.md").write_text(self.table())
        self.curves_figure(Path(self.output_dir) / "curves.png")


def read_progress(directory: Path) -> dict | None:
    """What a run in progress wrote of itself (`progress.json`, `fpl_hf.trainer.callbacks.ProgressCallback`)."""
    try:
        return json.loads((Path(directory) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None


def describe_progress(progress: dict, previous: dict | None = None) -> str:
    """A run's step, latest mIoU and time left. The time left is at the pace since `previous` (the run's last
    report) where there is one: the supervised burn-in's steps are far faster than the semi-supervised ones, so the
    mean pace since the start would promise a semi-supervised run's end too early (a CPS run: 42 minutes said at
    step 600 where about 70 were left)."""
    step, total, seconds = progress["step"], progress["max_steps"], progress["seconds"]
    text = f"step {step}/{total}"
    if progress.get("eval_mean_iou") is not None:
        text += f", mIoU {100 * progress['eval_mean_iou']:.2f} (step {progress['eval_step']})"
    if previous is not None and step > previous["step"]:
        pace = (seconds - previous["seconds"]) / (step - previous["step"])
    else:
        pace = seconds / step if step else None
    if pace is not None:
        text += f", about {pace * (total - step) / 60:.0f} min left"
    return text


def last_error_line(log: Path | None) -> str:
    """The line of a failed run's log that says what went wrong: the last that names an error, else the last."""
    if log is None or not Path(log).is_file():
        return "no log"
    lines = [line.strip() for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["empty log"])[-1][:300]


def run_name(draw: int | None, seed: int) -> str:
    """A run as progress lines and tables name it: its draw and seed, or its seed where the labeled part is fixed."""
    return f"seed {seed}" if draw is None else f"draw {draw}, seed {seed}"


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _run_directory(output_dir: Path, name: str, draw: int | None, seed: int) -> Path:
    return Path(output_dir) / "runs" / f"{_slug(name)}-draw{draw}-seed{seed}"


def _slug(name: str) -> str:
    return "".join(character if character.isalnum() else "_" for character in name).strip("_")


__all__ = [
    "LABELS_ONLY",
    "ORACLE",
    "Comparison",
    "Setting",
    "check_comparison_data",
    "labels_only",
    "oracle",
    "run_name",
    "setting",
    "swept",
]
