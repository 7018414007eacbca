"""serving/urls.py, addresses.py and fetch_policy.py: URL parsing, host canonical forms, address classes,
policy validation. No sockets here; the HTTP behaviour is tested in test_fetch.py."""

from __future__ import annotations

import doctest
import ipaddress
import time

import httpcore
import pytest

from omnifuse.errors import UsageError
from omnifuse.serving import addresses, fetch, fetch_policy, http_fetch, local_files, pinned_network, urls
from omnifuse.serving.addresses import refusal_reason
from omnifuse.serving.fetch_policy import FetchError, FetchPolicy
from omnifuse.serving.pinned_network import PinnedBackend, clamp_timeout
from omnifuse.serving.urls import HttpUrl, canonical_host, host_is_allowed, parse_http_url


@pytest.mark.parametrize("module", [addresses, fetch, fetch_policy, http_fetch, local_files, pinned_network, urls])
def test_docstring_examples_hold(module: object) -> None:
    assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize(
    ("text", "host"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.de", "xn--bcher-kva.de"),
        ("ＥＸＡＭＰＬＥ。com", "example.com"),  # full-width letters and an ideographic full stop
        ("ex\u00adample.com", "example.com"),  # a soft hyphen is mapped away by IDNA
        ("under_score.test", "under_score.test"),
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("0x", "0.0.0.0"),
        ("169.254.43518", "169.254.169.254"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
        ("１６９．２５４．１６９．２５４", "169.254.169.254"),
        ("1.2.3.4.", "1.2.3.4"),
        ("::FFFF:127.0.0.1", "::ffff:7f00:1"),
        ("0:0:0:0:0:0:0:1", "::1"),
    ],
)
def test_canonical_host(text: str, host: str) -> None:
    assert canonical_host(text) == host


@pytest.mark.parametrize(
    "text",
    [
        "",
        ".",
        "a..b",
        "example.com..",
        "-bad.test",
        "bad-.test",
        "a" * 64 + ".test",
        "%65xample.com",
        "exa mple.com",
        "256.1.1.1",
        "1.2.3.4.5",
        "0x1g.1",
        "08.1.1.1",
        "1.2.3.256",
        "1.16777216",
        "4294967296",
        "a/b",
        "a@b",
        "fe80::1%eth0",
        "::g",
        "ex:ample",
    ],
)
def test_invalid_hosts_are_refused(text: str) -> None:
    with pytest.raises(FetchError):
        canonical_host(text)


def test_parse_http_url_parts() -> None:
    assert parse_http_url("https://Media.Test./a/b.png?x=1&y=%20#frag") == HttpUrl(
        "https", "media.test", 443, "/a/b.png?x=1&y=%20"
    )
    assert parse_http_url("http://[::1]:8080?q") == HttpUrl("http", "::1", 8080, "/?q")
    assert parse_http_url("http://[::1]:8080?q").host_header == "[::1]:8080"
    assert str(parse_http_url("HTTP://0x7f.1:80")) == "http://127.0.0.1/"
    assert parse_http_url("http://example.com:0080/").port == 80


@pytest.mark.parametrize(
    "url",
    [
        "http://a@b/",
        "http://:@b/",
        "http://b\\c/",
        "http://b/\\",
        "http://b/\x00",
        "http://b/\x7f",
        "http://b/ c",
        "http://b\n/",
        "http://[::1/",
        "http://[::1]x/",
        "http://[1.2.3.4]/",
        "http://b:/",
        "http://b:-1/",
        "http://b:65536/",
        "http://b:1:2/",
        "http:b/",
        "https:/b/",
        "file:///etc/passwd",
        "http://b/\u00e9",
        "http://" + "a" * 9000 + ".test/",
        "http:///x",
    ],
)
def test_ambiguous_urls_are_refused(url: str) -> None:
    with pytest.raises(FetchError):
        parse_http_url(url)


def test_domain_rules() -> None:
    policy = FetchPolicy(
        allowed_domains=("Upload.Wikimedia.org.", "*.GitHubUserContent.com", ".cdn.test", "[::1]", "bücher.de")
    )
    assert policy.domain_rules == (
        "upload.wikimedia.org",
        ".githubusercontent.com",
        ".cdn.test",
        "::1",
        "xn--bcher-kva.de",
    )
    assert host_is_allowed("raw.githubusercontent.com", policy.domain_rules)
    assert not host_is_allowed("githubusercontent.com", policy.domain_rules)
    assert not host_is_allowed("evilgithubusercontent.com", policy.domain_rules)
    assert not host_is_allowed("upload.wikimedia.org.evil.test", policy.domain_rules)
    assert host_is_allowed("::1", policy.domain_rules)


def test_policy_validation() -> None:
    assert FetchPolicy(allowed_domains="example.com").allowed_domains == ("example.com",)  # not 11 letters
    assert FetchPolicy(allowed_networks=["10.0.0.0/8"]).networks == (ipaddress.ip_network("10.0.0.0/8"),)
    for bad in (
        {"allowed_networks": ("10.0.0.1/8",)},
        {"allowed_networks": ("ten",)},
        {"allowed_domains": ("exa mple.com",)},
        {"allowed_domains": (".10.0.0.1",)},
        {"max_bytes": 0},
        {"max_redirects": -1},
        {"read_timeout": 0},
        {"total_timeout": -1.0},
        {"ca_file": "/nonexistent/ca.pem"},
    ):
        with pytest.raises(UsageError):
            FetchPolicy(**bad)


def test_policy_is_hashable_and_compares_by_its_settings() -> None:
    assert FetchPolicy(max_bytes=5) == FetchPolicy(max_bytes=5, resolver=lambda host, port: [])
    assert len({FetchPolicy(), FetchPolicy()}) == 1


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "2606:4700:4700::1111",
        "2a00:1450:4001:82a::200e",
        "2002:808:808::1",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal_reason(address) is None


def test_allowed_networks_opt_back_in_but_never_for_unspecified_or_multicast() -> None:
    nets = [ipaddress.ip_network(net) for net in ("10.0.0.0/8", "127.0.0.1/32", "fd00::/8", "0.0.0.0/0")]
    assert refusal_reason("10.20.30.40", nets) is None
    assert refusal_reason("fd00::5", nets) is None
    assert refusal_reason("0.0.0.0", nets) == "an unspecified address (0.0.0.0 or ::)"
    assert refusal_reason("224.0.0.251", nets) == "a multicast address"
    assert "IPv4-mapped" in refusal_reason("::ffff:127.0.0.1", nets)  # an IPv4 network does not cover it


def test_pinned_backend_dials_nothing_but_the_checked_host() -> None:
    backend = PinnedBackend("media.test", ["127.0.0.1"], deadline=time.monotonic() + 5)
    with pytest.raises(httpcore.ConnectError, match="only 'media.test' was checked"):
        backend.connect_tcp("internal.test", 80)
    with pytest.raises(httpcore.ConnectError):
        backend.connect_unix_socket("/var/run/docker.sock")
    assert backend.connected == []


def test_deadline_clamps_every_wait() -> None:
    now = time.monotonic()
    assert clamp_timeout(None, now + 1.0) <= 1.0
    assert clamp_timeout(10.0, now + 1.0) <= 1.0
    assert clamp_timeout(0.1, now + 1.0) == 0.1
    with pytest.raises(httpcore.ReadTimeout, match="total_timeout"):
        clamp_timeout(5.0, now - 0.01, httpcore.ReadTimeout)
