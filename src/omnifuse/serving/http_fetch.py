"""Fetching an http(s) media URL under a `FetchPolicy`: every hop checked, connected to what was checked.

Per hop: parse strictly (`urls`), match the host against the allowed domains, resolve it once, refuse the
hop if any resolved address is refused (`addresses`), connect only to those checked addresses
(`pinned_network`), then follow a redirect by starting over with the new URL. Bodies are read in chunks
and abandoned as soon as they pass the byte cap; a Content-Length over the cap is refused before reading.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

import certifi
import httpcore

from omnifuse.serving.addresses import refusal_reason
from omnifuse.serving.fetch_policy import FetchError, FetchPolicy
from omnifuse.serving.pinned_network import PinnedBackend
from omnifuse.serving.urls import HttpUrl, check_url_characters, host_is_allowed, parse_http_url, url_scheme

_REDIRECTS = {301, 302, 303, 307, 308}
_USER_AGENT = "omnifuse-media-fetch/1"
# getaddrinfo has no timeout of its own: lookups run here so a fetch can stop waiting for one.
_LOOKUPS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="omnifuse-dns")


def fetch_http(url: str, policy: FetchPolicy) -> bytes:
    """GET ``url`` and return its body, following at most ``policy.max_redirects`` checked redirects."""
    deadline = time.monotonic() + policy.total_timeout
    current = parse_http_url(url)
    for _hop in range(policy.max_redirects + 1):
        addresses = checked_addresses(current, policy, deadline)
        outcome = _get_once(current, addresses, policy, deadline)
        if isinstance(outcome, bytes):
            return outcome
        current = redirect_target(current, outcome)
    raise FetchError(f"media URL {_text(url)} redirected more than {policy.max_redirects} times (max_redirects)")


def checked_addresses(url: HttpUrl, policy: FetchPolicy, deadline: float) -> list[str]:
    """The addresses ``url``'s host resolves to, once all of them passed the checks; else a `FetchError`."""
    if not host_is_allowed(url.host, policy.domain_rules):
        raise FetchError(
            f"media URL {_text(url)} refused: host {url.host!r} is not in the allowed media domains "
            "(allowed_domains / --allowed-media-domains)"
        )
    literal = url.is_ip_literal
    addresses = [url.host] if literal else _resolve(url, policy, deadline)
    for address in addresses:
        why = refusal_reason(address, policy.networks)
        if why:
            # A resolved address is not echoed back: split-horizon DNS would leak internal addresses.
            subject = f"{address} is" if literal else f"host {url.host!r} resolves to"
            raise FetchError(f"media URL {_text(url)} refused: {subject} {why}")
    return addresses


def _resolve(url: HttpUrl, policy: FetchPolicy, deadline: float) -> list[str]:
    resolver = policy.resolver or system_resolver
    wait = min(policy.connect_timeout, max(deadline - time.monotonic(), 0.0))
    lookup = _LOOKUPS.submit(resolver, url.host, url.port)
    try:
        answers = list(lookup.result(timeout=wait))
    except FutureTimeout as error:
        raise FetchError(f"media URL {_text(url)}: resolving {url.host!r} timed out after {wait:.1f} s") from error
    except OSError as error:
        raise FetchError(f"media URL {_text(url)}: cannot resolve host {url.host!r}") from error
    addresses = []
    for answer in answers:
        try:
            address = ipaddress.ip_address(answer).compressed
        except ValueError as error:
            raise FetchError(f"media URL {_text(url)}: the resolver returned {answer!r}, not an IP") from error
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise FetchError(f"media URL {_text(url)}: host {url.host!r} has no addresses")
    return addresses


def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer for ``host``: IPv4 and IPv6 addresses, without IPv4-mapped duplicates."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]).partition("%")[0] for info in infos]


