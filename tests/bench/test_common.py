"""bench/common.py: alternating order, the matmul peak, the device check, the memory watch."""

import doctest

import pytest
import torch

from omnifuse.bench import common
from omnifuse.bench.common import BenchError, MemoryWatch, alternate, matmul_peak_flops, resolve_device
from omnifuse.errors import OmnifuseInputError


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(common).failed == 0


def test_alternate_flips_the_order_every_round_and_skips_warmup() -> None:
    calls: list[str] = []
    times = alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(times["a"]) == len(times["b"]) == 3 and min(times["a"] + times["b"]) >= 0


def test_matmul_peak_is_a_plausible_flop_rate() -> None:
    peak = matmul_peak_flops(torch.device("cpu"), torch.float32, n=128, repeats=2)
    assert 1e6 < peak < 1e14


def test_device_and_dtype_errors_are_user_input_errors(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BenchError, match="no CUDA device"):
        resolve_device("cuda", "bfloat16")
    with pytest.raises(OmnifuseInputError, match="--dtype"):
        resolve_device("cpu", "float8")
    with pytest.raises(BenchError, match="--device"):
        resolve_device("tpu", "float32")
    assert resolve_device("cpu", "bfloat16") == (torch.device("cpu"), torch.bfloat16)


def test_memory_watch_sees_an_allocation() -> None:
    with MemoryWatch() as watch:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
        block += 1
    assert watch.peak_bytes - watch.start_bytes >= 32 * 2**20
