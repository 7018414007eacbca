"""serving/fetch.py over HTTP: every refused case leaves the loopback test server's request log empty.

The server is a thread on 127.0.0.1 (and a second one on 127.0.0.2 playing the internal host an attacker
aims at). Positive cases reach it only through an explicit ``allowed_networks=("127.0.0.1/32",)`` and an
injected resolver mapping ``media.test`` to 127.0.0.1. A guard records every socket connect and every
DNS lookup: a test fails if anything but a loopback address was dialled or a real name was looked up.
"""

from __future__ import annotations

import contextlib
import http.server
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnifuse.errors import OmnifuseInputError
from omnifuse.serving.fetch import FetchError, FetchPolicy, fetch_media

MEDIA = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
BIG = 256 * 2**20  # what /big would send in full; the client must stop long before
CHUNK = 64 * 1024


class MediaHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LoopbackServer

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.server.log.append(
            {"path": self.path, "host": self.headers["Host"], "local": self.connection.getsockname()[0]}
        )
        route = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(route.query))
        route_handler = getattr(self, "route_" + route.path.strip("/").replace("-", "_").replace(".", "_"), None)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):  # the client hung up
            (route_handler or self.route_missing)(query)

    def send_body(self, body: bytes, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_media_png(self, query: dict) -> None:
        self.send_body(MEDIA)

    def route_missing(self, query: dict) -> None:
        self.send_body(b"not here", status=404)

    def route_redirect(self, query: dict) -> None:
        self.send_response(int(query.get("status", 302)))
        self.send_header("Location", query["to"])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_chain(self, query: dict) -> None:
        hops = int(query["n"])
        self.route_redirect({"to": f"/chain?n={hops - 1}"}) if hops else self.route_media_png(query)

    def route_slow(self, query: dict) -> None:
        time.sleep(2.0)
        self.send_body(MEDIA)

    def route_drip(self, query: dict) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        for _ in range(60):  # one byte every 50 ms: each read is quick, the whole body is not
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(0.05)

    def route_big(self, query: dict) -> None:
        self.send_response(200)
        declared = query.get("declare") == "1"
        self.send_header(*(("Content-Length", str(BIG)) if declared else ("Transfer-Encoding", "chunked")))
        self.end_headers()
        sent = 0
        try:
            while sent < BIG:
                self.wfile.write(bytes(CHUNK) if declared else b"%x\r\n%s\r\n" % (CHUNK, bytes(CHUNK)))
                sent += CHUNK
        finally:
            self.server.big_sent.append(sent)


class LoopbackServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: str, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address else socket.AF_INET
        super().__init__((address, port), MediaHandler)
        self.log: list[dict] = []
        self.big_sent: list[int] = []
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server_address[1]


class FakeDns:
    """A resolver for tests: answers from ``table``; a host's later lookups get ``rebind_to`` when given."""

    def __init__(self, table: dict[str, list[str]], rebind_to: dict[str, list[str]] | None = None) -> None:
        self.table, self.rebind_to, self.calls = table, rebind_to or {}, []

    def __call__(self, host: str, port: int) -> list[str]:
        seen = host in self.calls
        self.calls.append(host)
        return self.rebind_to[host] if seen and host in self.rebind_to else self.table[host]


@pytest.fixture(scope="module")
def server() -> Iterator[LoopbackServer]:
    main = LoopbackServer("127.0.0.1")
    yield main
    main.shutdown()


@pytest.fixture(scope="module")
def internal(server: LoopbackServer) -> Iterator[LoopbackServer]:
    """The host an attacker is after: 127.0.0.2, same port, never allowed."""
    other = LoopbackServer("127.0.0.2", server.port)
    yield other
    other.shutdown()


@pytest.fixture(autouse=True)
def network_guard(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[list[tuple]]:
    """Records every connect; refuses (and fails the test on) non-loopback connects and real DNS lookups."""
    for name in ("server", "internal"):
        if name in request.fixturenames:
            request.getfixturevalue(name).log.clear()
    connects: list[tuple] = []
    violations: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        connects.append(address)
        if not ipaddress.ip_address(address[0]).is_loopback:
            violations.append(f"connect to {address}")
            raise OSError("the test guard refused a non-loopback connection")
        return real_connect(sock, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            violations.append(f"DNS lookup of {host!r}")
            raise socket.gaierror("the test guard refused a real DNS lookup") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    yield connects
    assert violations == []


def media_policy(dns: FakeDns | None = None, **overrides: Any) -> FetchPolicy:
    """media.test -> 127.0.0.1, allowed explicitly; everything else default (closed)."""
    settings = {"allowed_domains": ("media.test",), "allowed_networks": ("127.0.0.1/32",)} | overrides
    return FetchPolicy(resolver=dns or FakeDns({"media.test": ["127.0.0.1"]}), **settings)


def refused(url: str, policy: FetchPolicy, *fragments: str) -> str:
    with pytest.raises(FetchError) as caught:
        fetch_media(url, policy)
    message = str(caught.value)
    assert all(fragment in message for fragment in fragments), message
    assert isinstance(caught.value, OmnifuseInputError) and "\n" not in message
    return message


# --- the positive paths: explicit opt-in reaches the loopback server, with the right Host header ----------


def test_allowed_domain_is_fetched_through_the_checked_address(server: LoopbackServer) -> None:
    dns = FakeDns({"media.test": ["127.0.0.1"]})
    assert fetch_media(f"http://media.test:{server.port}/media.png?x=1#frag", media_policy(dns)) == MEDIA
    assert server.log == [{"path": "/media.png?x=1", "host": f"media.test:{server.port}", "local": "127.0.0.1"}]
    assert dns.calls == ["media.test"]


@pytest.mark.parametrize("host", ["MEDIA.test", "media.test.", "ｍｅｄｉａ．ｔｅｓｔ"])
def test_host_spellings_reach_the_same_canonical_host(server: LoopbackServer, host: str) -> None:
    """Upper case, one trailing dot and IDNA (full-width) spellings are the host the checks saw."""
    assert fetch_media(f"http://{host}:{server.port}/media.png", media_policy()) == MEDIA
    assert server.log[0]["host"] == f"media.test:{server.port}"


@pytest.mark.parametrize("spelling", ["2130706433", "0x7f000001", "0x7f.1", "017700000001", "0177.0.0.1", "127.1"])
def test_ipv4_spellings_are_the_address_that_is_checked_and_dialled(server: LoopbackServer, spelling: str) -> None:
    """Allowed only as an opt-in, each spelling reaches 127.0.0.1: the parser and the connection agree."""
    policy = FetchPolicy(allowed_domains=("127.0.0.1",), allowed_networks=("127.0.0.1/32",))
    assert fetch_media(f"http://{spelling}:{server.port}/media.png", policy) == MEDIA
    assert server.log[0]["host"] == f"127.0.0.1:{server.port}"


def test_redirects_within_the_limit_are_followed(server: LoopbackServer) -> None:
    assert fetch_media(f"http://media.test:{server.port}/chain?n=3", media_policy()) == MEDIA
    assert [entry["path"] for entry in server.log] == ["/chain?n=3", "/chain?n=2", "/chain?n=1", "/chain?n=0"]


# --- addresses: every class refused, as a literal IP and through DNS, before any connection -----------

REFUSED_ADDRESSES = {
    "127.0.0.1": "loopback",
    "127.255.0.9": "loopback",
    "10.1.2.3": "private",
    "172.16.5.4": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "100.64.0.1": "carrier-grade NAT",
    "224.0.0.1": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "0.0.0.0": "unspecified",
    "192.0.2.10": "documentation",
    "198.18.0.1": "benchmarking",
    "::1": "loopback",
    "::": "unspecified",
    "::ffff:127.0.0.1": "IPv4-mapped",
    "::ffff:169.254.169.254": "IPv4-mapped",
    "::127.0.0.1": "IPv4-compatible",
    "fc00::1": "unique-local",
    "fd12:3456::1": "unique-local",
    "fe80::1": "link-local",
    "fec0::1": "site-local",
    "ff02::1": "multicast",
    "2002:7f00:1::1": "6to4 address embedding 127.0.0.1",
    "2002:a9fe:a9fe::1": "6to4 address embedding 169.254.169.254",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
    "64:ff9b::a00:1": "NAT64 address embedding 10.0.0.1",
}


def bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize(("address", "why"), REFUSED_ADDRESSES.items())
def test_literal_addresses_of_every_refused_class(address: str, why: str, network_guard: list) -> None:
    """Even listed in allowed_domains, a refused address is never connected to."""
    policy = FetchPolicy(allowed_domains=(bracketed(address),))
    refused(f"http://{bracketed(address)}:8080/latest/meta-data/", policy, "refused", why)
    assert network_guard == []


@pytest.mark.parametrize(("address", "why"), REFUSED_ADDRESSES.items())
def test_allowed_names_resolving_to_refused_addresses(address: str, why: str, network_guard: list) -> None:
    """An allowed domain whose DNS answer is internal is refused, and the address is not echoed."""
    dns = FakeDns({"media.test": [address]})
    message = refused("http://media.test/a.png", FetchPolicy(allowed_domains=("media.test",), resolver=dns), why)
    assert f"resolves to {address}" not in message and network_guard == []


def test_one_refused_answer_refuses_the_host(network_guard: list) -> None:
    """A public answer next to a private one does not get the host through (the client may pick either)."""
    dns = FakeDns({"media.test": ["93.184.216.34", "10.0.0.7"]})
    refused("http://media.test/a.png", FetchPolicy(allowed_domains=("media.test",), resolver=dns), "private")
    assert network_guard == []


@pytest.mark.parametrize(
    "spelling",
    [
        "2130706433",
        "0x7f000001",
        "0x7f.1",
        "017700000001",
        "127.1",
        "127.0.0.1.",
        "１２７．０．０．１",
        "0x7F.0.0.0x1",
        "[::ffff:7f00:1]",
    ],
)
def test_ipv4_spellings_of_loopback_are_refused(server: LoopbackServer, spelling: str) -> None:
    refused(f"http://{spelling}:{server.port}/media.png", FetchPolicy(allowed_domains=("127.0.0.1", "::ffff:7f00:1")))
    refused(f"http://{spelling}:{server.port}/media.png", FetchPolicy(allowed_domains=("allowed.test",)), "allowed")
    assert server.log == []


# --- URL tricks: refused at parsing, before the allowlist, DNS or any connection ----------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://media.test@127.0.0.1:{port}/media.png", "credentials"),
        ("http://127.0.0.1:{port}@media.test/media.png", "credentials"),
        ("http://user:pw@media.test:{port}/media.png", "credentials"),
        ("http://media.test\\@127.0.0.1:{port}/media.png", "backslash"),
        ("http://127.0.0.1:{port}\\@media.test/media.png", "backslash"),
        ("http://media.test:{port}\\media.png", "backslash"),
        ("http://%31%32%37.0.0.1:{port}/media.png", "percent-encoded"),
        ("http://media%2Etest:{port}/media.png", "percent-encoded"),
        ("http://media.test:{port}/media.png\r\nX-Injected: 1", "control"),
        ("http://media.test :{port}/media.png", "whitespace"),
        (" http://media.test:{port}/media.png", "unsupported"),
        ("http://media.test\t:{port}/media.png", "control"),
        ("http://media.test..:{port}/media.png", "not a valid host"),
        ("http://[::1%25lo]:{port}/media.png", "zone id"),
        ("http://256.0.0.1:{port}/media.png", "not a valid one"),
        ("http://1.2.3.4.5:{port}/media.png", "not a valid one"),
        ("http://media.test:0/media.png", "invalid port"),
        ("http://media.test:99999/media.png", "invalid port"),
        ("http:/media.test:{port}/media.png", "absolute"),
        ("ftp://media.test:{port}/media.png", "unsupported"),
        ("gopher://127.0.0.1:{port}/_GET", "unsupported"),
        ("javascript:alert(1)", "unsupported"),
        ("http://media.test:{port}/m\u00e9dia.png", "non-ASCII"),
    ],
)
def test_url_tricks_never_reach_the_server(server: LoopbackServer, network_guard: list, url: str, why: str) -> None:
    """The policy would allow media.test and 127.0.0.1: only the strict parsing stops these."""
    policy = media_policy(allowed_domains=("media.test", "127.0.0.1"))
    refused(url.format(port=server.port), policy, why)
    assert server.log == [] and network_guard == []


def test_closed_by_default(server: LoopbackServer, network_guard: list) -> None:
    """FetchPolicy() fetches nothing over the network and looks nothing up."""
    dns = FakeDns({"media.test": ["127.0.0.1"]})
    for url in (f"http://media.test:{server.port}/media.png", f"http://127.0.0.1:{server.port}/media.png"):
        refused(url, FetchPolicy(resolver=dns), "not in the allowed media domains")
    assert dns.calls == [] and server.log == [] and network_guard == []


def test_subdomain_rules_match_subdomains_only(server: LoopbackServer) -> None:
    dns = FakeDns({"img.media.test": ["127.0.0.1"], "media.test": ["127.0.0.1"], "evilmedia.test": ["127.0.0.1"]})
    policy = media_policy(dns, allowed_domains=(".media.test",))
    assert fetch_media(f"http://img.media.test:{server.port}/media.png", policy) == MEDIA
    for host in ("media.test", "evilmedia.test"):
        refused(f"http://{host}:{server.port}/media.png", policy, "not in the allowed media domains")
    assert len(server.log) == 1


# --- the vLLM media-fetching advisories of 2025-26 ------------------------------------------------------


def test_vllm_ssrf_to_internal_services(server: LoopbackServer, network_guard: list) -> None:
    """vLLM GHSA-3f6c-7fw2-ppm4 (CVE-2025-6242): MediaConnector fetched any http(s) URL, so a request could
    make the server call internal services and cloud metadata. Here nothing is fetched unless allowed."""
    for url in (
        f"http://127.0.0.1:{server.port}/media.png",
        "http://169.254.169.254/latest/meta-data/",
        f"http://localhost:{server.port}/media.png",
    ):
        refused(url, FetchPolicy(), "not in the allowed media domains")
    assert server.log == [] and network_guard == []


def test_vllm_ssrf_bypass_by_redirect(server: LoopbackServer, internal: LoopbackServer, network_guard: list) -> None:
    """The first bypass of the SSRF fix: the allowlist was checked on the first URL only, and redirects were
    followed unchecked, so an allowed host could bounce the fetch to an internal one. Every hop is checked."""
    to_internal = urllib.parse.quote(f"http://127.0.0.2:{server.port}/media.png", safe="")
    policy = media_policy(allowed_domains=("media.test", "127.0.0.2"))
    refused(f"http://media.test:{server.port}/redirect?to={to_internal}", policy, "127.0.0.2 is a loopback address")
    assert [entry["path"] for entry in server.log] == [f"/redirect?to={to_internal}"]
    assert internal.log == [] and len(network_guard) == 1


def test_vllm_ssrf_bypass_by_dns(server: LoopbackServer, internal: LoopbackServer, network_guard: list) -> None:
    """The second bypass: a name on the allowlist (or one the attacker controls) whose DNS answer is internal.
    The resolved addresses are checked, and the connection goes to the checked one (no rebinding)."""
    dns = FakeDns({"media.test": ["127.0.0.2"]})
    refused(f"http://media.test:{server.port}/media.png", media_policy(dns), "resolves to a loopback address")
    assert internal.log == [] and network_guard == []


def test_vllm_backslash_allowlist_bypass(server: LoopbackServer, internal: LoopbackServer) -> None:
    """vLLM CVE-2026-24779: the allowlist check and the HTTP client parsed backslashes differently, so
    ``http://allowed\\@internal/`` passed as "allowed" and fetched from "internal". Backslashes are refused."""
    dns = FakeDns({"media.test": ["127.0.0.1"], "internal.test": ["127.0.0.2"]})
    for url in (
        f"http://media.test\\@internal.test:{server.port}/media.png",
        f"http://internal.test:{server.port}\\@media.test/media.png",
        f"http://media.test:{server.port}\\\\internal.test/media.png",
    ):
        refused(url, media_policy(dns, allowed_networks=("127.0.0.0/8",)), "backslash")
    assert server.log == [] and internal.log == [] and dns.calls == []


# --- DNS rebinding: the address checked is the address dialled ------------------------------------------


def test_dns_rebinding_connects_to_the_checked_address(
    server: LoopbackServer, internal: LoopbackServer, network_guard: list
) -> None:
    """The resolver answers 127.0.0.1 (allowed) first and 127.0.0.2 (refused) afterwards, as a rebinding
    DNS server does between a check and a connect: the fetch resolves once and dials 127.0.0.1."""
    dns = FakeDns({"media.test": ["127.0.0.1"]}, rebind_to={"media.test": ["127.0.0.2"]})
    assert fetch_media(f"http://media.test:{server.port}/media.png", media_policy(dns)) == MEDIA
    assert dns.calls == ["media.test"]
    assert [address[0] for address in network_guard] == ["127.0.0.1"]
    assert server.log[0]["local"] == "127.0.0.1" and internal.log == []


def test_each_redirect_hop_is_resolved_and_checked_again(server: LoopbackServer, internal: LoopbackServer) -> None:
    dns = FakeDns({"media.test": ["127.0.0.1"]}, rebind_to={"media.test": ["127.0.0.2"]})
    to_self = urllib.parse.quote(f"http://media.test:{server.port}/media.png", safe="")
    refused(f"http://media.test:{server.port}/redirect?to={to_self}", media_policy(dns), "loopback")
    assert dns.calls == ["media.test", "media.test"] and len(server.log) == 1 and internal.log == []


# --- redirects ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "why"),
    [
        ("http://elsewhere.test:{port}/media.png", "not in the allowed media domains"),
        ("http://10.0.0.5/latest/meta-data/", "not in the allowed media domains"),
        ("http://internal.test/media.png", "resolves to a private address"),
        ("file:///etc/passwd", "redirected to a file: URL"),
        ("data:image/png;base64,iVBORw0K", "redirected to a data: URL"),
        ("gopher://127.0.0.1:{port}/_x", "redirected to a gopher: URL"),
        ("http://media.test:{port}\\@elsewhere.test/", "backslash"),
        ("http://x@media.test:{port}/media.png", "credentials"),
        ("//elsewhere.test/media.png", "not in the allowed media domains"),
    ],
)
def test_redirects_are_refused_like_first_urls(
    server: LoopbackServer, network_guard: list, location: str, why: str
) -> None:
    dns = FakeDns({"media.test": ["127.0.0.1"], "internal.test": ["10.0.0.5"], "elsewhere.test": ["127.0.0.1"]})
    to = urllib.parse.quote(location.format(port=server.port), safe="")
    refused(
        f"http://media.test:{server.port}/redirect?to={to}&status=307",
        media_policy(dns, allowed_domains=("media.test", "internal.test")),
        why,
    )
    assert len(server.log) == 1 and all(address[0] == "127.0.0.1" for address in network_guard)


