"""Random generator states of one process, stored as safetensors + JSON: nothing in the file can run code.

Python's and numpy's Mersenne Twister states are lists of integers (kept in the file's JSON metadata and
an int64 tensor); torch's and CUDA's are byte tensors. Reading never unpickles, so a planted or edited
file can at worst be refused.

Example:
    >>> save_rng_states(Path("rng-0.safetensors"))  # doctest: +SKIP
    >>> restore_rng_states(Path("rng-0.safetensors"))  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omnifuse.errors import OmnifuseInputError

RNG_SUFFIX = ".safetensors"


class CheckpointError(OmnifuseInputError):
    """A checkpoint file that is missing, truncated, or not what omnifuse writes; names the file."""


def rng_file(folder: Path, process_index: int) -> Path:
    return folder / f"rng-{process_index}{RNG_SUFFIX}"


def save_rng_states(path: Path) -> None:
    """Write this process's python, numpy, torch (and CUDA) generator states to `path`."""
    version, py_state, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors = {"torch": torch.get_rng_state(), "numpy_keys": torch.from_numpy(keys.astype(np.int64))}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{i}": state for i, state in enumerate(torch.cuda.get_rng_state_all())}
    metadata = {
        "python": json.dumps([version, list(py_state), gauss]),
        "numpy": json.dumps([name, int(pos), int(has_gauss), float(cached)]),
    }
    save_file(tensors, str(path), metadata=metadata)


def restore_rng_states(path: Path) -> bool:
    """Put the generators back from `path`; False when the file does not exist (the caller reseeds)."""
    if not path.exists():
        return False
    try:
        with safe_open(str(path), "pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
        version, py_state, gauss = json.loads(metadata["python"])
        name, pos, has_gauss, cached = json.loads(metadata["numpy"])
        keys = tensors["numpy_keys"].numpy().astype(np.uint32)
        random.setstate((int(version), tuple(int(v) for v in py_state), gauss))
        np.random.set_state((str(name), keys, int(pos), int(has_gauss), float(cached)))
        torch.set_rng_state(tensors["torch"])
    except Exception as err:  # noqa: BLE001 - any defect of this file means it is not ours
        raise CheckpointError(f"{path}: not a readable random-state file ({type(err).__name__}: {err})") from None
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    return True


__all__ = ["CheckpointError", "restore_rng_states", "rng_file", "save_rng_states"]
