"""Outbound HTTP to URLs a caller gave us: photos fetched in file mode, webhooks delivered.

Such a URL may point anywhere, including at our own network, so every request made
here is:

- **http or https only**, to a host whose every address is public: private, loopback,
  link-local, shared (CGNAT), multicast, reserved, documentation and unspecified
  ranges are refused, and so are IPv6 addresses that carry one of those as an IPv4
  address (IPv4-mapped, IPv4-compatible, 6to4, NAT64), unless ``allow_private`` is set
  (tests and the local demo, through ``REELYARD_ALLOW_PRIVATE_URLS``);
- **pinned**: the host is resolved once, the addresses are checked, and the
  connection goes to the checked address (the request names the IP literal; the
  ``Host`` header and the TLS SNI name, against which the certificate is verified,
  are the host's), so a DNS answer that changes between the check and the connection
  (rebinding) cannot reach an internal address;
- **redirects**: not followed unless asked; then at most :data:`MAX_REDIRECTS`, each
  target checked and pinned like the first URL;
- **bounded** in bytes (the declared ``Content-Length`` and the bytes as they arrive)
  and in time: one deadline for the whole call, redirects included, checked before each
  request and whenever data arrives, and connect and read timeouts that never reach
  past it when a request starts (so a body that keeps arriving stops at the deadline, a
  server that falls silent at the read timeout). Name resolution is the system's and
  has no timeout of ours;
- **independent of the client's own settings**: requests are built here, so a
  client's default headers, authentication and cookies are never sent to a caller's
  URL, and each one asks for its connection to be closed, so that a connection
  verified for one host name is never reused for another name on the same address
  (:class:`Connections` keeps connections alive per host name and address instead).
  :func:`build_client` makes a client that also ignores proxy settings and ``.netrc``
  from the environment; a client with HTTP/2 enabled must not be used here.

Failures are one tree. A message names at most what the caller gave (the URL or its
host), never an address it resolved to nor the underlying error's text, so it can be
shown to that caller; the underlying exception is chained (``__cause__``) for the logs::

    OutboundError           anything this module raises on purpose; ``url`` as given
    ├── UrlRefused          not http(s), credentials in the URL, no host, a bad port,
    │                       unresolvable, an address that is not public (also a
    │                       redirect's target)
    ├── TooLarge            the body is larger than the limit (``limit``)
    └── FetchFailed         no usable answer; ``status`` is the HTTP status if one came
        ├── TimedOut        connect or read timeout, or the call's deadline passed
        └── TooManyRedirects  more than MAX_REDIRECTS redirects

``retryable`` says whether the same request may succeed later: a transport error, a
timeout, 408, 429 and 5xx may; a refused URL, a body over the limit and any other
status will not.
"""

from __future__ import annotations

import http.cookiejar
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, Final
from urllib.parse import unquote

import httpx

from reelyard import __version__

__all__ = [
    "CONNECT_TIMEOUT_S",
    "MAX_REDIRECTS",
    "READ_TIMEOUT_S",
    "Connections",
    "FetchFailed",
    "Fetched",
    "OutboundError",
    "PinnedTarget",
    "Reply",
    "TimedOut",
    "TooLarge",
    "TooManyRedirects",
    "UrlRefused",
    "build_client",
    "check_url",
    "fetch_to_file",
    "is_public",
    "send",
    "url_file_name",
]

#: redirects followed at most, when following them was asked for
MAX_REDIRECTS: Final = 3
#: longest wait for a connection (never past the call's deadline)
CONNECT_TIMEOUT_S: Final = 10.0
#: longest silence while waiting for an answer or the next piece of a body (idem)
READ_TIMEOUT_S: Final = 30.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES: Final = {"http": 80, "https": 443}
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_USER_AGENT: Final = f"reelyard/{__version__}"
_SHOWN_URL: Final = 200  # characters of a URL quoted in a message

