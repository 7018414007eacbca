"""Safe media fetching for the server: ``data:`` URIs always, http(s) and local files only as a policy allows.

This is the one place where a media reference from an API request becomes bytes. It is closed by
default: `FetchPolicy()` accepts only ``data:`` URIs. See `http_fetch` for the network rules (allowed
domains, address checks on every redirect hop, no DNS rebinding, timeouts, byte cap while streaming)
and `local_files` for files (below one folder, after resolving symlinks and ``..``).
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from omnifuse.serving.fetch_policy import FetchError, FetchPolicy, Resolver
from omnifuse.serving.http_fetch import fetch_http
from omnifuse.serving.local_files import read_local_media
from omnifuse.serving.urls import url_scheme


def fetch_media(url: str, policy: FetchPolicy) -> bytes:
    """The bytes behind a media reference: a ``data:`` URI, an http(s) URL, or a local path / ``file://`` URL.

    Raises `FetchError` (a user-input error; the server answers 400) when the policy refuses the reference
    or the fetch fails. It blocks for up to ``policy.total_timeout``: from async code, call it through
    ``await asyncio.to_thread(fetch_media, url, policy)``.

    Example:
        >>> fetch_media("data:image/png;base64,iVBORw0K", FetchPolicy())
        b'\\x89PNG\\r\\n'
        >>> try:
        ...     fetch_media("http://169.254.169.254/", FetchPolicy(allowed_domains=("169.254.169.254",)))
        ... except FetchError as error:
        ...     print(str(error)[:76])
        media URL 'http://169.254.169.254/' refused: 169.254.169.254 is a link-local
    """
    if not isinstance(url, str) or not url:
        raise FetchError(f"a media reference must be a non-empty string, got {type(url).__name__}")
    scheme = url_scheme(url)
    if scheme == "data":
        return decode_data_uri(url, policy.max_bytes)
    if scheme in ("http", "https"):
        return fetch_http(url, policy)
    if scheme == "file" or (scheme is None and "://" not in url):
        return read_local_media(url, policy)
    shown = repr(url[:60] + ("..." if len(url) > 60 else ""))
    raise FetchError(f"media reference {shown}: unsupported URL scheme; use data:, http(s):// or a local path")


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    """Decode a ``data:[<type>][;base64],<payload>`` URI, refusing it before decoding when it is too large.

    Example:
        >>> decode_data_uri("data:text/plain,a%20b", max_bytes=10), decode_data_uri("data:;base64,aGk=", 10)
        (b'a b', b'hi')
    """
    header, comma, payload = uri[5:].partition(",")
    if not comma:
        raise FetchError("malformed data: URI (no ',' before the payload)")
    if header.split(";")[-1].strip().lower() == "base64":
        data = _decode_base64(payload, max_bytes)
    else:
        if len(payload) > 3 * max_bytes:  # each byte takes at most 3 characters ("%41")
            raise FetchError(f"data: URI is over the limit of {max_bytes} bytes (max_bytes)")
        data = urllib.parse.unquote_to_bytes(payload)
    if len(data) > max_bytes:
        raise FetchError(f"data: URI is {len(data)} bytes, over the limit of {max_bytes} (max_bytes)")
    if not data:
        raise FetchError("data: URI is empty (0 bytes)")
    return data


def _decode_base64(payload: str, max_bytes: int) -> bytes:
    if len(payload) > 2 * max_bytes + 1024:  # cheap bound before copying: allows for line breaks
        raise FetchError(f"data: URI is over the limit of {max_bytes} bytes (max_bytes)")
    text = "".join(payload.split())
    text += "=" * (-len(text) % 4)  # browsers accept unpadded base64
    if len(text) // 4 * 3 - text[-2:].count("=") > max_bytes:
        raise FetchError(f"data: URI decodes to about {len(text) // 4 * 3} bytes, over the limit of {max_bytes}")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise FetchError(f"data: URI has invalid base64: {error}") from error


__all__ = ["FetchError", "FetchPolicy", "Resolver", "decode_data_uri", "fetch_media"]
