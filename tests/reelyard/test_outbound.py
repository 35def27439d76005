"""Outbound HTTP to caller-given URLs: public addresses only, pinned, bounded, one error tree.

Everything runs against real servers on loopback ports. Names of our own (``*.example``)
are answered by a stub of ``socket.getaddrinfo`` (the resolver the module uses), so a
public-looking name can lead to 127.0.0.1 and prove where the connection really goes.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import json
import pickle
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import httpx
import pytest

from reelyard.outbound import (
    MAX_REDIRECTS,
    Connections,
    FetchFailed,
    OutboundError,
    TimedOut,
    TooLarge,
    TooManyRedirects,
    UrlRefused,
    build_client,
    check_url,
    fetch_to_file,
    is_public,
    send,
    url_file_name,
)

PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64  # 16 KiB and a bit
BIG = b"x" * 300_000

# A test CA and a certificate for images.example signed by it, valid 2000-2099; made with
# `openssl ca` for these tests only (EC P-256), trusted by nothing else.
TEST_CA = """-----BEGIN CERTIFICATE-----
MIIBaTCCAQ+gAwIBAgIBATAKBggqhkjOPQQDAjAbMRkwFwYDVQQDDBByZWVseWFy
ZCB0ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIwOTkxMjMxMDAwMDAwWjAbMRkw
FwYDVQQDDBByZWVseWFyZCB0ZXN0IENBMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcD
QgAEjUVeU9lkNnzRNYivOZxSaswJi8GGw0P/Iyz3K/5SA1UrzuMlRmS5+kmFyDAa
Wnxpk1c6e0jBJiDwOCziryU5a6NCMEAwDwYDVR0TAQH/BAUwAwEB/zAOBgNVHQ8B
Af8EBAMCAQYwHQYDVR0OBBYEFJp3caoq1uYOQmo611VqL437UBC7MAoGCCqGSM49
BAMCA0gAMEUCIQCJ7rjnMWJYjc2FCFD3n58XMB7tZ80J7Z3DWEZIpfY87wIgNP0D
ZQLz7KvUgW5IIUpLaitqix/y6UclVrStw97RwgQ=
-----END CERTIFICATE-----
"""
IMAGES_EXAMPLE_CERT = """-----BEGIN CERTIFICATE-----
MIIBtjCCAV2gAwIBAgIBAjAKBggqhkjOPQQDAjAbMRkwFwYDVQQDDBByZWVseWFy
ZCB0ZXN0IENBMCAXDTAwMDEwMTAwMDAwMFoYDzIwOTkxMjMxMDAwMDAwWjAZMRcw
FQYDVQQDDA5pbWFnZXMuZXhhbXBsZTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IA
BKSiGJnOBPEYCvaNYlHzAZsB0gvH4hK/wSLIyO0e2AQ84NvyBZOfqtnejfOF6zWn
p4pBFKq03TTNynFQSanMQvSjgZEwgY4wDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8E
BAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwGQYDVR0RBBIwEIIOaW1hZ2VzLmV4
YW1wbGUwHQYDVR0OBBYEFKAnmsM3kb5okkLWwJ+OIY12n3VVMB8GA1UdIwQYMBaA
FJp3caoq1uYOQmo611VqL437UBC7MAoGCCqGSM49BAMCA0cAMEQCIDBW6t9ExSJ3
zcRxW+5X1zs15mb2a9/kMD2PzuOwEOJOAiAFTM4WvB5RK7RUEt1zMLxpoflwrllS
TCkMMdP3P40MNQ==
-----END CERTIFICATE-----
"""
IMAGES_EXAMPLE_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfzLJWMUnS8NOVWx/
ZoV7530kKuNdOpqLRNl2q0/8R5WhRANCAASkohiZzgTxGAr2jWJR8wGbAdILx+IS
v8EiyMjtHtgEPODb8gWTn6rZ3o3zhes1p6eKQRSqtN00zcpxUEmpzEL0
-----END PRIVATE KEY-----
"""