# Ranges that are not public whatever `is_global` says: Python 3.11's tables miss some
# (IPv4-compatible ::/96, fec0::/10, 192.88.99.0/24, 5f00::/16, ...), and being explicit
# keeps the answer the same on every patch release.
_NOT_PUBLIC: Final = tuple(
    ipaddress.ip_network(network)
    for network in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier-grade NAT)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata services
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast (deprecated)
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/96",  # unspecified, loopback, IPv4-compatible
        "::ffff:0:0/96",  # IPv4-mapped (judged by the IPv4 address before this is reached)
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo among them
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # segment routing
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


# errors


class OutboundError(Exception):
    """Anything this module raises on purpose; the message can be shown to the caller."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: the URL as the caller gave it (not a redirect's target)
        self.url = url

    @property
    def retryable(self) -> bool:
        return False

    def __reduce__(self) -> tuple[Any, ...]:
        # by state, keyword-only fields included: Celery pickles exceptions across processes
        return (_restore, (type(self), self.__dict__.copy()))


def _restore(cls: type[OutboundError], state: dict[str, Any]) -> OutboundError:
    error = cls.__new__(cls)
    OutboundError.__init__(error, state["message"])
    error.__dict__.update(state)
    return error


class UrlRefused(OutboundError):
    """The URL is not one we fetch: scheme, form, resolution or a non-public address."""


class TooLarge(OutboundError):
    """The body is larger than the limit; what was read of it must be discarded."""

    def __init__(self, message: str, *, limit: int, url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.limit = limit


class FetchFailed(OutboundError):
    """No usable answer: a transport error, or an HTTP status we do not accept."""

    def __init__(self, message: str, *, status: int | None = None, url: str | None = None) -> None:
        super().__init__(message, url=url)
        self.status = status

    @property
    def retryable(self) -> bool:
        if self.status is None:
            return True
        return self.status in {408, 429} or self.status >= 500


class TimedOut(FetchFailed):
    """A connect or read timeout, or the deadline of the whole call."""


class TooManyRedirects(FetchFailed):
    """More than :data:`MAX_REDIRECTS` redirects; ``status`` is the last one's."""