def test_too_many_redirects(server: LoopbackServer) -> None:
    refused(f"http://media.test:{server.port}/chain?n=5", media_policy(max_redirects=3), "redirected more than 3 times")
    assert [entry["path"] for entry in server.log] == [f"/chain?n={n}" for n in (5, 4, 3, 2)]
    refused(f"http://media.test:{server.port}/chain?n=1", media_policy(max_redirects=0), "redirected more than 0 times")


def test_relative_redirects_stay_on_the_checked_host(server: LoopbackServer) -> None:
    to = urllib.parse.quote("media.png?from=redirect", safe="")
    assert fetch_media(f"http://media.test:{server.port}/redirect?to={to}", media_policy()) == MEDIA
    assert server.log[1] == {
        "path": "/media.png?from=redirect",
        "host": f"media.test:{server.port}",
        "local": "127.0.0.1",
    }


def test_http_errors_are_fetch_errors(server: LoopbackServer) -> None:
    refused(f"http://media.test:{server.port}/nothing-here", media_policy(), "HTTP 404")


# --- time and size limits -------------------------------------------------------------------------------


def test_slow_server_hits_the_read_timeout(server: LoopbackServer) -> None:
    start = time.monotonic()
    refused(f"http://media.test:{server.port}/slow", media_policy(read_timeout=0.3), "timed out")
    assert time.monotonic() - start < 1.5