# a web server of our own


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Site:
    """``/files/<name>`` with a length; ``/chunked/<name>`` without; ``/hops/<n>/<name>``
    redirects n times; ``/to?<url>`` redirects there; ``/no-location`` is a 302 without
    one; ``/status/<code>``; ``/sleep`` waits 2 s before answering; ``/trickle`` sends
    a byte every 50 ms; ``/echo`` answers the request as JSON; ``/long`` 10 000 bytes."""

    scheme: str = "http"
    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            """The test output is for the tests."""

        def handle(self) -> None:
            with contextlib.suppress(OSError):  # the client hung up (it had enough)
                super().handle()

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            site.requests.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            path, _, query = self.path.partition("?")
            kind, _, rest = path.lstrip("/").partition("/")
            route = getattr(self, f"_route_{kind.replace('-', '_')}", None)
            if route is None:
                self._send(404, b"not here", "text/plain")
            else:
                route(rest, query, body)

        def _route_files(self, name: str, _query: str, _body: bytes) -> None:
            if name not in site.files:
                self._send(404, b"not here", "text/plain")
            else:
                self._send(200, site.files[name], "image/jpeg; charset=binary")

        def _route_chunked(self, name: str, _query: str, _body: bytes) -> None:
            self._chunked(site.files[name])

        def _route_hops(self, rest: str, _query: str, _body: bytes) -> None:
            count, _, name = rest.partition("/")
            if int(count) > 0:
                self._redirect(f"/hops/{int(count) - 1}/{name}")
            else:
                self._send(200, site.files[name], "image/jpeg")

        def _route_to(self, _rest: str, query: str, _body: bytes) -> None:
            self._redirect(unquote(query))

        def _route_no_location(self, _rest: str, _query: str, _body: bytes) -> None:
            self._send(302, b"", "text/plain")

        def _route_status(self, code: str, _query: str, _body: bytes) -> None:
            self._send(int(code), b"status page", "text/plain")

        def _route_sleep(self, _rest: str, _query: str, _body: bytes) -> None:
            time.sleep(2)
            self._send(200, b"late", "text/plain")

        def _route_trickle(self, _rest: str, _query: str, _body: bytes) -> None:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"1\r\nx\r\n")
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"0\r\n\r\n")

        def _route_echo(self, _rest: str, _query: str, body: bytes) -> None:
            echo = {"method": self.command, "headers": dict(self.headers.items())}
            echo["body"] = body.decode()
            self._send(200, json.dumps(echo).encode(), "application/json")

        def _route_long(self, _rest: str, _query: str, _body: bytes) -> None:
            self._send(200, b"y" * 10_000, "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _redirect(self, location: str) -> None:
            self.send_response(302)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _chunked(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for start in range(0, len(body), 16 * 1024):
                piece = body[start : start + 16 * 1024]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")

    return Handler


@contextlib.contextmanager
def serving(site: Site, tls: ssl.SSLContext | None = None) -> Iterator[Site]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        site.scheme = "https"
    site.port = server.server_port
    # a short poll interval: shutdown() waits for the next poll
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def site() -> Iterator[Site]:
    with serving(Site(files={"photo.jpg": PHOTO, "big.jpg": BIG})) as running:
        yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with build_client() as client:
        yield client


# names of our own


class FakeDns:
    """``socket.getaddrinfo`` for names of the tests' own; other names as usual.

    ``answer(name, [addresses], [addresses], ...)``: successive lookups get successive
    answers (the last one repeats), as a rebinding name server would give them.
    """

    def __init__(self, real: object) -> None:
        self.real = real
        self.answers: dict[str, list[list[str]]] = {}
        self.asked: list[str] = []

    def answer(self, name: str, *answers: list[str]) -> None:
        self.answers[name] = list(answers)

    def __call__(self, host, port, *args, **kwargs):
        if isinstance(host, bytes):
            host = host.decode()
        if host not in self.answers:
            return self.real(host, port, *args, **kwargs)
        self.asked.append(host)
        queue = self.answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        infos = []
        for text in addresses:
            address = ipaddress.ip_address(text)
            if address.version == 4:
                infos.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (text, port)))
            else:
                infos.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (text, port, 0, 0)))
        return infos