# addresses


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is reachable on the public internet and nothing else.

    An IPv6 address that embeds an IPv4 address (IPv4-mapped, 6to4, NAT64) is judged
    by the IPv4 address it leads to.
    """
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
    if any(address in network for network in _NOT_PUBLIC):
        return False
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


@dataclass(frozen=True)
class PinnedTarget:
    """A URL that passed the checks, and the address its connection must go to."""

    #: the URL as checked (normalised by httpx)
    url: httpx.URL
    #: the host name as sent on the wire (IDNA-encoded), or the IP literal
    host: str
    port: int
    #: the checked address the connection goes to
    address: IPAddress

    @property
    def pinned_url(self) -> httpx.URL:
        """The URL with the checked address in place of the host name."""
        return self.url.copy_with(host=str(self.address), fragment=None)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.url.port is None else f"{host}:{self.port}"

    @property
    def sni_hostname(self) -> str | None:
        """The TLS server name: the host name; none for an IP literal."""
        return None if _ip_literal(self.host) else self.host

    def request(
        self,
        method: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        timeout: httpx.Timeout,
        keep_alive: bool = False,
    ) -> httpx.Request:
        """A request to the checked address that names the host (``Host``, SNI).

        Without ``keep_alive`` it asks for its connection to be closed: a client's pool
        knows a connection by its address alone, and one verified for another host
        name must never carry this request. :class:`Connections` keeps a pool per host
        name and address, where ``keep_alive`` is safe.
        """
        sent = httpx.Headers({"User-Agent": _USER_AGENT, "Accept": "*/*"})
        sent.update(headers or {})
        sent["Host"] = self.host_header
        sent["Connection"] = "keep-alive" if keep_alive else "close"
        extensions: dict[str, object] = {"timeout": timeout.as_dict()}
        if self.sni_hostname is not None:
            extensions["sni_hostname"] = self.sni_hostname
        return httpx.Request(
            method, self.pinned_url, headers=sent, content=content, extensions=extensions
        )


def check_url(url: str, *, allow_private: bool) -> PinnedTarget:
    """Check ``url`` and resolve its host once; where to connect. :class:`UrlRefused` if not.

    Every address the host resolves to must be public (unless ``allow_private``): a
    name that answers with one public and one private address is refused.
    """
    parsed = _parse(url)
    host = parsed.raw_host.decode("ascii")
    port = parsed.port or _SCHEMES[parsed.scheme]
    address = _resolve(host, port, allow_private=allow_private, url=url)
    return PinnedTarget(url=parsed, host=host, port=port, address=address)


def _parse(url: str) -> httpx.URL:
    shown = _shown(url)
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise UrlRefused(f"not a valid URL: {shown}", url=url) from exc
    if parsed.scheme not in _SCHEMES:
        raise UrlRefused(f"only http and https URLs can be fetched: {shown}", url=url)
    if parsed.userinfo:
        raise UrlRefused("URLs with credentials in them are not fetched", url=url)
    if not parsed.raw_host:
        raise UrlRefused(f"the URL has no host: {shown}", url=url)
    if parsed.port is not None and not 0 < parsed.port < 1 << 16:
        raise UrlRefused(f"the URL has an invalid port: {shown}", url=url)
    return parsed


def _resolve(host: str, port: int, *, allow_private: bool, url: str) -> IPAddress:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError, ValueError) as exc:  # unknown, not IDNA, a NUL in it
        raise UrlRefused(f"cannot resolve host {host!r}", url=url) from exc
    addresses = [
        ipaddress.ip_address(info[4][0])
        for info in infos
        if info[0] in {socket.AF_INET, socket.AF_INET6}
    ]
    if not addresses:
        raise UrlRefused(f"cannot resolve host {host!r}", url=url)
    if not allow_private and not all(is_public(address) for address in addresses):
        raise UrlRefused(f"{host} resolves to an address that is not public; refused", url=url)
    for address in addresses:
        if not (address.is_unspecified or address.is_multicast):
            return address
    raise UrlRefused(f"{host} has no address that can be connected to", url=url)


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _shown(url: str) -> str:
    return repr(url if len(url) <= _SHOWN_URL else f"{url[:_SHOWN_URL]}...")


# clients and requests


def build_client(
    *, verify: ssl.SSLContext | bool = True, limits: httpx.Limits | None = None
) -> httpx.Client:
    """An ``httpx.Client`` for this module's calls.

    It reads nothing from the environment (proxies, ``.netrc``, ``SSL_CERT_FILE``),
    keeps no cookies and, unless ``limits`` say otherwise (:class:`Connections`), no
    idle connections, and speaks HTTP/1.1. The timeouts of each call are set per
    request.
    """
    return httpx.Client(
        verify=verify,
        trust_env=False,
        follow_redirects=False,
        cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        limits=limits or httpx.Limits(max_keepalive_connections=0),
        timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
    )


class Connections:
    """Keep-alive connections for :func:`send`: one pool per scheme, host name, checked
    address and port, so a connection is only ever reused for the host name it was
    made (and its certificate verified) for, at the address that name resolves to now.

    The name is still resolved and checked at every call: when it moves to another
    address, the next call opens a connection there (or is refused), and the old
    pool's connections expire unused. Thread-safe. Pools unused for longer than
    ``idle_s`` are closed when new ones are made, beyond ``max_pools``; a call never
    outlives its deadline, so ``idle_s`` above the longest one means no pool is closed
    under a call.
    """

    def __init__(
        self,
        *,
        per_host: int = 10,
        max_pools: int = 256,
        idle_s: float = 120.0,
        verify: ssl.SSLContext | bool = True,
    ) -> None:
        self._limits = httpx.Limits(
            max_connections=None, max_keepalive_connections=per_host, keepalive_expiry=5.0
        )
        self._max_pools = max_pools
        self._idle_s = idle_s
        self._verify = verify
        self._pools: dict[tuple[str, str, str, int], tuple[httpx.Client, float]] = {}
        self._lock = threading.Lock()

    def client_for(self, target: PinnedTarget) -> httpx.Client:
        key = (target.url.scheme, target.host, str(target.address), target.port)
        now = time.monotonic()
        with self._lock:
            found = self._pools.get(key)
            client = (
                found[0]
                if found is not None
                else build_client(verify=self._verify, limits=self._limits)
            )
            self._pools[key] = (client, now)
            if found is None and len(self._pools) > self._max_pools:
                self._close_idle(now)
        return client

    def _close_idle(self, now: float) -> None:
        for key, (client, used) in list(self._pools.items()):
            if now - used > self._idle_s:
                del self._pools[key]
                client.close()

    def close(self) -> None:
        with self._lock:
            pools, self._pools = self._pools, {}
        for client, _ in pools.values():
            client.close()


class _Deadline:
    """One time budget for a whole call, redirects included."""

    def __init__(self, timeout_s: float, url: str) -> None:
        self.timeout_s = timeout_s
        self.url = url
        self.started = time.monotonic()
        self.ends = self.started + timeout_s

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def check(self, host: str) -> float:
        """The seconds left; :class:`TimedOut` when there are none."""
        left = self.ends - time.monotonic()
        if left <= 0:
            raise TimedOut(
                f"{host} did not answer in full within {self.timeout_s:g} s", url=self.url
            )
        return left

    def timeout(self, host: str) -> httpx.Timeout:
        left = self.check(host)
        connect = min(CONNECT_TIMEOUT_S, left)
        wait = min(READ_TIMEOUT_S, left)
        return httpx.Timeout(connect=connect, read=wait, write=wait, pool=connect)


def _open(
    client: httpx.Client,
    target: PinnedTarget,
    method: str,
    deadline: _Deadline,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | None = None,
    keep_alive: bool = False,
) -> httpx.Response:
    """Send the request to the pinned address; the response, its body not read yet."""
    try:
        request = target.request(
            method,
            headers=headers,
            content=content,
            timeout=deadline.timeout(target.host),
            keep_alive=keep_alive,
        )
    except httpx.InvalidURL as exc:  # an address httpx cannot put in a URL (an IPv6 zone)
        raise UrlRefused(
            f"{target.host} has no address that can be connected to", url=deadline.url
        ) from exc
    try:
        # auth=None: not the client's; the request was built here without its headers
        # or cookies, so nothing of the client's own reaches the caller's URL.
        return client.send(request, stream=True, follow_redirects=False, auth=None)
    except httpx.TimeoutException as exc:
        raise TimedOut(
            f"{target.host} did not answer within {deadline.timeout_s:g} s", url=deadline.url
        ) from exc
    except httpx.ConnectError as exc:
        raise FetchFailed(f"cannot connect to {target.host}", url=deadline.url) from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(f"the exchange with {target.host} failed", url=deadline.url) from exc


def _body(response: httpx.Response, target: PinnedTarget, deadline: _Deadline) -> Iterator[bytes]:
    """The body as it arrives, stopped at the deadline; transport errors as ours."""
    try:
        for chunk in response.iter_bytes():
            deadline.check(target.host)
            yield chunk
    except httpx.TimeoutException as exc:
        raise TimedOut(
            f"{target.host} did not answer in full within {deadline.timeout_s:g} s",
            url=deadline.url,
        ) from exc
    except httpx.HTTPError as exc:
        raise FetchFailed(f"the download from {target.host} broke off", url=deadline.url) from exc


# fetching


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch_to_file` wrote."""

    #: the final URL's last path segment, percent-decoded, or "download"
    name: str
    size: int
    #: the media type the server declared (no parameters), if it declared one
    content_type: str | None
    #: the URL the body came from (the last redirect's target)
    url: str


