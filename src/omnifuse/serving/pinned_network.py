"""An httpcore network backend that dials only addresses already checked, within a total deadline.

httpcore would resolve the URL's host name again when it connects; a DNS server that answers with a
public address for the check and a private one for the connection (DNS rebinding) would then win. This
backend ignores that second lookup and connects to the checked IP addresses, while httpcore keeps using
the host name for the Host header, TLS SNI and certificate verification.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpcore

SocketOption = Any


class PinnedBackend(httpcore.SyncBackend):
    """Connects ``host`` to one of ``addresses`` (tried in order), never to anything else.

    ``connected`` records the address each connection went to.

    Example:
        >>> backend = PinnedBackend("media.test", ["127.0.0.1"], deadline=time.monotonic() + 5)
        >>> backend.connected
        []
    """

    def __init__(self, host: str, addresses: Iterable[str], deadline: float) -> None:
        self.host, self.addresses, self.deadline = host, list(addresses), deadline
        self.connected: list[str] = []

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        if host != self.host:  # a guard: the pool only ever asks for the URL's own host
            raise httpcore.ConnectError(f"refusing to connect to {host!r}: only {self.host!r} was checked")
        error: Exception = httpcore.ConnectError(f"no checked address for {host!r}")
        for address in self.addresses:
            try:
                stream = super().connect_tcp(
                    address, port, clamp_timeout(timeout, self.deadline), local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as failure:
                error = failure
                continue
            self.connected.append(address)
            return DeadlineStream(stream, self.deadline)
        raise error

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[SocketOption] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are never used for media fetching")


class DeadlineStream(httpcore.NetworkStream):
    """A stream whose every read and write waits no longer than the time left before the deadline."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self.stream, self.deadline = stream, deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, clamp_timeout(timeout, self.deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.stream.write(buffer, clamp_timeout(timeout, self.deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self.stream.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self.stream.start_tls(ssl_context, server_hostname, clamp_timeout(timeout, self.deadline))
        return DeadlineStream(tls, self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


def clamp_timeout(timeout: float | None, deadline: float, expired: type[Exception] = httpcore.ConnectTimeout) -> float:
    """``timeout`` shortened to the time left before ``deadline``; raises ``expired`` once it has passed."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the total time limit for fetching (total_timeout) was reached")
    return left if timeout is None else min(timeout, left)


__all__ = ["DeadlineStream", "PinnedBackend", "clamp_timeout"]