@pytest.fixture
def dns(monkeypatch) -> FakeDns:
    fake = FakeDns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


def fetch(client, url, *, max_bytes=1 << 20, timeout_s=5.0, allow_private=True, **options):
    target = io.BytesIO()
    fetched = fetch_to_file(
        client,
        url,
        target,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        allow_private=allow_private,
        **options,
    )
    return fetched, target.getvalue()


def refusal(exception, client, url, **options):
    target = io.BytesIO()
    with pytest.raises(exception) as caught:
        fetch_to_file(
            client,
            url,
            target,
            max_bytes=options.pop("max_bytes", 1 << 20),
            timeout_s=options.pop("timeout_s", 5.0),
            allow_private=options.pop("allow_private", True),
            **options,
        )
    return caught.value, target.getvalue()


# fetching


def test_a_file_is_fetched_with_its_name_size_and_type(http, site):
    fetched, body = fetch(http, site.url("/files/photo.jpg"))
    assert body == PHOTO
    assert (fetched.name, fetched.size) == ("photo.jpg", len(PHOTO))
    assert fetched.content_type == "image/jpeg"
    assert fetched.url == site.url("/files/photo.jpg")


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("http://example.com/a/b/photo%20one.jpg?size=large#top", "photo one.jpg"),
        ("http://example.com/a/b/", "download"),
        ("http://example.com", "download"),
        ("http://example.com/%E5%86%99%E7%9C%9F.png", "写真.png"),
    ],
)
def test_a_file_is_named_by_the_last_segment_of_its_path(url, name):
    assert url_file_name(url) == name


def test_a_declared_length_over_the_limit_is_refused_before_reading(http, site):
    error, written = refusal(TooLarge, http, site.url("/files/big.jpg"), max_bytes=100_000)
    assert written == b""
    assert error.limit == 100_000
    assert str(error) == "big.jpg is larger than 100000 bytes"
    assert not error.retryable


def test_a_body_without_a_length_is_cut_off_at_the_limit(http, site):
    error, written = refusal(TooLarge, http, site.url("/chunked/big.jpg"), max_bytes=100_000)
    assert 0 < len(written) <= 100_000
    assert "larger than 100000 bytes" in str(error)


def test_a_body_of_exactly_the_limit_is_whole(http, site):
    fetched, body = fetch(http, site.url("/chunked/big.jpg"), max_bytes=len(BIG))
    assert body == BIG
    assert fetched.size == len(BIG)


def test_a_redirect_is_not_followed_by_default(http, site):
    error, _ = refusal(FetchFailed, http, site.url("/hops/1/photo.jpg"))
    assert error.status == 302
    assert "redirect (not followed)" in str(error)
    assert [seen.path for seen in site.requests] == ["/hops/1/photo.jpg"]


def test_redirects_are_followed_up_to_the_limit_when_asked(http, site):
    url = site.url(f"/hops/{MAX_REDIRECTS}/photo.jpg")
    fetched, body = fetch(http, url, follow_redirects=True)
    assert body == PHOTO
    assert fetched.name == "photo.jpg"
    assert fetched.url == site.url("/hops/0/photo.jpg")
    assert len(site.requests) == MAX_REDIRECTS + 1


def test_one_redirect_more_than_the_limit_fails(http, site):
    url = site.url(f"/hops/{MAX_REDIRECTS + 1}/photo.jpg")
    error, _ = refusal(TooManyRedirects, http, url, follow_redirects=True)
    assert error.status == 302
    assert not error.retryable
    assert len(site.requests) == MAX_REDIRECTS + 1


