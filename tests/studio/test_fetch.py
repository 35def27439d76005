"""URL uploads: http(s) only, public addresses only (unless allowed), same-host
redirects only, bounded in bytes and time, connected to the address that was checked."""

from __future__ import annotations

import hashlib
import io
import ipaddress

import httpx
import pytest

from studio.envelopes import NemoFailure
from studio.fetch import MAX_REDIRECTS, fetch, is_public, resolve
from tests.studio.api.fileserver import serve_files

PHOTO = b"\x89PNG" + bytes(range(256)) * 40


def _fetch(url, *, max_bytes=1 << 20, timeout_s=5.0, allow_private=True, transport=None):
    target = io.BytesIO()
    fetched = fetch(
        url,
        target,
        max_bytes=max_bytes,
        timeout_s=timeout_s,
        allow_private=allow_private,
        transport=transport,
    )
    return fetched, target.getvalue()


def _refusal(code=400, **kwargs):
    url = kwargs.pop("url")
    with pytest.raises(NemoFailure) as caught:
        _fetch(url, **kwargs)
    assert caught.value.code == code
    return caught.value.message


@pytest.fixture
def files():
    with serve_files(**{"photo.png": PHOTO, "big.png": b"x" * 300_000}) as server:
        yield server


def test_a_file_is_fetched_with_its_name_size_and_hash(files):
    fetched, body = _fetch(files.url("/files/photo.png"))
    assert body == PHOTO
    assert (fetched.name, fetched.size) == ("photo.png", len(PHOTO))
    assert fetched.digest == hashlib.sha256(PHOTO).hexdigest()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/photo.png",
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        "javascript:alert(1)",
        "data:image/png;base64,iVBORw0KGgo=",
        "127.0.0.1/photo.png",
        "http:///photo.png",
        "http://[::1/photo.png",
        "http://127.0.0.1:99999/photo.png",
        "http://127.0.0.1:port/photo.png",
        "",
    ],
)
def test_anything_but_an_http_url_with_a_host_is_refused(url):
    assert "only http and https" in _refusal(url=url)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # the cloud metadata service
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 (an address under test, not a bind)
        "[::1]",
        "[::ffff:127.0.0.1]",
        "[fe80::1]",
        "[fd00::1]",
        "224.0.0.1",
    ],
)
def test_private_loopback_and_link_local_addresses_are_refused(host):
    message = _refusal(url=f"http://{host}/photo.png", allow_private=False)
    assert "non-public address" in message


def test_the_refusal_comes_before_any_connection(files):
    _refusal(url=files.url("/files/photo.png"), allow_private=False)
    assert files.requests == []


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("::ffff:10.0.0.1", False),
        ("198.51.100.7", False),  # documentation range
        ("239.255.255.250", False),
    ],
)
def test_is_public(address, public):
    assert is_public(ipaddress.ip_address(address)) is public


def test_an_unknown_host_is_refused():
    message = _refusal(url="http://no-such-host.invalid/photo.png")
    assert "cannot resolve" in message


def test_a_host_name_with_a_nul_is_refused_cleanly():
    with pytest.raises(NemoFailure) as caught:
        resolve("bad\x00host", 80, allow_private=True)
    assert caught.value.code == 400


def test_a_redirect_within_the_host_is_followed(files):
    target = files.url("/files/photo.png")
    fetched, body = _fetch(files.url(f"/redirect/1?to={target}"))
    assert body == PHOTO
    assert fetched.name == "photo.png"
    assert [path for path, _ in files.requests] == [f"/redirect/1?to={target}", "/files/photo.png"]


def test_a_relative_redirect_is_followed(files):
    _, body = _fetch(files.url("/redirect/1?to=/files/photo.png"))
    assert body == PHOTO


def test_a_redirect_to_another_host_is_not_followed(files):
    elsewhere = files.url("/files/photo.png", host="localhost")
    message = _refusal(url=files.url(f"/redirect/1?to={elsewhere}"))
    assert "redirects to another host" in message
    assert len(files.requests) == 1


def test_a_redirect_to_another_scheme_is_refused(files):
    message = _refusal(url=files.url("/redirect/1?to=file:///etc/passwd"))
    assert "another host" in message or "only http" in message


def test_endless_redirects_stop(files):
    loop = files.url("/redirect/1?to=/redirect/1?to=/redirect/1?to=/redirect/1?to=/redirect/1")
    message = _refusal(url=loop + "?to=/files/photo.png")
    assert f"more than {MAX_REDIRECTS} redirects" in message


def test_a_declared_length_over_the_limit_is_4002_before_reading(files):
    message = _refusal(4002, url=files.url("/files/big.png"), max_bytes=100_000)
    assert "big.png is larger than" in message


def test_a_streamed_body_with_no_length_is_cut_off_at_the_limit(files):
    _refusal(4002, url=files.url("/chunked/big.png"), max_bytes=100_000)


def test_a_streamed_body_within_the_limit_is_whole(files):
    fetched, body = _fetch(files.url("/chunked/big.png"), max_bytes=300_000)
    assert body == b"x" * 300_000
    assert fetched.size == 300_000


def test_an_error_answer_is_refused(files):
    assert "answered HTTP 404" in _refusal(url=files.url("/files/absent.png"))


def test_a_slow_server_runs_into_the_time_limit(files):
    message = _refusal(url=files.url("/slow"), timeout_s=0.3)
    assert "cannot fetch" in message or "took too long" in message


def test_the_connection_goes_to_the_checked_address_and_names_the_host():
    seen = []

    def answer(request):
        seen.append(request)
        return httpx.Response(200, content=PHOTO)

    fetched, _ = _fetch(
        "http://localhost:8123/a/b/photo%20one.png", transport=httpx.MockTransport(answer)
    )
    (request,) = seen
    assert ipaddress.ip_address(request.url.host).is_loopback  # the IP, not the name
    assert request.url.port == 8123
    assert request.headers["host"] == "localhost:8123"
    assert request.extensions["sni_hostname"] == "localhost"
    assert fetched.name == "photo one.png"
