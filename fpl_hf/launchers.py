"""Where the runs of a comparison train: on this machine (its CPU cores shared, or its GPUs, each run its own) or on a
SLURM cluster through submitit, one job a run. A launcher turns a run's `run_fpl.py` flags into a process or a job;
`fpl_hf.comparison` decides which runs to start and reads their results back from their folders."""

from __future__ import annotations

import os
import platform
import queue
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

RUN_LOG = "run.log"  # a local run's output, kept in its folder whether it succeeds or not
JOB_ID = "job_id"  # a SLURM run's job, so that a resumed comparison neither starts it twice nor forgets it


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count()


def describe_device(device: object) -> str:
    """The device a run trains on or a benchmark measures, as results name it: the GPU's name, or the CPU's model
    and the threads torch uses ("AMD EPYC (2 threads)"). Runs on different machines part by a few points from the
    same seed, so every result says where it ran."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    threads = torch.get_num_threads()
    return f"{_cpu_model()} ({threads} thread{'s' if threads > 1 else ''})"


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")  # Linux; elsewhere platform's coarser answer
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine() or "CPU"


def training_command(run_fpl: Path, flags: Sequence[str], gpus_per_run: int, port: int = 29500) -> list[str]:
    """The command of one run: `python run_fpl.py`, or `accelerate launch` over `gpus_per_run` processes (one a GPU)
    when it has more than one."""
    if gpus_per_run <= 1:
        return [sys.executable, str(run_fpl), *flags]
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    return [*accelerate, "--num_processes", str(gpus_per_run), "--main_process_port", str(port), str(run_fpl), *flags]


@dataclass
class LocalLauncher:
    """Runs on this machine, as many at once as it allows: on a machine with GPUs, `gpus // gpus_per_run` runs, each
    with its own GPUs (`CUDA_VISIBLE_DEVICES`); without, `jobs` runs sharing the CPU cores (`OMP_NUM_THREADS`).

    Args:
        jobs: runs at once on a machine without GPUs.
        gpus_per_run: GPUs a run trains on (`accelerate launch --num_processes` when more than one).
        gpus: the GPUs of this machine; None counts them (torch).
    """

    jobs: int = 1
    gpus_per_run: int = 1
    gpus: int | None = None
    _slots: queue.Queue = field(init=False, repr=False)

    def __post_init__(self) -> None:
        available = gpu_count() if self.gpus is None else self.gpus
        self._slots = queue.Queue()
        if available:
            if self.gpus_per_run > available:
                raise ValueError(
                    f"--gpus_per_run {self.gpus_per_run} asks for more GPUs than this machine has ({available})."
                )
            for slot in range(available // self.gpus_per_run):
                devices = range(slot * self.gpus_per_run, (slot + 1) * self.gpus_per_run)
                self._slots.put((slot, {"CUDA_VISIBLE_DEVICES": ",".join(map(str, devices))}))
        else:
            threads = str(max(1, (os.cpu_count() or 1) // self.jobs))
            for slot in range(self.jobs):
                self._slots.put((slot, {"OMP_NUM_THREADS": threads}))
        self.parallel = self._slots.qsize()
        self.uses_gpus = bool(available)

    @contextmanager
    def slot(self) -> Iterator[tuple[int, dict[str, str]]]:
        """A free slot (its number and the environment it gives a run) for as long as a run holds it."""
        held = self._slots.get()
        try:
            yield held
        finally:
            self._slots.put(held)

    def run(self, run_fpl: Path, flags: Sequence[str], directory: Path) -> int:
        """Runs one training in a free slot, its output in `directory/run.log`; returns its exit status."""
        directory.mkdir(parents=True, exist_ok=True)
        with self.slot() as (number, environment):
            gpus = self.gpus_per_run if self.uses_gpus else 1
            command = training_command(run_fpl, flags, gpus, port=29500 + number)
            with open(directory / RUN_LOG, "w") as log:
                return subprocess.run(
                    command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **environment}
                ).returncode


@dataclass
class SlurmLauncher:
    """One SLURM job a run, submitted through submitit; its output stays in the run's folder (`slurm/`).

    Args:
        partition: the SLURM partition.
        time_minutes: a job's time limit.
        gpus_per_run: GPUs a job asks for (one node; `accelerate launch` over them when more than one).
        cpus_per_run: CPU cores a job asks for.
        options: further `sbatch` options, e.g. {"account": "my-lab", "qos": "high"}.
        cluster: submitit's cluster, "slurm"; "local" runs the jobs as processes of this machine (tests, a dry run).
    """

    partition: str | None = None
    time_minutes: int = 240
    gpus_per_run: int = 1
    cpus_per_run: int = 8
    options: dict[str, str] = field(default_factory=dict)
    cluster: str = "slurm"

    def executor(self, directory: Path):
        try:
            import submitit
        except ImportError as error:
            raise ImportError("The SLURM launcher needs submitit: `pip install 'fpl-hf[slurm]'`.") from error
        executor = submitit.AutoExecutor(folder=directory / "slurm", cluster=self.cluster)
        executor.update_parameters(
            timeout_min=self.time_minutes,
            nodes=1,
            tasks_per_node=1,
            cpus_per_task=self.cpus_per_run,
            gpus_per_node=self.gpus_per_run,
            name=directory.name,
        )
        if self.cluster == "slurm":
            executor.update_parameters(slurm_partition=self.partition, slurm_additional_parameters=dict(self.options))
        return executor

    def submit(self, run_fpl: Path, flags: Sequence[str], directory: Path):
        """Submits one run; its job id is kept in `directory/job_id`."""
        from submitit.helpers import CommandFunction

        directory.mkdir(parents=True, exist_ok=True)
        command = training_command(run_fpl, flags, self.gpus_per_run)
        job = self.executor(directory).submit(CommandFunction(command, verbose=False, cwd=os.getcwd()))
        (directory / JOB_ID).write_text(str(job.job_id))
        return job

    def job(self, directory: Path):
        """The job a run's folder names, or None where it names none."""
        path = directory / JOB_ID
        if not path.is_file():
            return None
        import submitit

        job_type = submitit.SlurmJob if self.cluster == "slurm" else submitit.LocalJob
        return job_type(folder=directory / "slurm", job_id=path.read_text().strip())

    @staticmethod
    def log(directory: Path) -> Path | None:
        """The output of the latest job of a run (submitit's `%j_0_log.out`, stderr beside it)."""
        logs = sorted((directory / "slurm").glob("*_log.err"), key=lambda path: path.stat().st_mtime)
        return logs[-1] if logs else None


__all__ = ["JOB_ID", "RUN_LOG", "LocalLauncher", "SlurmLauncher", "gpu_count", "training_command"]
