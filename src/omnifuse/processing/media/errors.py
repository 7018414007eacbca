"""The error every bad media input raises, and the limits checked before and while decoding."""

from __future__ import annotations

from dataclasses import dataclass

from omnifuse.errors import OmnifuseInputError


class MediaError(OmnifuseInputError):
    """Bad media input; says which modality, which item and why.

    Example:
        >>> str(MediaError("image", "message 0, part 2", "truncated or corrupt file: broken PNG"))
        'image (message 0, part 2): truncated or corrupt file: broken PNG'
    """

    def __init__(self, kind: str, item: str = "", reason: str | None = None) -> None:
        if reason is None:
            # Rebuilt from its message alone (torch re-raises DataLoader worker errors as type(message)).
            kind, item, reason = "media", "", kind
            super().__init__(reason)
        else:
            where = f" ({item})" if item else ""
            super().__init__(f"{kind}{where}: {reason}")
        self.kind, self.item, self.reason = kind, item, reason

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # Rebuild from the three fields so the error survives pickling (DataLoader workers).
        return (type(self), (self.kind, self.item, self.reason))


@dataclass(frozen=True)
class MediaLimits:
    """Upper bounds applied to every medium before and while it is decoded.

    Example:
        >>> MediaLimits(max_pixels=1_000_000).max_video_frames
        64
    """

    max_bytes: int = 64 * 2**20
    max_pixels: int = 40_000_000
    max_audio_seconds: float = 600.0
    max_video_seconds: float = 600.0
    max_video_frames: int = 64  # frames kept after sampling
    max_decoded_frames: int = 10_000  # frames read while decoding
    max_sequence_values: int = 10_000_000  # time steps x channels of a generic signal
    max_text_chars: int = 1_000_000  # characters of prompt text, checked before tokenizing

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value > 0:
                raise ValueError(f"MediaLimits.{name} must be positive, got {value!r}")


def too_long_error(kind: str, item: str, seconds: float, limit: float, name: str) -> MediaError:
    return MediaError(kind, item, f"{seconds:.1f} s long, over the limit of {limit:g} s ({name})")
