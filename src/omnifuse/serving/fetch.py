"""Media URLs in requests: `data:` URIs always; http(s) and local paths only per the policy.

This minimal version decodes `data:` URIs and refuses everything else; the full fetcher (allow-listed
domains, address checks on every redirect hop, local paths below one folder) replaces it.

Example:
    >>> fetch_media("data:text/plain;base64,aGk=", FetchPolicy())
    b'hi'
"""

from __future__ import annotations

from dataclasses import dataclass

from omnifuse.errors import OmnifuseInputError
from omnifuse.processing.media import MediaError, MediaLimits, read_source_bytes


@dataclass(frozen=True)
class FetchPolicy:
    """What a request may make the server fetch; the default fetches nothing but `data:` URIs."""

    allowed_domains: tuple[str, ...] = ()
    allowed_local_path: str | None = None
    max_bytes: int = 20 * 2**20
    max_redirects: int = 3
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    allowed_networks: tuple[str, ...] = ()


class FetchError(OmnifuseInputError):
    """A media URL the server refuses or fails to fetch (the reason says which)."""


def fetch_media(url: str, policy: FetchPolicy) -> bytes:
    """The bytes behind `url`: a `data:` URI is decoded; other schemes are refused here."""
    if not isinstance(url, str):
        raise FetchError(f"a media URL must be a string, got {type(url).__name__}")
    if url[:5].lower() != "data:":
        scheme = url.split(":", 1)[0][:20] if ":" in url else "a local path"
        raise FetchError(f"fetching {scheme!s} URLs is not enabled on this server; send the medium as a data: URI")
    try:
        return read_source_bytes(url, kind="media", limits=MediaLimits(max_bytes=policy.max_bytes))
    except MediaError as err:
        raise FetchError(err.reason) from err
