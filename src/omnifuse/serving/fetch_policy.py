"""What media fetching may reach (`FetchPolicy`) and the error a refused or failed fetch raises (`FetchError`).

Closed by default: a `FetchPolicy()` allows only ``data:`` URIs. Domains, networks and a local folder are
opened one by one, explicitly.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omnifuse.errors import OmnifuseInputError, UsageError

Resolver = Callable[[str, int], Sequence[str]]
"""Maps (host, port) to the IP address strings it resolves to; the default asks the system's resolver."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class FetchError(OmnifuseInputError):
    """A media URL or path that was refused or could not be fetched; `str(err)` says which and why.

    Example:
        >>> str(FetchError("media URL 'http://10.0.0.1/a.png': 10.0.0.1 is a private address"))
        "media URL 'http://10.0.0.1/a.png': 10.0.0.1 is a private address"
    """


@dataclass(frozen=True)
class FetchPolicy:
    """Where media may come from, and how much and how long fetching may take.

    ``allowed_domains`` entries are exact hosts (``cdn.example.com``, an IP literal) or ``.example.com`` /
    ``*.example.com`` for every subdomain of example.com (not example.com itself). ``allowed_networks``
    opts addresses that are refused by default (private, loopback, ...) back in, e.g. an internal media
    server. ``resolver`` replaces the system's DNS lookup (tests, custom DNS).

    Example:
        >>> policy = FetchPolicy(allowed_domains=("upload.wikimedia.org", ".githubusercontent.com"))
        >>> policy.max_redirects
        3
    """

    allowed_domains: tuple[str, ...] = ()
    allowed_local_path: str | None = None
    max_bytes: int = 20 * 2**20
    max_redirects: int = 3
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    allowed_networks: tuple[str, ...] = ()
    total_timeout: float = 30.0  # the whole fetch, redirects included: a slow drip cannot hold a worker longer
    ca_file: str | None = None  # a CA bundle for https (an internal CA); certifi's bundle by default
    resolver: Resolver | None = field(default=None, repr=False, compare=False)
    domain_rules: tuple[str, ...] = field(init=False, repr=False, compare=False)
    networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("allowed_domains", "allowed_networks"):
            value = getattr(self, name)
            # A bare string would otherwise be read as a tuple of one-character entries.
            object.__setattr__(self, name, (value,) if isinstance(value, str) else tuple(value))
        self._check_limits()
        object.__setattr__(self, "domain_rules", tuple(_domain_rule(entry) for entry in self.allowed_domains))
        object.__setattr__(self, "networks", tuple(_network(entry) for entry in self.allowed_networks))

    def _check_limits(self) -> None:
        if self.max_bytes <= 0:
            raise UsageError(f"FetchPolicy.max_bytes must be positive, got {self.max_bytes!r}")
        if self.max_redirects < 0:
            raise UsageError(f"FetchPolicy.max_redirects must be 0 or more, got {self.max_redirects!r}")
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            if not getattr(self, name) > 0:
                raise UsageError(f"FetchPolicy.{name} must be positive, got {getattr(self, name)!r}")
        if self.ca_file is not None and not os.path.isfile(self.ca_file):
            raise UsageError(f"FetchPolicy.ca_file {self.ca_file!r} is not a file")


def _domain_rule(entry: str) -> str:
    """Canonical form of an allowed-domains entry: a host, or ``.suffix`` for every subdomain."""
    from omnifuse.serving.urls import canonical_host  # urls raises FetchError, defined above

    text = entry.strip()
    wildcard = text.startswith((".", "*."))
    host_text = text[2:] if text.startswith("*.") else text[1:] if wildcard else text
    if host_text.startswith("[") and host_text.endswith("]"):
        host_text = host_text[1:-1]
    try:
        host = canonical_host(host_text)
    except FetchError as error:
        raise UsageError(f"allowed media domain {entry!r} is not a valid host name: {error}") from error
    if wildcard and _is_ip(host):
        raise UsageError(f"allowed media domain {entry!r}: a wildcard needs a domain name, not an IP address")
    return f".{host}" if wildcard else host


def _network(entry: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(entry.strip(), strict=True)
    except ValueError as error:
        raise UsageError(f"allowed network {entry!r} is not a CIDR network like 10.1.2.0/24: {error}") from error


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


__all__ = ["FetchError", "FetchPolicy", "Resolver"]
