"""Negatives gathered across ranks: 2 torchrun processes (gloo) give the single-process loss and gradients."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from .ddp_worker import build

WORKER = Path(__file__).with_name("ddp_worker.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_gathered_negatives_equal_the_single_process_loss(pairs, tmp_path):
    out = tmp_path / "ddp.pt"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    command += ["--master_port", str(free_port()), str(WORKER), str(pairs), str(out)]
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    results = torch.load(out, weights_only=True)
    for loss in ("siglip", "clip"):
        ddp = results[loss]
        model, batch = build(pairs, loss)
        single = model(batch["items"], batch["texts"])
        single.backward()
        assert abs(ddp["loss"] - float(single.detach())) < 1e-5, loss
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        assert set(grads) == set(ddp["grads"]) and any(n.startswith("model.encoders") for n in grads)
        for name, grad in grads.items():
            torch.testing.assert_close(ddp["grads"][name], grad, atol=1e-5, rtol=1e-4, msg=f"{loss} {name}")