def test_drip_feeding_server_hits_the_total_deadline(server: LoopbackServer) -> None:
    """One byte every 50 ms never trips the read timeout; the total deadline stops it."""
    start = time.monotonic()
    refused(f"http://media.test:{server.port}/drip", media_policy(read_timeout=1.0, total_timeout=0.5), "total_timeout")
    assert time.monotonic() - start < 2.0  # the drip alone would take 3 s


def test_slow_dns_hits_the_connect_timeout(server: LoopbackServer) -> None:
    def slow_resolver(host: str, port: int) -> list[str]:
        time.sleep(1.0)
        return ["127.0.0.1"]

    start = time.monotonic()
    policy = FetchPolicy(
        allowed_domains=("media.test",), allowed_networks=("127.0.0.1/32",), connect_timeout=0.2, resolver=slow_resolver
    )
    refused(f"http://media.test:{server.port}/media.png", policy, "timed out")
    assert time.monotonic() - start < 0.8 and server.log == []


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_body_over_the_cap_is_abandoned_while_streaming(server: LoopbackServer, declared: bool) -> None:
    """A 256 MiB body against a 256 KiB cap: refused up front on Content-Length, else as soon as the count
    passes the cap; the server's writes then fail after a few socket buffers, not after 256 MiB."""
    server.big_sent.clear()
    start = time.monotonic()
    refused(
        f"http://media.test:{server.port}/big?declare={int(declared)}",
        media_policy(max_bytes=256 * 1024),
        "over the limit of 262144",
    )
    assert time.monotonic() - start < 2.0
    deadline = time.monotonic() + 10
    while not server.big_sent and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.big_sent and server.big_sent[0] < 48 * 2**20 < BIG


