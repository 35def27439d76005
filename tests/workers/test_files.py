"""File mode against a real studio: photos fetched from a web server, uploaded as files."""

from __future__ import annotations

import functools
import socket
import tempfile
import threading
import uuid
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image

from nemo import NemoClient, NemoConfig, UnsupportedMedia, build_http_client
from reelyard.outbound import FetchFailed, TooLarge, UrlRefused, build_client
from tests.studio.api.conftest import StudioProcess, assert_no_traceback, start_studio
from workers import files
from workers.files import upload_as_files
from workers.pipeline import PipelineConfig
from workers.stages import missing_uploads

pytestmark = pytest.mark.slow

LOOPBACK = PipelineConfig(allow_private_urls=True)


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioProcess]:
    server = start_studio(tmp_path_factory.mktemp("studio"))
    yield server
    server.stop()
    assert_no_traceback(server)


@pytest.fixture
def studio(studio_server: StudioProcess) -> StudioProcess:
    studio_server.reset()
    return studio_server


@pytest.fixture
def client(studio: StudioProcess) -> Iterator[NemoClient]:
    config = NemoConfig(base_url=studio.url)
    with build_http_client(config) as http:
        nemo = NemoClient(http, config)
        nemo.anonymous_token(str(uuid.uuid4()))
        yield nemo


@pytest.fixture
def session_id(client: NemoClient) -> str:
    return client.create_session("en").session_id


class PhotoHandler(SimpleHTTPRequestHandler):
    """The folder's files; ``/moved/<name>`` redirects to ``/a.jpg``."""

    def do_GET(self) -> None:
        if self.path.startswith("/moved/"):
            self.send_response(302)
            self.send_header("Location", "/a.jpg")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        """The test output is for the tests."""


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Two JPEG photos and a text file on a loopback web server: (base URL, folder)."""
    folder = tmp_path_factory.mktemp("photos")
    Image.new("RGB", (320, 240), (200, 40, 40)).save(folder / "a.jpg", quality=90)
    Image.new("RGB", (240, 320), (40, 40, 200)).save(folder / "b.jpg", quality=90)
    (folder / "notes.txt").write_text("not a photo\n")

    handler = functools.partial(PhotoHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", folder
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """Where temporary files go during the test (empty at the start)."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def filenames(client: NemoClient, session_id: str) -> list[str]:
    return [str(info.get("filename")) for info in client.state(session_id).video_infos]


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_photos_are_uploaded_in_one_call_and_the_session_lists_them(
    client, session_id, photos, scratch, monkeypatch
):
    base, folder = photos
    calls = []
    upload_files = client.upload_files

    def counted(*args, **kwargs):
        calls.append(args)
        return upload_files(*args, **kwargs)

    monkeypatch.setattr(client, "upload_files", counted)
    upload = upload_as_files(client, session_id, [f"{base}/a.jpg", f"{base}/b.jpg"], LOOPBACK)
    assert len(calls) == 1
    assert [(f.filename, f.file_type, f.width, f.height) for f in upload.files] == [
        ("a.jpg", "image", 320, 240),
        ("b.jpg", "image", 240, 320),
    ]
    assert filenames(client, session_id) == ["a.jpg", "b.jpg"]
    for uploaded, name in zip(upload.files, ["a.jpg", "b.jpg"], strict=True):
        assert httpx.get(uploaded.cdn_url, timeout=10).content == (folder / name).read_bytes()
    assert list(scratch.iterdir()) == []


def test_a_redirect_is_followed_and_the_file_keeps_the_name_of_its_url(client, session_id, photos):
    base, folder = photos
    urls = [f"{base}/moved/summer.jpg"]
    upload = upload_as_files(client, session_id, urls, LOOPBACK)
    (uploaded,) = upload.files
    assert uploaded.filename == "summer.jpg"
    assert httpx.get(uploaded.cdn_url, timeout=10).content == (folder / "a.jpg").read_bytes()
    # the name the upload stage looks for when it resumes after a crash
    assert missing_uploads(urls, filenames(client, session_id)) == []


def test_an_unreachable_url_raises_uploads_nothing_and_leaves_no_file(
    client, session_id, photos, scratch
):
    base, _ = photos
    unreachable = f"http://127.0.0.1:{closed_port()}/c.jpg"
    with pytest.raises(FetchFailed) as caught:
        upload_as_files(client, session_id, [f"{base}/a.jpg", unreachable], LOOPBACK)
    assert caught.value.url == unreachable
    assert caught.value.retryable
    assert list(scratch.iterdir()) == []
    assert filenames(client, session_id) == []


def test_a_missing_photo_raises_with_its_status(client, session_id, photos, scratch):
    base, _ = photos
    with pytest.raises(FetchFailed) as caught:
        upload_as_files(client, session_id, [f"{base}/absent.jpg"], LOOPBACK)
    assert caught.value.status == 404
    assert not caught.value.retryable
    assert list(scratch.iterdir()) == []


def test_a_private_address_is_refused_unless_the_config_allows_it(client, session_id, photos):
    base, _ = photos
    with pytest.raises(UrlRefused, match="not public"):
        upload_as_files(client, session_id, [f"{base}/a.jpg"], PipelineConfig())
    assert filenames(client, session_id) == []


def test_a_file_over_the_limit_raises_and_leaves_no_file(
    client, session_id, photos, scratch, monkeypatch
):
    base, folder = photos
    monkeypatch.setattr(files, "MAX_FILE_BYTES", (folder / "a.jpg").stat().st_size - 1)
    with pytest.raises(TooLarge):
        upload_as_files(client, session_id, [f"{base}/a.jpg"], LOOPBACK)
    assert list(scratch.iterdir()) == []
    assert filenames(client, session_id) == []


def test_a_file_the_upstream_refuses_raises_its_error_and_leaves_no_file(
    client, session_id, photos, scratch
):
    base, _ = photos
    with pytest.raises(UnsupportedMedia):
        upload_as_files(client, session_id, [f"{base}/a.jpg", f"{base}/notes.txt"], LOOPBACK)
    assert list(scratch.iterdir()) == []


def test_keep_alive_is_called_after_each_file(client, session_id, photos):
    base, _ = photos
    beats = []
    upload_as_files(
        client,
        session_id,
        [f"{base}/a.jpg", f"{base}/b.jpg"],
        LOOPBACK,
        keep_alive=lambda: beats.append(len(beats)),
    )
    assert beats == [0, 1]


def test_a_given_http_client_is_used_and_left_open(client, session_id, photos):
    base, _ = photos
    with build_client() as http:
        upload_as_files(client, session_id, [f"{base}/a.jpg"], LOOPBACK, http=http)
        assert not http.is_closed


def test_nothing_to_upload_is_a_mistake(client, session_id):
    with pytest.raises(ValueError, match="nothing to upload"):
        upload_as_files(client, session_id, [], LOOPBACK)
