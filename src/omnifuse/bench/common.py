"""What every benchmark shares: alternating timed runs, medians, memory, the matmul peak, the device check.

Absolute times on shared machines are noisy, so each benchmark times omnifuse and its baseline in
turns (A, B, B, A, ...) in one process and reports medians and their ratio.

Example:
    >>> timings = alternate({"a": lambda: sum(range(1000)), "b": lambda: sum(range(2000))}, repeats=3)
    >>> sorted(timings), len(timings["a"])
    (['a', 'b'], 3)
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil
import torch

from omnifuse.errors import UsageError

SIZES = ("tiny", "small", "large")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class BenchError(UsageError):
    """A benchmark asked for something this machine or its inputs cannot give (no CUDA, a bad size...)."""


def log(message: str) -> None:
    """Progress line on stderr (stdout is kept for the one JSON line)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def resolve_device(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    """The torch device and dtype asked for, or a BenchError saying why they cannot be used here.

    Example:
        >>> resolve_device("cpu", "float32")
        (device(type='cpu'), torch.float32)
    """
    if dtype not in DTYPES:
        raise BenchError(f"--dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BenchError("--device cuda: no CUDA device is available on this machine; use --device cpu")
    if device not in ("cpu", "cuda"):
        raise BenchError(f"--device must be cpu or cuda, got {device!r}")
    return torch.device(device), DTYPES[dtype]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device | None = None) -> tuple[float, object]:
    """(seconds, result) of one call, waiting for the accelerator to finish."""
    dev = device or torch.device("cpu")
    synchronize(dev)
    start = time.perf_counter()
    result = fn()
    synchronize(dev)
    return time.perf_counter() - start, result


def alternate(runs: dict[str, Callable[[], object]], repeats: int, warmup: int = 0) -> dict[str, list[float]]:
    """Time each named callable `repeats` times, in turns; the order flips every round (A B, B A, ...).

    Warm-up rounds run first and are not recorded.
    """
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(warmup + repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            seconds, _ = timed(runs[name])
            if round_index >= warmup:
                times[name].append(seconds)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def matmul_peak_flops(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """The best FLOP/s of an n x n matmul measured now: the peak MFU is computed against.

    Example:
        >>> matmul_peak_flops(torch.device("cpu"), torch.float32, n=64, repeats=2) > 0
        True
    """
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)  # first call pays for allocation and kernel selection
    best = min(timed(lambda: torch.mm(a, b), device)[0] for _ in range(repeats))
    return 2.0 * n**3 / best


@dataclass
class MemoryWatch:
    """Peak resident memory (RSS) seen while a block runs, sampled by a thread every few milliseconds.

    Example:
        >>> with MemoryWatch() as watch:
        ...     block = bytearray(50_000_000)
        >>> watch.peak_bytes > 0
        True
    """

    interval: float = 0.005
    peak_bytes: int = 0
    start_bytes: int = 0

    def __enter__(self) -> MemoryWatch:
        self._process = psutil.Process()
        self.start_bytes = self.peak_bytes = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)


def process_peak_rss_mb() -> float:
    """The process's peak RSS so far, in MiB (Linux reports ru_maxrss in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_threads(threads: int | None) -> int:
    """Use `threads` intra-op threads (default: what torch picked); returns the count in use."""
    if threads is not None:
        if threads <= 0:
            raise BenchError(f"--threads must be positive, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def rounded(value: float, digits: int = 4) -> float:
    return float(f"{value:.{digits}g}")
