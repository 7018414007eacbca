"""Strict parsing of http(s) media URLs into the exact parts the HTTP client is then given.

The client never parses the URL string itself: it receives the scheme, canonical host, port and target
computed here, so what was checked is what is requested. Anything a browser-style (WHATWG) parser and
Python's `urllib` could read differently is refused rather than guessed: backslashes, userinfo, control
characters and whitespace, percent-encoded hosts. Hosts are canonicalised as WHATWG does: IDNA mapping,
one trailing dot dropped, and every IPv4 spelling (``2130706433``, ``0x7f.1``, ``017700000001``,
``127.1``) turned into dotted decimal so that the address checks see the real address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna

from omnifuse.serving.fetch_policy import FetchError

MAX_URL_LENGTH = 8192
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_HEX = re.compile(r"0[xX][0-9a-fA-F]*")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class HttpUrl:
    """An http(s) URL split into the parts the client sends; ``host`` is canonical (see `canonical_host`).

    Example:
        >>> url = parse_http_url("HTTP://Media.Example.com.:8080/a b".replace(" ", "%20"))
        >>> (url.scheme, url.host, url.port, url.target, url.host_header)
        ('http', 'media.example.com', 8080, '/a%20b', 'media.example.com:8080')
    """

    scheme: str
    host: str
    port: int
    target: str

    @property
    def is_ip_literal(self) -> bool:
        return _ip_or_none(self.host) is not None

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.target}"


def url_scheme(text: str) -> str | None:
    """The lower-cased scheme of ``text`` (``"data"``, ``"https"``), or None when it has none."""
    match = _SCHEME.match(text)
    return match.group(1).lower() if match else None


def check_url_characters(url: str) -> None:
    """Refuse characters parsers disagree on: backslashes, controls, whitespace, non-ASCII outside the host."""
    if len(url) > MAX_URL_LENGTH:
        raise FetchError(f"media URL is {len(url)} characters long, over the limit of {MAX_URL_LENGTH}")
    for char in url:
        if char == "\\":
            raise FetchError(f"media URL {_quote(url)} contains a backslash, which URL parsers read differently")
        if ord(char) <= 0x20 or ord(char) == 0x7F:
            raise FetchError(f"media URL {_quote(url)} contains whitespace or a control character ({char!r})")


def parse_http_url(url: str) -> HttpUrl:
    """Split an absolute http(s) URL into canonical parts, refusing anything ambiguous.

    Example:
        >>> parse_http_url("http://0x7f.1/x").host
        '127.0.0.1'
    """
    check_url_characters(url)
    scheme = url_scheme(url)
    if scheme not in DEFAULT_PORTS or url[len(scheme) + 1 : len(scheme) + 3] != "//":
        raise FetchError(f"media URL {_quote(url)} is not an absolute http:// or https:// URL")
    rest = url[len(scheme) + 3 :]
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, target = rest[:end], rest[end:].partition("#")[0]
    if not target.isascii():
        raise FetchError(f"media URL {_quote(url)} has non-ASCII characters in its path; percent-encode them")
    if "@" in authority:
        raise FetchError(f"media URL {_quote(url)} contains user credentials ('@'), which are not accepted")
    host_text, port = _split_port(authority, scheme, url)
    target = target if target.startswith("/") else "/" + target  # "http://h?q" asks for "/?q"
    return HttpUrl(scheme, canonical_host(host_text), port, target)


def _split_port(authority: str, scheme: str, url: str) -> tuple[str, int]:
    if authority.startswith("["):
        close = authority.find("]")
        host_text, port_text = authority[1:close], authority[close + 1 :]
        if close < 0 or (port_text and not port_text.startswith(":")):
            raise FetchError(f"media URL {_quote(url)} has a malformed IPv6 host")
        if not host_text or ":" not in host_text:
            raise FetchError(f"media URL {_quote(url)} has a malformed IPv6 host")
    else:
        host_text, colon, port_text = authority.partition(":")
        port_text = colon + port_text
    if not port_text:
        return host_text, DEFAULT_PORTS[scheme]
    digits = port_text[1:]
    if not (digits.isascii() and digits.isdigit() and len(digits) <= 5 and 0 < int(digits) < 65536):
        raise FetchError(f"media URL {_quote(url)} has an invalid port {digits!r}")
    return host_text, int(digits)


def canonical_host(text: str) -> str:
    """The host as the connection will use it: lower-case ASCII, no trailing dot, IPs in standard form.

    Example:
        >>> [canonical_host(h) for h in ("2130706433", "0x7f.1", "017700000001", "127.1", "ＥＸＡＭＰＬＥ.com.")]
        ['127.0.0.1', '127.0.0.1', '127.0.0.1', '127.0.0.1', 'example.com']
    """
    if not text:
        raise FetchError("the URL has no host")
    if ":" in text:  # only bracketed hosts get here with a colon
        return _ipv6(text)
    if "%" in text:
        raise FetchError(f"percent-encoded host {_quote(text)} is not accepted")
    host = text.lower() if text.isascii() else _idna_to_ascii(text)
    host = host[:-1] if host.endswith(".") else host
    if _ends_in_number(host):
        return _whatwg_ipv4(host)
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise FetchError(f"host {_quote(text)} is not a valid host name")
    return host


def _ipv6(text: str) -> str:
    if "%" in text:
        raise FetchError(f"IPv6 host {_quote(text)} with a zone id is not accepted")
    try:
        return ipaddress.IPv6Address(text).compressed
    except ValueError as error:
        raise FetchError(f"host [{_quote(text)}] is not a valid IPv6 address") from error


def _idna_to_ascii(text: str) -> str:
    try:
        return idna.encode(text, uts46=True).decode("ascii").lower()
    except idna.IDNAError as error:
        raise FetchError(f"host {_quote(text)} is not a valid international domain name: {error}") from error


def _ends_in_number(host: str) -> bool:
    """WHATWG's rule: a host whose last label is a number is an IPv4 address (or invalid), never a name."""
    last = host.rpartition(".")[2]
    return bool(last) and (last.isascii() and last.isdigit() or _HEX.fullmatch(last) is not None)


