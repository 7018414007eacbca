"""Read a CTranslate2 `model.bin` (binary format version 6) into named numpy arrays, without CTranslate2.

Layout: version (u32), spec name (u16 length + bytes), spec revision (u32), variable count (u32), then per
variable: name, rank (u8), dims (u32 each), dtype id (u8), byte count (u32), raw little-endian data; then
aliases (u32 count, pairs of names).

Example:
    >>> weights = read_ct2_model("model.bin")          # doctest: +SKIP
    >>> weights["encoder/conv1/weight"].shape           # doctest: +SKIP
    (384, 80, 3)
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from omnifuse.pretrained.verify import PretrainedFormatError

SUPPORTED_VERSION = 6
# CTranslate2's DataType enum order.
DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class _Reader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data, self.pos, self.source = memoryview(data), 0, source

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise PretrainedFormatError(f"{self.source}: truncated CTranslate2 file at byte {self.pos}")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        return bytes(self.take(self.u16())).rstrip(b"\0").decode("utf-8")


def _read_variable(reader: _Reader) -> tuple[str, np.ndarray]:
    name = reader.string()
    shape = tuple(reader.u32() for _ in range(reader.u8()))
    dtype_id, nbytes = reader.u8(), reader.u32()
    if dtype_id not in DTYPES:
        raise PretrainedFormatError(f"{reader.source}: variable {name!r} has unsupported dtype id {dtype_id}")
    array = np.frombuffer(reader.take(nbytes), dtype=DTYPES[dtype_id])
    if array.size != int(np.prod(shape, dtype=np.int64)):
        raise PretrainedFormatError(f"{reader.source}: variable {name!r} holds {array.size} values, shape {shape}")
    return name, array.reshape(shape)


def read_ct2_model(path: str | Path) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model file, aliases resolved to the arrays they name."""
    path = Path(path)
    reader = _Reader(path.read_bytes(), str(path))
    version = reader.u32()
    if version != SUPPORTED_VERSION:
        raise PretrainedFormatError(f"{path}: CTranslate2 binary version {version}, expected {SUPPORTED_VERSION}")
    reader.string()  # spec name, e.g. WhisperSpec
    reader.u32()  # spec revision
    variables = dict(_read_variable(reader) for _ in range(reader.u32()))
    if reader.pos < len(reader.data):
        for _ in range(reader.u32()):
            alias, target = reader.string(), reader.string()
            variables[alias] = variables[target]
    return variables


__all__ = ["read_ct2_model"]