def test_each_hop_is_resolved_and_named_on_its_own(http, site, dns):
    dns.answer("first.example", ["127.0.0.1"])
    dns.answer("second.example", ["127.0.0.1"])
    target = site.url("/files/photo.jpg", host="second.example")
    fetched, body = fetch(
        http, site.url(f"/to?{target}", host="first.example"), follow_redirects=True
    )
    assert body == PHOTO
    assert fetched.url == target
    assert dns.asked == ["first.example", "second.example"]
    assert [seen.headers["Host"] for seen in site.requests] == [
        f"first.example:{site.port}",
        f"second.example:{site.port}",
    ]


def test_a_redirect_to_a_private_address_is_refused_before_connecting(site, dns):
    # the first hop is public (answered by a mock, so nothing leaves the machine); the
    # redirect leads to a name that resolves to loopback, where the site is listening
    dns.answer("cdn.example", ["93.184.215.14"])
    dns.answer("internal.example", ["127.0.0.1"])
    seen = []

    def public_cdn(request):
        seen.append(request)
        location = site.url("/files/photo.jpg", host="internal.example")
        return httpx.Response(302, headers={"Location": location})

    with httpx.Client(transport=httpx.MockTransport(public_cdn)) as client:
        error, _ = refusal(
            UrlRefused,
            client,
            "http://cdn.example/photo.jpg",
            allow_private=False,
            follow_redirects=True,
        )
    assert str(error) == (
        "a redirect was refused: internal.example resolves to an address that is not public; "
        "refused"
    )
    assert error.url == "http://cdn.example/photo.jpg"
    (request,) = seen
    assert request.url.host == "93.184.215.14"
    assert request.headers["Host"] == "cdn.example"
    assert site.requests == []


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/photo.jpg"])
def test_a_redirect_to_another_scheme_is_refused(http, site, location):
    error, _ = refusal(UrlRefused, http, site.url(f"/to?{location}"), follow_redirects=True)
    assert str(error).startswith("a redirect was refused: only http and https")
    assert len(site.requests) == 1


def test_a_redirect_without_a_location_fails(http, site):
    error, _ = refusal(FetchFailed, http, site.url("/no-location"), follow_redirects=True)
    assert error.status == 302
    assert "without a Location" in str(error)


@pytest.mark.parametrize(
    ("status", "retryable"), [(404, False), (410, False), (429, True), (500, True), (503, True)]
)
def test_an_error_status_fails_with_the_status(http, site, status, retryable):
    error, written = refusal(FetchFailed, http, site.url(f"/status/{status}"))
    assert type(error) is FetchFailed
    assert error.status == status
    assert error.retryable is retryable
    assert str(error) == f"127.0.0.1 answered HTTP {status}"
    assert written == b""


def test_a_refused_connection_fails_without_a_status_and_may_be_retried(http):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    error, _ = refusal(FetchFailed, http, f"http://127.0.0.1:{port}/photo.jpg")
    assert error.status is None
    assert error.retryable
    assert str(error) == "cannot connect to 127.0.0.1"


def test_a_server_that_does_not_answer_times_out(http, site):
    started = time.monotonic()
    error, _ = refusal(TimedOut, http, site.url("/sleep"), timeout_s=0.3)
    assert time.monotonic() - started < 1.5
    assert error.retryable
    assert "within 0.3 s" in str(error)


def test_a_body_that_trickles_in_runs_into_the_deadline(http, site):
    # every byte comes well within the read timeout: only the overall deadline stops it
    started = time.monotonic()
    error, written = refusal(TimedOut, http, site.url("/trickle"), timeout_s=0.5)
    assert time.monotonic() - started < 1.5
    assert 0 < len(written) < 100
    assert "did not answer in full within 0.5 s" in str(error)


