"""Files that already form a transformers folder (config, safetensors, tokenizer): copied as they are.

Example:
    >>> copy_transformers_folder({"config.json": Path("a/config.json")}, Path("out"))   # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from pathlib import Path

from omnifuse.pretrained.verify import PretrainedFormatError


def copy_transformers_folder(files: dict[str, Path], out_dir: Path) -> None:
    """Copy each verified file to `out_dir/<its name>`; a config.json and weights are required."""
    if "config.json" not in files or not any(name.endswith(".safetensors") for name in files):
        raise PretrainedFormatError(f"a transformers folder needs config.json and safetensors, got {sorted(files)}")
    for name, path in files.items():
        target = out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


__all__ = ["copy_transformers_folder"]
