"""Opening untrusted bytes as an FFmpeg container (audio and video) and reading its duration."""

from __future__ import annotations

import io

import av

from omnifuse.processing.media.errors import MediaError

# FFmpeg demuxers allowed to probe untrusted bytes (no playlists or formats that open other inputs).
CONTAINER_FORMATS = "mov,mp4,m4a,matroska,webm,ogg,wav,w64,flac,mp3,aac,aiff,caf,gif,avi,mpegts,flv,asf"


def open_container(data: bytes, kind: str, item: str) -> av.container.InputContainer:
    try:
        return av.open(io.BytesIO(data), mode="r", options={"format_whitelist": CONTAINER_FORMATS})
    except Exception as error:
        raise MediaError(kind, item, f"unsupported format or corrupt file: {error}") from error


def known_seconds(container: av.container.InputContainer, stream: av.stream.Stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return container.duration / av.time_base if container.duration is not None else None