def _whatwg_ipv4(host: str) -> str:
    """Parse any IPv4 spelling a browser accepts: 1-4 parts, each decimal, 0x-hex or 0-octal."""
    parts = host.split(".")
    numbers = [_ipv4_number(part, host) for part in parts] if len(parts) <= 4 else None
    if numbers is None or any(n > 255 for n in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        raise FetchError(f"host {_quote(host)} looks like an IPv4 address but is not a valid one")
    value = numbers[-1] + sum(n << (8 * (3 - i)) for i, n in enumerate(numbers[:-1]))
    return str(ipaddress.IPv4Address(value))


def _ipv4_number(part: str, host: str) -> int:
    try:
        if part[:2].lower() == "0x":
            return int(part[2:] or "0", 16)
        if len(part) > 1 and part.startswith("0"):
            return int(part, 8)
        if part.isdigit():
            return int(part)
    except ValueError:
        pass
    raise FetchError(f"host {_quote(host)} looks like an IPv4 address but is not a valid one")


def _ip_or_none(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def host_is_allowed(host: str, domain_rules: tuple[str, ...]) -> bool:
    """Whether a canonical host matches an allowed-domains rule: exact, or ``.suffix`` for subdomains.

    Example:
        >>> host_is_allowed("img.cdn.example.com", (".example.com",)), host_is_allowed("example.com", (".example.com",))
        (True, False)
    """
    return any(host == rule or (rule.startswith(".") and host.endswith(rule)) for rule in domain_rules)


def _quote(text: str, limit: int = 100) -> str:
    # Keep error messages one short line even for a huge hostile URL.
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


__all__ = ["HttpUrl", "canonical_host", "check_url_characters", "host_is_allowed", "parse_http_url", "url_scheme"]
