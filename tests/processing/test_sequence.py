"""Generic float signals: loading (.npy, .npz, .csv, arrays) and windows with a valid-frame mask."""

import io

import numpy as np
import pytest
import torch

from omnifuse.processing.media import MediaError, MediaLimits, load_sequence
from omnifuse.processing.sequence import SequenceSettings, sequence_to_windows


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def npz_bytes(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_every_source_gives_the_same_array(tmp_path):
    signal = np.arange(12, dtype=np.float64).reshape(6, 2) / 4
    (tmp_path / "s.npy").write_bytes(npy_bytes(signal))
    (tmp_path / "s.csv").write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in signal))
    sources = [signal, signal.tolist(), torch.tensor(signal), str(tmp_path / "s.npy"), str(tmp_path / "s.csv"),
               npz_bytes(data=signal, other=signal[:1]), npz_bytes(only=signal)]  # fmt: skip
    for source in sources:
        loaded = load_sequence(source)
        assert loaded.dtype == np.float32 and np.array_equal(loaded, signal.astype(np.float32)), type(source)
    assert load_sequence(np.arange(5.0)).shape == (5, 1)  # 1-D is one channel


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (np.array([[1.0, np.inf]]), "NaN or infinite"),
        (np.zeros((0, 3)), r"expected a \(time, channels\) array"),
        (np.zeros((2, 2, 2)), r"expected a \(time, channels\) array"),
        (b"1,2\n3", "different numbers of columns"),
        (b"a,b\nc,d\n", "CSV data row 1 is not numeric: 'c,d'"),
        (b"a,b\n\n", "no numeric rows"),
        (npz_bytes(a=np.zeros(2), b=np.zeros(2)), "name the signal 'data'"),
        (b"\x93NUMPY garbage", "unreadable"),
        ([["x", "y"]], "not a numeric array"),
    ],
)
def test_bad_signals_are_media_errors(source, reason):
    with pytest.raises(MediaError, match=reason):
        load_sequence(source, item="message 0, part 0")


def test_size_limit_is_checked():
    with pytest.raises(MediaError, match="max_sequence_values"):
        load_sequence(np.zeros((100, 3)), limits=MediaLimits(max_sequence_values=299))


def test_windows_normalise_pad_and_mask():
    settings = SequenceSettings(channels=2, window=4, mean=[1.0, 0.0], std=[2.0, 1.0])
    signal = np.stack([np.full(6, 3.0), np.arange(6.0)], axis=1).astype(np.float32)
    values, mask = sequence_to_windows(signal, settings)
    assert values.shape == (2, 2, 4) and mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert values[0, 0].tolist() == [1.0, 1.0, 1.0, 1.0]  # (3 - 1) / 2
    assert values[1, 1].tolist() == [4.0, 5.0, 0.0, 0.0]  # padding stays zero
    one_channel = SequenceSettings(channels=1, window=3, channels_first=False)
    values, _ = sequence_to_windows(np.arange(4.0, dtype=np.float32)[:, None], one_channel)
    assert values.tolist() == [[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]]


@pytest.mark.parametrize("bad", [{"channels": 0, "window": 4}, {"channels": 2, "window": 4, "std": [1.0, 0.0]},
                                 {"channels": 2, "window": 4, "mean": [0.0, 0.0, 0.0]}])  # fmt: skip
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SequenceSettings(**bad)
