"""Fetching a URL for an upload, without becoming a way into the studio's own network.

- http and https only, to a host name or address that resolves only to public
  addresses (private, loopback, link-local, multicast and reserved ranges are refused
  unless the studio is told to allow private addresses, as tests and the demo do);
- the connection goes to the address that was checked (the request names the IP, the
  ``Host`` header and TLS SNI name the host), so DNS cannot change its answer between
  the check and the connection;
- redirects are followed only within the same host, at most :data:`MAX_REDIRECTS`;
- bounded in bytes (4002 past the limit) and in time.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

import httpx

from studio.envelopes import NemoFailure
from studio.media import SizeLimit, too_large

MAX_REDIRECTS = 3
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every fetch: building one loads the CA bundle, which cost
    about 80 % of the studio's CPU when every upload made its own."""
    return httpx.create_ssl_context()


@dataclass(frozen=True)
class Fetched:
    name: str
    size: int
    digest: str


def is_public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def resolve(host: str, port: int, *, allow_private: bool) -> IPAddress:
    """The address to connect to; 400 when the host is unknown or not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError):  # unknown, not IDNA, a NUL in the name
        raise NemoFailure(400, f"cannot resolve host {host!r}") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    if not addresses:
        raise NemoFailure(400, f"cannot resolve host {host!r}")
    if not allow_private:
        for address in addresses:
            if not is_public(address):
                raise NemoFailure(400, f"{host} resolves to a non-public address; refused")
    usable = [a for a in addresses if not a.is_unspecified and not a.is_multicast]
    if not usable:
        raise NemoFailure(400, f"{host} has no address that can be reached")
    return usable[0]


def fetch(
    url: str,
    target: IO[bytes],
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    transport: httpx.BaseTransport | None = None,
) -> Fetched:
    """Download ``url`` into ``target``; raise :class:`NemoFailure` on anything refused."""
    deadline = time.monotonic() + timeout_s
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        parts, host, port = _split(current)
        address = resolve(host, port, allow_private=allow_private)
        literal = f"[{address}]" if address.version == 6 else str(address)
        pinned = parts._replace(netloc=f"{literal}:{port}").geturl()
        name = unquote(parts.path.rsplit("/", 1)[-1]) or "download"
        remaining = max(0.1, deadline - time.monotonic())
        timeout = httpx.Timeout(remaining, connect=min(10.0, remaining))
        with httpx.Client(
            transport=transport, verify=_tls(), timeout=timeout, follow_redirects=False
        ) as client:
            try:
                request = client.build_request(
                    "GET",
                    pinned,
                    headers={"Host": parts.netloc.rsplit("@", 1)[-1], "Accept": "*/*"},
                    extensions={"sni_hostname": host},
                )
                response = client.send(request, stream=True)
            except (httpx.HTTPError, httpx.InvalidURL, UnicodeError) as exc:
                raise NemoFailure(400, f"cannot fetch {host}: {exc}") from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    following = urljoin(current, location)
                    if _host_of(following) != host:
                        raise NemoFailure(400, f"{host} redirects to another host; not followed")
                    current = following
                    continue
                if response.status_code != httpx.codes.OK:
                    raise NemoFailure(400, f"{host} answered HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise NemoFailure(4002, too_large(name, max_bytes))
                size, digest = SizeLimit(max_bytes, name).copy(
                    _chunks(response, deadline, host), target
                )
                return Fetched(name=name, size=size, digest=digest)
            finally:
                response.close()
    raise NemoFailure(400, f"more than {MAX_REDIRECTS} redirects fetching {url[:200]!r}")


def _split(url: str) -> tuple[SplitResult, str, int]:
    """The URL's parts, host and port; 400 unless it is an http(s) URL with a host."""
    refused = NemoFailure(400, f"only http and https URLs can be fetched: {url[:200]!r}")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a bad port or IPv6 literal
        raise refused from None
    if parts.scheme not in {"http", "https"} or not host:
        raise refused
    return parts, host, port


def _host_of(url: str) -> str | None:
    try:
        return urlsplit(url).hostname
    except ValueError:
        return None


def _chunks(response: httpx.Response, deadline: float, host: str) -> Iterator[bytes]:
    try:
        for chunk in response.iter_bytes(1 << 20):
            if time.monotonic() > deadline:
                raise NemoFailure(400, f"fetching from {host} took too long")
            yield chunk
    except httpx.HTTPError as exc:
        raise NemoFailure(400, f"fetching from {host} failed: {exc}") from None
