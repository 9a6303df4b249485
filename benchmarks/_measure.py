"""Timing and peak-memory helpers shared by the benchmarks (CPU and CUDA, same code)."""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """File descriptor 2 points to /dev/null inside: what native libraries print there is dropped."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak of memory allocated by `fn` above what was allocated before it."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) - before
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
    # Kineto writes its own lines to the process's stderr when it starts and stops, on a machine without a GPU an
    # "ERROR ... gpuGetDeviceCount failed" that is no error of this run: hidden there, never around `fn` itself.
    with native_stderr_hidden():
        profiler.__enter__()
    try:
        fn()
    finally:
        with native_stderr_hidden():
            profiler.__exit__(None, None, None)
    events = sorted(
        (event for event in profiler.events() if event.cpu_memory_usage != 0), key=lambda event: event.time_range.start
    )
    # Self memory only, so that a nested operator's allocation is not counted twice.
    current = peak = 0
    for event in events:
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    return peak


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096


class PeakMemory:
    """The peak memory above the start while inside: CUDA's allocator peak, or the sampled resident set size."""

    def __init__(self, device: torch.device):
        self.device, self.peak, self._running = device, 0, False

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start, self._running = rss_bytes(), True
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, rss_bytes() - self.start)
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) - self.start
        else:
            self._running = False
            self._thread.join()