def test_the_clients_own_headers_auth_and_cookies_are_never_sent(site):
    with httpx.Client(
        headers={"Authorization": "Bearer upstream-secret", "X-Api-Key": "secret"},
        auth=("user", "password"),
        cookies={"session": "secret"},
    ) as client:
        fetch(client, site.url("/files/photo.jpg"))
    (request,) = site.requests
    assert "secret" not in json.dumps(request.headers)
    assert not {"Authorization", "X-Api-Key", "Cookie"} & set(request.headers)
    assert request.headers["Connection"] == "close"


@pytest.mark.parametrize(
    "error",
    [
        UrlRefused("refused", url="http://a.example/"),
        TooLarge("too large", limit=5, url="http://a.example/"),
        FetchFailed("failed", status=503, url="http://a.example/"),
        TimedOut("late", url="http://a.example/"),
        TooManyRedirects("loops", status=302, url="http://a.example/"),
    ],
)
def test_an_error_survives_pickling_with_its_fields(error):
    # Celery moves a task's exception between processes by pickling it
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 (our own bytes, just made)
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__


# which URLs and addresses


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/photo.jpg",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "127.0.0.1/photo.jpg",
        "http:///photo.jpg",
        "http://[::1/photo.jpg",
        "http://127.0.0.1:99999/photo.jpg",
        "http://127.0.0.1:port/photo.jpg",
        "http://user:password@127.0.0.1/photo.jpg",
        "http://127.0.0.1/\x00photo.jpg",
        "",
    ],
)
def test_anything_but_an_http_url_with_a_host_is_refused(http, site, url):
    error, _ = refusal(UrlRefused, http, url)
    assert error.url == url
    assert not error.retryable
    assert site.requests == []


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",  # noqa: S104 (an address under test, not a bind)
        "0.1.2.3",
        "10.1.2.3",
        "100.64.0.1",  # carrier-grade NAT
        "127.0.0.1",
        "127.255.255.254",
        "169.254.169.254",  # the cloud metadata service
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.1",
        "192.0.2.1",  # documentation
        "192.88.99.1",  # 6to4 relays
        "192.168.1.1",
        "198.18.0.1",  # benchmarking
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "::",
        "::1",
        "::127.0.0.1",  # IPv4-compatible
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::1",
        "100::1",  # discard
        "2001::1",  # Teredo
        "2001:db8::1",  # documentation
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a00:1::1",  # 6to4 of 10.0.0.1
        "fc00::1",
        "fd12:3456::1",  # unique local
        "fe80::1",  # link-local
        "fec0::1",  # site-local
        "ff02::1",  # multicast
    ],
)
def test_an_address_that_is_not_public_is_refused(address):
    assert is_public(ipaddress.ip_address(address)) is False
    host = f"[{address}]" if ":" in address else address
    with pytest.raises(UrlRefused, match="resolves to an address that is not public"):
        check_url(f"http://{host}/photo.jpg", allow_private=False)


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "93.184.215.14",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8 (what DNS64 answers on IPv6-only hosts)
        "2002:808:808::1",  # 6to4 of 8.8.8.8
    ],
)
def test_a_public_address_is_public(address):
    assert is_public(ipaddress.ip_address(address)) is True


def test_a_checked_url_is_pinned_to_its_address_and_keeps_its_name(dns):
    dns.answer("photos.example", ["93.184.215.14"])
    target = check_url("https://photos.example:8443/a/photo.jpg?x=1#frag", allow_private=False)
    assert target.address == ipaddress.ip_address("93.184.215.14")
    assert str(target.pinned_url) == "https://93.184.215.14:8443/a/photo.jpg?x=1"
    assert target.host_header == "photos.example:8443"
    assert target.sni_hostname == "photos.example"


def test_an_ip_literal_is_its_own_address_and_has_no_sni():
    target = check_url("https://[2606:4700:4700::1111]/photo.jpg", allow_private=False)
    assert target.pinned_url.host == "2606:4700:4700::1111"
    assert target.host_header == "[2606:4700:4700::1111]"
    assert target.sni_hostname is None