def url_file_name(url: str | httpx.URL) -> str:
    """The last segment of the URL's path, percent-decoded; "download" if it is empty."""
    try:
        raw_path = httpx.URL(url).raw_path.decode("ascii")
    except httpx.InvalidURL:
        return "download"
    path = raw_path.split("?", 1)[0]
    return unquote(path.rsplit("/", 1)[-1]) or "download"


def fetch_to_file(
    client: httpx.Client,
    url: str,
    destination: IO[bytes],
    *,
    max_bytes: int,
    timeout_s: float,
    allow_private: bool,
    follow_redirects: bool = False,
) -> Fetched:
    """GET ``url`` into ``destination``, in pieces, within ``max_bytes`` and ``timeout_s``.

    Only a 2xx answer is written. On an error ``destination`` may hold part of the
    body (never more than ``max_bytes``): the caller discards it.
    """
    deadline = _Deadline(timeout_s, url)
    current = url
    status: int | None = None
    for hop in range(MAX_REDIRECTS + 1):
        target = _check(current, allow_private=allow_private, given=url, hop=hop)
        response = _open(client, target, "GET", deadline, headers={"Accept-Encoding": "identity"})
        try:
            status = response.status_code
            if status in _REDIRECTS:
                if not follow_redirects:
                    raise FetchFailed(
                        f"{target.host} answered HTTP {status}, a redirect (not followed)",
                        status=status,
                        url=url,
                    )
                current = _location(response, target, url)
                continue
            if not response.is_success:
                raise FetchFailed(f"{target.host} answered HTTP {status}", status=status, url=url)
            name = url_file_name(target.url)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(_too_large(name, max_bytes), limit=max_bytes, url=url)
            size = 0
            for chunk in _body(response, target, deadline):
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(_too_large(name, max_bytes), limit=max_bytes, url=url)
                destination.write(chunk)
            return Fetched(
                name=name,
                size=size,
                content_type=_media_type(response.headers.get("content-type")),
                url=str(target.url),
            )
        finally:
            response.close()
    raise TooManyRedirects(f"more than {MAX_REDIRECTS} redirects", status=status, url=url)


