"""Checksums and the errors a pull raises: a download that is not what the registry pinned is refused.

Example:
    >>> verify_sha256(Path("model.bin"), "ab12...", source="pkg==1.0")   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from omnifuse.errors import OmnifuseInputError

CHUNK_BYTES = 1 << 20


class PretrainedError(OmnifuseInputError):
    """A pretrained pull that cannot complete because of what was downloaded or asked for."""


class IntegrityError(PretrainedError):
    """A downloaded weight file whose sha256 differs from the registry's pinned value (corrupt or tampered)."""


class PretrainedFormatError(PretrainedError):
    """A weight file that does not have the layout its converter expects."""


class SourceUnreachableError(PretrainedError):
    """The package index could not be reached (offline machine, proxy), so nothing was downloaded."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, source: str) -> None:
    """Raise IntegrityError unless `path` hashes to `expected`."""
    actual = sha256_of(path)
    if actual != expected:
        raise IntegrityError(
            f"{path.name} from {source} has sha256 {actual}, expected {expected}: "
            "the download is corrupt or was tampered with; nothing was written"
        )


__all__ = [
    "IntegrityError",
    "PretrainedError",
    "PretrainedFormatError",
    "SourceUnreachableError",
    "sha256_of",
    "verify_sha256",
]