def test_body_at_the_cap_is_accepted(server: LoopbackServer) -> None:
    assert fetch_media(f"http://media.test:{server.port}/media.png", media_policy(max_bytes=len(MEDIA))) == MEDIA
    refused(f"http://media.test:{server.port}/media.png", media_policy(max_bytes=len(MEDIA) - 1), "over the limit")


# --- https: connected to the checked IP, verified against the host name ---------------------------------


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    files = {}
    for name in ("media.test", "other.test"):
        key, cert = folder / f"{name}.key", folder / f"{name}.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                str(key),
                "-out",
                str(cert),
                "-days",
                "2",
                "-subj",
                f"/CN={name}",
                "-addext",
                f"subjectAltName=DNS:{name}",
            ],
            check=True,
            capture_output=True,
        )
        files[name], files[name + ".key"] = cert, key
    return files


@pytest.fixture(scope="module")
def tls_server(tls_files: dict[str, Path]) -> Iterator[LoopbackServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_files["media.test"], tls_files["media.test.key"])
    secure = LoopbackServer("127.0.0.1", tls=context)
    yield secure
    secure.shutdown()


def test_https_is_verified_against_the_host_name(tls_server: LoopbackServer, tls_files: dict[str, Path]) -> None:
    """The socket goes to the pinned 127.0.0.1 while SNI and the certificate check use media.test."""
    policy = media_policy(ca_file=str(tls_files["media.test"]))
    assert fetch_media(f"https://media.test:{tls_server.port}/media.png", policy) == MEDIA
    assert tls_server.log[-1]["host"] == f"media.test:{tls_server.port}"