def _check(current: str, *, allow_private: bool, given: str, hop: int) -> PinnedTarget:
    try:
        target = check_url(current, allow_private=allow_private)
    except UrlRefused as refused:
        if hop == 0:
            raise
        raise UrlRefused(f"a redirect was refused: {refused.message}", url=given) from refused
    return target


def _location(response: httpx.Response, target: PinnedTarget, given: str) -> str:
    location = response.headers.get("location", "").strip()
    if not location:
        raise FetchFailed(
            f"{target.host} answered HTTP {response.status_code} without a Location",
            status=response.status_code,
            url=given,
        )
    try:
        # against the URL as checked, not the pinned one (a relative Location keeps the name)
        return str(target.url.join(location))
    except httpx.InvalidURL as exc:
        raise UrlRefused("a redirect was refused: its Location is not a URL", url=given) from exc


def _too_large(name: str, limit: int) -> str:
    return f"{name} is larger than {_amount(limit)}"


def _amount(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):.4g} MB"
    return f"{size} bytes"


def _media_type(header: str | None) -> str | None:
    media_type = (header or "").split(";", 1)[0].strip().lower()
    return media_type or None


# sending (webhooks)


@dataclass(frozen=True)
class Reply:
    """The answer to :func:`send`: whatever the status, and the start of its body."""

    status: int
    headers: httpx.Headers
    #: the first ``max_response_bytes`` of the body
    body: bytes
    #: whether the body went on past what was kept
    truncated: bool
    #: from the start of the call to the end of what was read
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def send(
    client: httpx.Client | Connections,
    method: str,
    url: str,
    *,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float,
    allow_private: bool,
    max_response_bytes: int = 4096,
) -> Reply:
    """Make one request to ``url`` and read the start of the answer; never follows redirects.

    Any status is a :class:`Reply` (a redirect too); only a refused URL, a transport
    error or the deadline raise. ``headers`` cannot replace ``Host`` or ``Connection``.
    With :class:`Connections`, the connection is kept for the next call to the same
    host name at the same address.
    """
    deadline = _Deadline(timeout_s, url)
    target = check_url(url, allow_private=allow_private)
    keep_alive = isinstance(client, Connections)
    response = _open(
        client.client_for(target) if isinstance(client, Connections) else client,
        target,
        method.upper(),
        deadline,
        headers=headers,
        content=content,
        keep_alive=keep_alive,
    )
    try:
        kept = bytearray()
        truncated = False
        for chunk in _body(response, target, deadline):
            room = max_response_bytes - len(kept)
            if len(chunk) > room:
                kept += chunk[:room]
                truncated = True
                break
            kept += chunk
        return Reply(
            status=response.status_code,
            headers=response.headers,
            body=bytes(kept),
            truncated=truncated,
            elapsed_s=deadline.elapsed_s(),
        )
    finally:
        response.close()