def test_a_public_looking_name_that_resolves_to_loopback_is_refused(http, site, dns):
    dns.answer("photos.example", ["127.0.0.1"])
    error, _ = refusal(
        UrlRefused, http, site.url("/files/photo.jpg", host="photos.example"), allow_private=False
    )
    assert str(error) == "photos.example resolves to an address that is not public; refused"
    assert "127.0.0.1" not in str(error)  # the caller learns nothing of our network
    assert site.requests == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(dns):
    dns.answer("mixed.example", ["93.184.215.14", "10.0.0.7"])
    with pytest.raises(UrlRefused, match="not public"):
        check_url("http://mixed.example/photo.jpg", allow_private=False)


def test_a_name_that_does_not_resolve_is_refused(http, dns):
    dns.answer("nowhere.example", [])
    error, _ = refusal(UrlRefused, http, "http://nowhere.example/photo.jpg")
    assert str(error) == "cannot resolve host 'nowhere.example'"
    assert isinstance(error.__cause__, socket.gaierror)


def test_private_addresses_are_allowed_when_asked(http, site, dns):
    dns.answer("photos.example", ["127.0.0.1"])
    _, body = fetch(http, site.url("/files/photo.jpg", host="photos.example"), allow_private=True)
    assert body == PHOTO


def test_the_name_is_resolved_once_and_a_rebinding_answer_is_never_used(http, site, dns):
    # the first answer is checked; a second lookup would lead elsewhere (192.0.2.1 is
    # unroutable: a connection there would time out, not reach the site)
    dns.answer("photos.example", ["127.0.0.1"], ["192.0.2.1"])
    url = site.url("/files/photo.jpg", host="photos.example")
    fetched, body = fetch(http, url, timeout_s=3)
    assert body == PHOTO
    assert dns.asked == ["photos.example"]
    (request,) = site.requests
    assert request.headers["Host"] == f"photos.example:{site.port}"
    assert fetched.url == url


# TLS: the address is pinned, the certificate is checked against the name


@pytest.fixture
def tls_site(tmp_path) -> Iterator[Site]:
    (tmp_path / "cert.pem").write_text(IMAGES_EXAMPLE_CERT)
    (tmp_path / "key.pem").write_text(IMAGES_EXAMPLE_KEY)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    site = Site(files={"photo.jpg": PHOTO})

    def remember(_socket: ssl.SSLObject, name: str | None, _context: ssl.SSLContext) -> None:
        site.server_names.append(name)

    context.sni_callback = remember
    with serving(site, tls=context) as running:
        yield running


@pytest.fixture
def trusting() -> ssl.SSLContext:
    return ssl.create_default_context(cadata=TEST_CA)


def test_https_goes_to_the_checked_address_with_the_name_in_sni(tls_site, trusting, dns):
    dns.answer("images.example", ["127.0.0.1"])
    with build_client(verify=trusting) as client:
        _, body = fetch(client, tls_site.url("/files/photo.jpg", host="images.example"))
    assert body == PHOTO
    assert tls_site.server_names == ["images.example"]
    assert tls_site.requests[0].headers["Host"] == f"images.example:{tls_site.port}"


def test_https_to_a_name_the_certificate_does_not_cover_fails(tls_site, trusting, dns):
    dns.answer("other.example", ["127.0.0.1"])
    with build_client(verify=trusting) as client:
        error, _ = refusal(FetchFailed, client, tls_site.url("/files/photo.jpg", "other.example"))
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error.__cause__)
    assert "CERTIFICATE" not in str(error)  # the message stays plain
    assert tls_site.requests == []


def test_a_connection_verified_for_one_name_is_not_reused_for_another(tls_site, trusting, dns):
    # a plain client that would keep connections alive: a pooled connection is known by
    # its address, so without "Connection: close" the second request would ride on the
    # first one's verified connection
    dns.answer("images.example", ["127.0.0.1"])
    dns.answer("other.example", ["127.0.0.1"])
    with httpx.Client(verify=trusting) as client:
        fetch(client, tls_site.url("/files/photo.jpg", host="images.example"))
        refusal(FetchFailed, client, tls_site.url("/files/photo.jpg", host="other.example"))
    assert len(tls_site.requests) == 1