def _get_once(url: HttpUrl, addresses: list[str], policy: FetchPolicy, deadline: float) -> bytes | str:
    """One request: the body of a 2xx answer, or the Location of a redirect."""
    backend = PinnedBackend(url.host, addresses, deadline)
    timeouts = {
        "connect": policy.connect_timeout,
        "read": policy.read_timeout,
        "write": policy.read_timeout,
        "pool": policy.connect_timeout,
    }
    request_url = httpcore.URL(scheme=url.scheme, host=url.host, port=url.port, target=url.target)
    headers = [
        ("Host", url.host_header),
        ("User-Agent", _USER_AGENT),
        ("Accept", "*/*"),
        ("Accept-Encoding", "identity"),
        ("Connection", "close"),
    ]
    pool = httpcore.ConnectionPool(
        ssl_context=_ssl_context(policy.ca_file), network_backend=backend, max_connections=1, retries=0
    )
    try:
        with pool, pool.stream("GET", request_url, headers=headers, extensions={"timeout": timeouts}) as response:
            if response.status in _REDIRECTS:
                return _location(response, url)
            if not 200 <= response.status < 300:
                raise FetchError(f"media URL {_text(url)}: the server answered HTTP {response.status}")
            return _read_capped(response, url, policy.max_bytes)
    except httpcore.TimeoutException as error:
        limit = "total_timeout" if time.monotonic() >= deadline else "connect_timeout / read_timeout"
        raise FetchError(f"media URL {_text(url)}: timed out ({limit})") from error
    except (httpcore.NetworkError, httpcore.ProtocolError) as error:
        raise FetchError(f"media URL {_text(url)}: the download failed ({_reason(error)})") from error


def _location(response: httpcore.Response, url: HttpUrl) -> str:
    for name, value in response.headers:
        if name.lower() == b"location":
            return value.decode("latin-1")
    raise FetchError(f"media URL {_text(url)}: HTTP {response.status} redirect without a Location")


def redirect_target(current: HttpUrl, location: str) -> HttpUrl:
    """The next hop's URL: ``location`` resolved against ``current``, with the same strict checks."""
    check_url_characters(location)
    scheme = url_scheme(location)
    if scheme is not None and scheme not in ("http", "https"):
        raise FetchError(f"media URL {_text(current)} redirected to a {scheme}: URL; only http(s) is followed")
    return parse_http_url(urllib.parse.urljoin(str(current), location))


def _read_capped(response: httpcore.Response, url: HttpUrl, max_bytes: int) -> bytes:
    declared = _content_length(response, url)
    if declared is not None and declared > max_bytes:
        raise FetchError(f"media URL {_text(url)} is {declared} bytes, over the limit of {max_bytes} (max_bytes)")
    chunks, total = [], 0
    for chunk in response.iter_stream():
        total += len(chunk)
        if total > max_bytes:  # stop reading now, not after the whole body arrived
            raise FetchError(f"media URL {_text(url)} is over the limit of {max_bytes} bytes (max_bytes)")
        chunks.append(chunk)
    if not total:
        raise FetchError(f"media URL {_text(url)}: the server sent an empty body")
    return b"".join(chunks)


def _content_length(response: httpcore.Response, url: HttpUrl) -> int | None:
    values = {value.strip() for name, value in response.headers if name.lower() == b"content-length"}
    if not values:
        return None
    if len(values) > 1 or not all(value.isdigit() for value in values):
        raise FetchError(f"media URL {_text(url)}: the server sent a malformed Content-Length")
    return int(values.pop())


@functools.lru_cache(maxsize=8)
def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    # Hostname checking stays on: the certificate must name the URL's host, not the dialled address.
    return ssl.create_default_context(cafile=ca_file or certifi.where())


def _reason(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _text(url: HttpUrl | str) -> str:
    text = str(url)
    return repr(text if len(text) <= 100 else text[:97] + "...")


__all__ = ["checked_addresses", "fetch_http", "redirect_target", "system_resolver"]