def test_https_with_a_certificate_for_another_name_is_refused(
    tls_server: LoopbackServer, tls_files: dict[str, Path]
) -> None:
    tls_server.log.clear()
    refused(
        f"https://media.test:{tls_server.port}/media.png",
        media_policy(ca_file=str(tls_files["other.test"])),
        "the download failed",
    )
    policy = media_policy(allowed_domains=("127.0.0.1",), ca_file=str(tls_files["media.test"]))
    refused(f"https://127.0.0.1:{tls_server.port}/media.png", policy, "the download failed")  # cert names media.test
    assert tls_server.log == []


def test_connect_timeout(network_guard: list) -> None:
    """A listener whose accept queue is full drops new SYNs, so the connect hangs until connect_timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname())
    try:
        start = time.monotonic()
        port = listener.getsockname()[1]
        refused(f"http://media.test:{port}/media.png", media_policy(connect_timeout=0.3), "timed out")
        assert 0.25 < time.monotonic() - start < 1.5
    finally:
        filler.close()
        listener.close()


def test_ipv6_literal_and_resolved_hosts(network_guard: list) -> None:
    try:
        server6 = LoopbackServer("::1")
    except OSError as error:
        pytest.skip(f"no IPv6 loopback here: {error}")
    try:
        dns = FakeDns({"media6.test": ["::1"]})
        policy = FetchPolicy(allowed_domains=("[::1]", "media6.test"), allowed_networks=("::1/128",), resolver=dns)
        assert fetch_media(f"http://[::1]:{server6.port}/media.png", policy) == MEDIA
        assert fetch_media(f"http://media6.test:{server6.port}/media.png", policy) == MEDIA
        assert [entry["host"] for entry in server6.log] == [f"[::1]:{server6.port}", f"media6.test:{server6.port}"]
        refused(f"http://[::1]:{server6.port}/media.png", FetchPolicy(allowed_domains=("[::1]",)), "loopback")
        assert len(server6.log) == 2
    finally:
        server6.shutdown()