# sending (webhooks)


def deliver(client, url, **options):
    return send(
        client,
        options.pop("method", "POST"),
        url,
        content=options.pop("content", b'{"type":"job.succeeded"}'),
        headers=options.pop("headers", {"Content-Type": "application/json"}),
        timeout_s=options.pop("timeout_s", 5.0),
        allow_private=options.pop("allow_private", True),
        **options,
    )


def test_send_delivers_the_body_and_headers_and_reads_the_reply(http, site):
    reply = deliver(http, site.url("/echo"), headers={"webhook-id": "msg_1"})
    assert reply.ok
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert not reply.truncated
    assert reply.elapsed_s > 0
    echo = json.loads(reply.body)
    assert echo["method"] == "POST"
    assert echo["body"] == '{"type":"job.succeeded"}'
    assert echo["headers"]["webhook-id"] == "msg_1"


def test_send_keeps_only_the_start_of_a_long_reply(http, site):
    reply = deliver(http, site.url("/long"), max_response_bytes=100)
    assert reply.body == b"y" * 100
    assert reply.truncated


@pytest.mark.parametrize("status", [400, 410, 500])
def test_send_answers_an_error_status_rather_than_raising(http, site, status):
    reply = deliver(http, site.url(f"/status/{status}"))
    assert (reply.status, reply.ok, reply.body) == (status, False, b"status page")


def test_send_never_follows_a_redirect(http, site):
    reply = deliver(http, site.url("/to?/echo"))
    assert reply.status == 302
    assert reply.headers["location"] == "/echo"
    assert [seen.path for seen in site.requests] == ["/to?/echo"]


def test_send_refuses_a_private_address_before_connecting(http, site):
    with pytest.raises(UrlRefused):
        deliver(http, site.url("/echo"), allow_private=False)
    assert site.requests == []


def test_send_keeps_the_host_of_the_url_whatever_the_headers_say(http, site, dns):
    dns.answer("hooks.example", ["127.0.0.1"])
    deliver(http, site.url("/echo", host="hooks.example"), headers={"host": "internal"})
    (request,) = site.requests
    assert request.headers["Host"] == f"hooks.example:{site.port}"


def test_send_times_out(http, site):
    with pytest.raises(TimedOut) as caught:
        deliver(http, site.url("/sleep"), timeout_s=0.3)
    assert isinstance(caught.value, OutboundError)
    assert caught.value.status is None


def test_connections_keep_one_alive_per_name_and_never_lend_it_to_another(tls_site, trusting, dns):
    dns.answer("images.example", ["127.0.0.1"])
    dns.answer("other.example", ["127.0.0.1"])
    connections = Connections(verify=trusting)
    try:
        for _ in range(3):
            assert deliver(connections, tls_site.url("/echo", host="images.example")).ok
        # one handshake for three calls: the connection was kept and reused
        assert tls_site.server_names == ["images.example"]
        assert tls_site.requests[0].headers["Connection"] == "keep-alive"
        # the same address under a name the certificate does not cover: a connection
        # of its own, whose verification fails (the kept one is not lent to it)
        with pytest.raises(FetchFailed):
            deliver(connections, tls_site.url("/echo", host="other.example"))
        assert tls_site.server_names == ["images.example", "other.example"]
        assert len(tls_site.requests) == 3
    finally:
        connections.close()


def test_connections_resolve_and_check_the_name_at_every_call(site, dns):
    dns.answer("hooks.example", ["127.0.0.1"], ["10.0.0.1"])
    connections = Connections()
    try:
        assert deliver(connections, site.url("/echo", host="hooks.example")).ok
        with pytest.raises(UrlRefused):
            deliver(connections, site.url("/echo", host="hooks.example"), allow_private=False)
    finally:
        connections.close()
    assert dns.asked == ["hooks.example", "hooks.example"]
