"""Which IP addresses a media fetch may connect to: public unicast only, unless a network is opted in.

The table below is written out instead of relying on `ipaddress.is_global` alone, whose answers differ
between Python releases (and which calls 6to4 addresses embedding 127.0.0.1, fec0::/10 and multicast
"global"); `is_global` is still checked last as a second net.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_REFUSED_V4 = [
    ("0.0.0.0/8", "an unspecified ('this network') address"),
    ("10.0.0.0/8", "a private address"),
    ("100.64.0.0/10", "a carrier-grade NAT (shared) address"),
    ("127.0.0.0/8", "a loopback address"),
    ("169.254.0.0/16", "a link-local address (cloud metadata lives at 169.254.169.254)"),
    ("172.16.0.0/12", "a private address"),
    ("192.0.0.0/24", "an IETF protocol address"),
    ("192.0.2.0/24", "a documentation address"),
    ("192.88.99.0/24", "a 6to4 relay address"),
    ("192.168.0.0/16", "a private address"),
    ("198.18.0.0/15", "a benchmarking address"),
    ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"),
    ("224.0.0.0/4", "a multicast address"),
    ("240.0.0.0/4", "a reserved address"),
]
_REFUSED_V6 = [
    ("::1/128", "a loopback address"),
    ("::ffff:0:0/96", "an IPv4-mapped IPv6 address"),
    ("::/96", "an IPv4-compatible IPv6 address"),
    ("::ffff:0:0:0/96", "an IPv4-translated IPv6 address"),
    ("64:ff9b:1::/48", "a local-use NAT64 address"),
    ("100::/64", "a discard-only address"),
    ("2001::/32", "a Teredo tunnel address"),
    ("2001:db8::/32", "a documentation address"),
    ("2001::/23", "an IETF protocol address"),
    ("3fff::/20", "a documentation address"),
    ("5f00::/16", "a segment-routing address"),
    ("fc00::/7", "a unique-local (private) IPv6 address"),
    ("fe80::/10", "a link-local address"),
    ("fec0::/10", "a site-local address"),
    ("ff00::/8", "a multicast address"),
]
_TABLE: list[tuple[IPNetwork, str]] = [(ipaddress.ip_network(net), why) for net, why in _REFUSED_V4 + _REFUSED_V6]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")


def refusal_reason(address: str | IPAddress, allowed_networks: Iterable[IPNetwork] = ()) -> str | None:
    """Why a fetch must not connect to ``address`` (e.g. "a loopback address"), or None when it may.

    Unspecified and multicast addresses are always refused; anything else inside ``allowed_networks``
    is allowed (an explicit opt-in, e.g. an internal media server).

    Example:
        >>> refusal_reason("169.254.169.254")
        'a link-local address (cloud metadata lives at 169.254.169.254)'
        >>> refusal_reason("127.0.0.1", [ipaddress.ip_network("127.0.0.1/32")]) is None
        True
    """
    ip = ipaddress.ip_address(address)
    if ip.is_unspecified:
        return "an unspecified address (0.0.0.0 or ::)"
    if ip.is_multicast:
        return "a multicast address"
    if any(ip.version == net.version and ip in net for net in allowed_networks):
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:  # a public host has a plain IPv4 record for that
        return f"an IPv4-mapped IPv6 address (embedding {ip.ipv4_mapped})"
    tunnel = _tunnelled_ipv4(ip)
    if tunnel is not None:  # judged by the IPv4 address it leads to (Python's is_global varies on these)
        label, inner = tunnel
        why = refusal_reason(inner)
        return f"{label} embedding {inner}, {why}" if why else None
    for network, why in _TABLE:
        if ip.version == network.version and ip in network:
            return why
    if not ip.is_global:
        return "not a globally routable address"
    return None


def _tunnelled_ipv4(ip: IPAddress) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address a 6to4 or NAT64 address carries, with a label for messages; None for others."""
    if ip.version == 6 and ip in _SIX_TO_FOUR and ip.sixtofour is not None:
        return "a 6to4 address", ip.sixtofour
    if ip.version == 6 and ip in _NAT64:
        return "a NAT64 address", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


__all__ = ["refusal_reason"]
