"""Where a generic float signal (time, channels) becomes encoder input: normalised, fixed-length windows.

A sequence-kind modality reads its encoder's input like a log-mel encoder does (channels x frames,
e.g. a Whisper-style encoder whose `num_mel_bins` is the channel count) or, for one channel, like a
waveform encoder (samples). Long signals are split into consecutive windows, the last zero-padded,
with a mask of valid frames so the model keeps only the tokens that cover real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from omnifuse.config import dataclass_from_dict


@dataclass
class SequenceSettings:
    """Window length and layout of one sequence encoder, plus an optional per-channel normalisation.

    Example:
        >>> settings = SequenceSettings(channels=2, window=4, mean=[0.0, 10.0], std=[1.0, 2.0])
        >>> values, mask = sequence_to_windows(np.ones((6, 2), np.float32), settings)
        >>> values.shape, mask.sum(-1).tolist()
        (torch.Size([2, 2, 4]), [4, 2])
    """

    channels: int
    window: int
    channels_first: bool = True  # (channels, frames) per window; False: one channel as (samples,)
    mean: list[float] | float = 0.0
    std: list[float] | float = 1.0

    def __post_init__(self) -> None:
        if self.channels <= 0 or self.window <= 0:
            raise ValueError(f"channels and window must be positive, got {self.channels}, {self.window}")
        std = np.asarray(self.std, dtype=np.float64)
        if (std <= 0).any():
            raise ValueError(f"std must be positive, got {self.std}")
        for name in ("mean", "std"):
            size = np.asarray(getattr(self, name)).size
            if size not in (1, self.channels):
                raise ValueError(f"{name} needs 1 or {self.channels} values (one per channel), got {size}")

    @classmethod
    def from_options(cls, defaults: dict, options: dict) -> SequenceSettings:
        return dataclass_from_dict(cls, {**defaults, **options})


def sequence_to_windows(array: np.ndarray, settings: SequenceSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """(time, channels) -> (windows, channels, window) [or (windows, window)] and a (windows, window) mask."""
    steps = array.shape[0]
    n_windows = -(-steps // settings.window)
    normalised = (array - np.asarray(settings.mean, np.float32)) / np.asarray(settings.std, np.float32)
    padded = np.zeros((n_windows * settings.window, array.shape[1]), dtype=np.float32)
    padded[:steps] = normalised
    windows = torch.from_numpy(padded.reshape(n_windows, settings.window, array.shape[1]))
    valid = torch.tensor([min(settings.window, steps - start) for start in range(0, steps, settings.window)])
    mask = (torch.arange(settings.window)[None, :] < valid[:, None]).long()
    values = windows.transpose(1, 2).contiguous() if settings.channels_first else windows[..., 0].contiguous()
    return values, mask
