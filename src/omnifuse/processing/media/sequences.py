"""Loading a generic float signal (time, channels): sensors, depth scans, any measured stream.

Accepted: a path or bytes of `.npy`, `.npz` (one array, or one named `data`) or `.csv` (numbers,
an optional header row), or an in-memory numpy array / tensor / nested list. A 1-D array is one
channel. NaN and infinities are refused: they would silently poison every feature downstream.
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import numpy as np

from omnifuse.processing.media.errors import MediaError, MediaLimits
from omnifuse.processing.media.sources import read_source_bytes

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"


def load_sequence(source: Any, *, item: str = "", limits: MediaLimits = MediaLimits()) -> np.ndarray:  # noqa: B008
    """A float32 array of shape (time, channels), within `limits.max_sequence_values`.

    Example:
        >>> load_sequence([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]).shape
        (3, 2)
    """
    kind = "sequence"
    if isinstance(source, np.ndarray | list | tuple) or hasattr(source, "detach"):
        array = _as_array(source, item)
    else:
        array = _parse_bytes(read_source_bytes(source, kind=kind, item=item, limits=limits), item)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise MediaError(kind, item, f"expected a (time, channels) array, got shape {tuple(array.shape)}")
    if array.size > limits.max_sequence_values:
        raise MediaError(
            kind, item, f"{array.size} values, over the limit of {limits.max_sequence_values} (max_sequence_values)"
        )
    if not np.isfinite(array).all():
        raise MediaError(kind, item, "contains NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def _as_array(value: Any, item: str) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise MediaError("sequence", item, f"not a numeric array: {err}") from None
    return array


def _parse_bytes(data: bytes, item: str) -> np.ndarray:
    try:
        if data.startswith(NPY_MAGIC):
            return _as_array(np.load(io.BytesIO(data), allow_pickle=False), item)
        if data.startswith(ZIP_MAGIC):
            return _from_npz(data, item)
        return _from_csv(data, item)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise MediaError("sequence", item, f"unreadable .npy/.npz/.csv data: {err}") from None


def _from_npz(data: bytes, item: str) -> np.ndarray:
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        names = list(archive.files)
        if len(names) != 1 and "data" not in names:
            raise MediaError("sequence", item, f".npz holds arrays {names}: keep one, or name the signal 'data'")
        return _as_array(archive["data" if "data" in names else names[0]], item)


def _from_csv(data: bytes, item: str) -> np.ndarray:
    text = data.decode("utf-8", errors="strict")
    lines = [line for line in text.splitlines() if line.strip()]
    if lines and not _is_numeric_row(lines[0]):
        lines = lines[1:]  # a header row
    if not lines:
        raise MediaError("sequence", item, "the CSV holds no numeric rows")
    rows = [line.split(",") for line in lines]
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise MediaError("sequence", item, f"CSV rows have different numbers of columns: {sorted(widths)}")
    numbers = []
    for number, row in enumerate(rows, start=1):
        try:
            numbers.append([float(cell) for cell in row])
        except ValueError:
            shown = ",".join(row)[:60]
            raise MediaError("sequence", item, f"CSV data row {number} is not numeric: {shown!r}") from None
    return _as_array(numbers, item)


def _is_numeric_row(line: str) -> bool:
    try:
        [float(cell) for cell in line.split(",")]
    except ValueError:
        return False
    return True
