"""Per-request limits of the server: body size, media items and bytes, pixels, frames, audio seconds, tokens.

Example:
    >>> limits = ServerLimits(max_media_items=4)
    >>> limits.media_limits().max_pixels
    20000000
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from omnifuse.processing.media import MediaLimits


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask of the server; everything past a limit is a 4xx, never a crash."""

    max_body_bytes: int = 16 * 2**20  # the whole HTTP request body
    max_media_items: int = 16  # media parts in one request, all messages together
    max_media_bytes: int = 12 * 2**20  # encoded bytes of one request's media, all items together
    max_item_bytes: int = 10 * 2**20  # encoded bytes of one medium
    max_pixels: int = 20_000_000  # one image or video frame
    max_video_frames: int = 32  # frames kept per video after sampling
    max_decoded_frames: int = 2_000  # frames a video may hold (read while decoding)
    max_video_seconds: float = 300.0
    max_audio_seconds: float = 300.0
    max_tokens: int = 1024  # the most a request may generate
    max_messages: int = 256

    def __post_init__(self) -> None:
        for item in fields(self):
            if not getattr(self, item.name) > 0:
                raise ValueError(f"ServerLimits.{item.name} must be positive, got {getattr(self, item.name)!r}")

    def media_limits(self) -> MediaLimits:
        """The limits the media loaders enforce for one item, before and while decoding."""
        return MediaLimits(
            max_bytes=self.max_item_bytes,
            max_pixels=self.max_pixels,
            max_audio_seconds=self.max_audio_seconds,
            max_video_seconds=self.max_video_seconds,
            max_video_frames=self.max_video_frames,
            max_decoded_frames=self.max_decoded_frames,
        )
