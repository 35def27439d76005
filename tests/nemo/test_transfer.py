"""Big bodies both ways: uploads are streamed, downloads are streamed, bounded and atomic."""

from __future__ import annotations

import io
import tracemalloc

import httpx
import pytest

from nemo import (
    ApiError,
    DownloadTooLarge,
    ProtocolError,
    RenderState,
    RenderStatus,
    TokenInvalid,
    TransportError,
)
from nemo.models import FileUpload
from tests.nemo.fakes import (
    TOKEN,
    Recorder,
    UnreadTransport,
    chunks_then,
    envelope,
    json_response,
    make_client,
)

MB = 1024 * 1024
CDN_URL = "https://cdn.example/renders/render_1.mp4?sig=abc"
VIDEO = b"\x00\x00\x00\x18ftypmp42" + b"v" * 5000
UPLOAD_ANSWER = envelope({"files": [{"filename": "big.mp4"}]})


def completed(url: str | None = CDN_URL) -> RenderStatus:
    return RenderStatus("render_1", RenderState.COMPLETED, 100, url)


def video_response(body: bytes = VIDEO, **headers: str) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "video/mp4", **headers}, content=body)


def leftovers(directory):
    return sorted(path.name for path in directory.iterdir())


# -- download ----------------------------------------------------------------------------


def test_download_streams_the_url_to_disk_without_sending_the_token_to_the_cdn(tmp_path):
    recorder = Recorder([video_response()])
    target = tmp_path / "out" / "video.mp4"
    result = make_client(recorder).download(completed(), target)

    assert target.read_bytes() == VIDEO
    assert (result.path, result.size, result.via_proxy) == (target, len(VIDEO), False)
    assert result.url == "https://cdn.example/renders/render_1.mp4"  # no signature in logs
    request = recorder.last
    assert str(request.url) == CDN_URL
    assert "authorization" not in request.headers
    assert "x-skill-source" not in request.headers
    assert leftovers(target.parent) == ["video.mp4"]


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>"),
        httpx.ConnectError("no route to host"),
        httpx.Response(200, content=chunks_then([b"half a vid"], httpx.ReadError("reset"))),
    ],
    ids=["forbidden", "unreachable", "reset-mid-body"],
)
def test_download_falls_back_to_the_proxy_when_the_url_cannot_be_fetched(tmp_path, failure):
    def cdn(request):
        if isinstance(failure, Exception):
            raise failure
        return failure

    recorder = Recorder([cdn, video_response()])
    target = tmp_path / "video.mp4"
    result = make_client(recorder).download(completed(), target)

    assert result.via_proxy
    assert target.read_bytes() == VIDEO
    proxy = recorder.last
    assert proxy.url.path == "/api/render/proxy/render_1/download"
    assert proxy.headers["authorization"] == f"Bearer {TOKEN}"
    assert proxy.headers["x-skill-source"] == "reelyard"
    assert leftovers(tmp_path) == ["video.mp4"]


def test_download_of_a_url_without_a_render_id_has_no_fallback(tmp_path):
    recorder = Recorder([httpx.Response(404, text="<html><title>Not Found</title></html>")])
    with pytest.raises(ApiError) as caught:
        make_client(recorder).download(CDN_URL, tmp_path / "video.mp4")
    assert caught.value.http_status == 404
    assert len(recorder.requests) == 1
    assert leftovers(tmp_path) == []


def test_download_of_a_url_with_a_render_id_can_fall_back(tmp_path):
    recorder = Recorder([httpx.Response(410), video_response()])
    result = make_client(recorder).download(CDN_URL, tmp_path / "v.mp4", render_id="render_1")
    assert result.via_proxy


def test_download_by_render_id_uses_the_proxy_endpoint(tmp_path):
    recorder = Recorder([video_response()])
    result = make_client(recorder).download("render_9", tmp_path / "v.mp4")
    assert recorder.last.url.path == "/api/render/proxy/render_9/download"
    assert result.via_proxy


def test_a_completed_status_without_a_url_goes_straight_to_the_proxy(tmp_path):
    recorder = Recorder([video_response()])
    make_client(recorder).download(completed(url=None), tmp_path / "v.mp4")
    assert recorder.last.url.path == "/api/render/proxy/render_1/download"


def test_a_url_on_the_api_host_gets_the_token(tmp_path):
    recorder = Recorder([video_response()])
    make_client(recorder).download("/files/render_1.mp4", tmp_path / "v.mp4")
    assert str(recorder.last.url) == "http://nemo.test/files/render_1.mp4"
    assert recorder.last.headers["authorization"] == f"Bearer {TOKEN}"


def test_download_follows_a_cdn_redirect(tmp_path):
    recorder = Recorder(
        [
            httpx.Response(302, headers={"location": "https://edge.example/v.mp4"}),
            video_response(),
        ]
    )
    make_client(recorder).download(completed(), tmp_path / "v.mp4")
    assert str(recorder.last.url) == "https://edge.example/v.mp4"


def test_a_declared_size_over_the_limit_aborts_before_reading_the_body(tmp_path):
    produced = []

    def body():
        produced.append(1)
        yield b"x"

    response = httpx.Response(200, headers={"content-length": str(5 * 1024**3)}, content=body())
    with pytest.raises(DownloadTooLarge) as caught:
        make_client(Recorder([response])).download(completed(), tmp_path / "v.mp4", max_bytes=MB)
    assert caught.value.seen == 5 * 1024**3
    assert produced == []
    assert leftovers(tmp_path) == []


def test_a_huge_streamed_body_is_abandoned_at_the_limit_without_reading_it_all(tmp_path):
    produced = []

    def huge():  # 1 GiB if read to the end
        for _ in range(1024):
            produced.append(MB)
            yield b"\0" * MB

    recorder = Recorder([httpx.Response(200, content=huge())])
    target = tmp_path / "v.mp4"
    tracemalloc.start()
    try:
        with pytest.raises(DownloadTooLarge) as caught:
            make_client(recorder).download(completed(), target, max_bytes=8 * MB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(produced) <= 10 * MB
    assert caught.value.limit == 8 * MB
    assert peak < 16 * MB
    assert len(recorder.requests) == 1  # a size overrun is not retried through the proxy
    assert leftovers(tmp_path) == []


def test_a_failed_download_leaves_an_existing_file_untouched(tmp_path):
    target = tmp_path / "v.mp4"
    target.write_bytes(b"previous video")
    response = httpx.Response(200, content=chunks_then([b"new bytes"], httpx.ReadError("reset")))
    with pytest.raises(TransportError):
        make_client(Recorder([response])).download(CDN_URL, target)
    assert target.read_bytes() == b"previous video"
    assert leftovers(tmp_path) == ["v.mp4"]


def test_an_error_envelope_answered_with_200_is_raised(tmp_path):
    recorder = Recorder([json_response({"code": 1001, "message": "token expired"})])
    with pytest.raises(TokenInvalid):
        make_client(recorder).download("render_1", tmp_path / "v.mp4")
    assert leftovers(tmp_path) == []


def test_json_where_a_file_was_expected_is_a_protocol_error(tmp_path):
    recorder = Recorder([json_response({"code": 0, "data": {"status": "processing"}})])
    with pytest.raises(ProtocolError, match="not a file"):
        make_client(recorder).download("render_1", tmp_path / "v.mp4")


def test_an_empty_file_is_a_protocol_error_and_is_not_kept(tmp_path):
    with pytest.raises(ProtocolError, match="empty"):
        make_client(Recorder([video_response(b"")])).download("render_1", tmp_path / "v.mp4")
    assert leftovers(tmp_path) == []


def test_download_needs_a_url_or_a_render_id(tmp_path):
    status = RenderStatus("", RenderState.COMPLETED)
    with pytest.raises(ValueError, match="nothing to download"):
        make_client(Recorder([])).download(status, tmp_path / "v.mp4")


# -- upload ------------------------------------------------------------------------------


class LazyFile(io.RawIOBase):
    """``size`` bytes made up on demand, counting what was read and how."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.served = 0
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        count = min(len(buffer), self.size - self.served)
        buffer[:count] = b"\0" * count
        self.served += count
        self.largest_read = max(self.largest_read, count)
        return count


def streaming_server(seen: dict, source_progress):
    """A handler that reads the request body piece by piece, noting how far the source
    had been read when the first piece arrived."""

    def handler(request: httpx.Request) -> httpx.Response:
        total = 0
        for piece in request.stream:
            if not total:
                seen["source_read_at_first_piece"] = source_progress()
            total += len(piece)
            seen["largest_piece"] = max(seen.get("largest_piece", 0), len(piece))
        seen["total"] = total
        seen["content_type"] = request.headers["content-type"]
        return json_response(UPLOAD_ANSWER)

    return handler


def test_a_200_mb_file_object_is_uploaded_in_pieces_never_whole():
    big = LazyFile(200 * MB)
    seen: dict = {}
    client = make_client(streaming_server(seen, lambda: big.served), transport=UnreadTransport)

    upload = client.upload_files("s1", [FileUpload("big.mp4", big)])

    assert upload.files[0].filename == "big.mp4"
    assert seen["total"] > 200 * MB  # the whole file went, plus the multipart framing
    assert big.served == 200 * MB
    assert seen["source_read_at_first_piece"] < MB  # it was sent while it was being read
    assert big.largest_read <= 64 * 1024
    assert seen["largest_piece"] <= 64 * 1024
    assert seen["content_type"].startswith("multipart/form-data")


def test_a_200_mb_file_on_disk_is_uploaded_with_bounded_memory(tmp_path):
    path = tmp_path / "big.mp4"
    with path.open("wb") as handle:
        handle.truncate(200 * MB)  # sparse: costs no disk
    seen: dict = {}
    client = make_client(streaming_server(seen, lambda: 0), transport=UnreadTransport)
    tracemalloc.start()
    try:
        client.upload_files("s1", [path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen["total"] > 200 * MB
    assert peak < 8 * MB


def test_a_generator_is_uploaded_as_it_is_produced():
    produced = []

    def pieces():
        for _ in range(64):
            produced.append(1)
            yield b"\1" * MB

    seen: dict = {}
    client = make_client(streaming_server(seen, lambda: len(produced)), transport=UnreadTransport)
    client.upload_files("s1", [FileUpload("clip.mp4", pieces(), "video/mp4")])
    assert seen["total"] > 64 * MB
    assert seen["source_read_at_first_piece"] <= 1
    assert len(produced) == 64


def test_raw_bytes_are_uploaded_as_they_are_not_as_a_list_of_numbers():
    bodies: list[bytes] = []

    def server(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return httpx.Response(200, json={"code": 0, "data": {"files": []}})

    client = make_client(server)
    client.upload_files("s1", [FileUpload("tone.wav", b"RIFF-the-real-bytes")])
    assert b"RIFF-the-real-bytes" in bodies[0]
