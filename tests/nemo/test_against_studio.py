"""The client against the studio, a real server over a real socket: every call once."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import pytest
from PIL import Image

from nemo import (
    DuplicateRenderId,
    ExportBlocked,
    FileUpload,
    NemoClient,
    NemoConfig,
    OutOfCredits,
    RateLimited,
    RenderState,
    Secret,
    SessionNotFound,
    StreamBroken,
    Text,
    TokenInvalid,
    ToolResult,
    Turn,
    build_http_client,
    diff,
)
from tests.studio.api.conftest import StudioProcess, start_studio

pytestmark = pytest.mark.slow

CLIENT_ID = "6f1c2a3e-0000-4000-8000-000000000001"
PAID_TOKEN = "nmv_paid_tests"  # noqa: S105 (a token the test studio is configured with)


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioProcess]:
    server = start_studio(
        tmp_path_factory.mktemp("studio"),
        STUDIO_SILENT_CLOSE_RATIO="0",
        STUDIO_PAID_TOKENS=f"{PAID_TOKEN}:100000",
    )
    yield server
    server.stop()


@pytest.fixture
def studio(studio_server: StudioProcess) -> StudioProcess:
    studio_server.reset()
    return studio_server


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """Three photos served over HTTP on loopback: (base URL, folder)."""
    folder = tmp_path_factory.mktemp("photos")
    for index, colour in enumerate([(200, 40, 40), (40, 200, 40), (40, 40, 200)]):
        Image.new("RGB", (640, 480), colour).save(folder / f"photo{index}.jpg", quality=90)
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", folder
    server.shutdown()
    server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Silence: the test output is for the tests."""


@pytest.fixture
def client(studio: StudioProcess) -> Iterator[NemoClient]:
    config = NemoConfig(base_url=studio.url, turn_limit=60, heartbeat_limit=30)
    with build_http_client(config) as http:
        nemo = NemoClient(http, config)
        nemo.anonymous_token(CLIENT_ID)
        yield nemo


def urls(photos: tuple[str, Path]) -> list[str]:
    base, _ = photos
    return [f"{base}/photo{i}.jpg" for i in range(3)]


def wait_for_render(client: NemoClient, render_id: str, timeout_s: float = 60) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.render_status(render_id)
        if status.status in (RenderState.COMPLETED, RenderState.FAILED):
            return status
        time.sleep(0.1)
    raise AssertionError(f"render {render_id} did not finish")


def test_token_carries_the_free_credits_and_the_balance_agrees(client):
    token = client.token
    assert token is not None
    assert token.user_id.startswith("anon_")
    credits = client.credits()
    assert (credits.available, credits.frozen, credits.total) == (100, 0, 100)


def test_a_second_token_for_the_same_client_id_is_refused(client, studio):
    config = NemoConfig(base_url=studio.url)
    with build_http_client(config) as http, pytest.raises(RateLimited) as caught:
        NemoClient(http, config).anonymous_token(CLIENT_ID)
    assert caught.value.retry_after > 0


def test_session_upload_by_url_and_state_list_the_files(client, photos):
    session = client.create_session("en")
    upload = client.upload_urls(session.session_id, urls(photos))
    assert [f.filename for f in upload.files] == ["photo0.jpg", "photo1.jpg", "photo2.jpg"]
    assert all((f.width, f.height) == (640, 480) for f in upload.files)
    state = client.state(session.session_id)
    assert len(state.video_infos) == 3


def test_upload_of_files_streams_them_and_they_are_served_back(client, photos, tmp_path):
    _, folder = photos
    session = client.create_session("en")
    upload = client.upload_files(session.session_id, [folder / "photo1.jpg"])
    (uploaded,) = upload.files
    assert uploaded.file_type == "image"
    served = httpx.get(uploaded.cdn_url, timeout=10)
    assert served.content == (folder / "photo1.jpg").read_bytes()


def test_a_chat_turn_builds_the_timeline_and_says_what_it_did(client, photos):
    session = client.create_session("en")
    client.upload_urls(session.session_id, urls(photos))
    turn = Turn.collect(
        client.chat(session.session_id, "a 9:16 video with the title 'Summer Sale' and music")
    )
    assert any(isinstance(e, Text) for e in turn.events)
    assert any(isinstance(e, ToolResult) for e in turn.events)
    assert not turn.silent
    draft = client.state(session.session_id).draft
    assert draft.is_exportable
    assert "Summer Sale" in draft.summary()
    # a generation turn costs 100 credits: the free ones are gone
    assert client.credits().available == 0


def test_a_turn_that_cannot_be_paid_for_is_refused_before_it_starts(client, photos):
    session = client.create_session("en")
    client.upload_urls(session.session_id, urls(photos))
    Turn.collect(client.chat(session.session_id, "make a video"))
    with pytest.raises(OutOfCredits):
        Turn.collect(client.chat(session.session_id, "make it square"))


def test_a_cut_stream_is_broken_and_the_edit_still_lands(client, studio, photos):
    session = client.create_session("en")
    client.upload_urls(session.session_id, urls(photos))
    studio.faults(stream_cut={"count": 1})
    with pytest.raises(StreamBroken):
        Turn.collect(client.chat(session.session_id, "make a video"))
    deadline = time.monotonic() + 20
    while not client.state(session.session_id).draft.is_exportable:
        assert time.monotonic() < deadline, "the edit never landed"
        time.sleep(0.1)


def test_a_silent_close_is_a_closed_turn_without_text(client, studio, photos):
    session = client.create_session("en")
    client.upload_urls(session.session_id, urls(photos))
    studio.faults(silent_close={"count": 1})
    turn = Turn.collect(client.chat(session.session_id, "make a video"))
    assert turn.silent
    assert client.state(session.session_id).draft.is_exportable


def test_render_download_cancel_and_duplicate_id(client, photos, tmp_path):
    session = client.create_session("en")
    client.upload_urls(session.session_id, urls(photos))
    Turn.collect(client.chat(session.session_id, "a short square video"))
    draft = client.state(session.session_id).draft.to_json()

    client.start_render("render_client_1", session.session_id, draft)
    with pytest.raises(DuplicateRenderId):
        client.start_render("render_client_1", session.session_id, draft)
    status = wait_for_render(client, "render_client_1")
    assert status.status is RenderState.COMPLETED
    saved = client.download(status, tmp_path / "video.mp4")
    with av.open(str(saved.path)) as container:
        video = container.streams.video[0].codec_context
        assert (video.width, video.height) == (1080, 1080)
        assert container.streams.audio
    # the proxy endpoint serves the same file
    proxied = client.download("render_client_1", tmp_path / "again.mp4")
    assert proxied.path.read_bytes() == saved.path.read_bytes()

    client.start_render("render_client_2", session.session_id, draft)
    client.cancel_render("render_client_2")
    assert wait_for_render(client, "render_client_2").status is RenderState.FAILED


def test_export_without_an_attribution_header_is_blocked(studio):
    config = NemoConfig(base_url=studio.url)

    def drop_platform(request: httpx.Request) -> None:
        del request.headers["X-Skill-Platform"]

    with build_http_client(config) as http:
        http.event_hooks["request"].append(drop_platform)
        client = NemoClient(http, config)
        client.anonymous_token("6f1c2a3e-0000-4000-8000-000000000002")
        session = client.create_session("en")
        with pytest.raises(ExportBlocked):
            client.start_render("render_x", session.session_id, {"t": [{"tt": 0, "sg": [{}]}]})


def test_unknown_session_and_dead_token(client, studio):
    with pytest.raises(SessionNotFound):
        client.state("sess_00000000000000000000000000000000")
    studio.faults(token_expiry={"count": 1})
    with pytest.raises(TokenInvalid):
        client.credits()


def test_file_upload_type_comes_from_the_bytes(client, photos, tmp_path):
    _, folder = photos
    session = client.create_session("en")
    with (folder / "photo2.jpg").open("rb") as content:
        renamed = FileUpload("song.mp3", content)
        (uploaded,) = client.upload_files(session.session_id, [renamed]).files
    assert uploaded.file_type == "image"


@pytest.fixture
def paid_client(studio: StudioProcess) -> Iterator[NemoClient]:
    config = NemoConfig(base_url=studio.url, token=Secret(PAID_TOKEN), turn_limit=60)
    with build_http_client(config) as http:
        yield NemoClient(http, config)


def test_summary_and_diff_of_real_studio_drafts_word_for_word(paid_client, photos):
    client = paid_client
    session = client.create_session("en")
    client.upload_urls(session.session_id, urls(photos))
    Turn.collect(client.chat(session.session_id, "a 9-second video titled 'Sale' with calm music"))
    before = client.state(session.session_id).draft
    Turn.collect(client.chat(session.session_id, "change the title to 'Last Chance'"))
    after = client.state(session.session_id).draft
    assert before.summary() == SUMMARY_BEFORE
    assert after.summary() == SUMMARY_AFTER
    assert diff(before, after) == DIFF


SUMMARY_BEFORE = (
    'Timeline (3 tracks): 1. Video: 3 clips (0-9s) 2. BGM: Calm (0-9s, 35%) 3. Title: "Sale" (0-3s)'
)
SUMMARY_AFTER = (
    "Timeline (3 tracks): 1. Video: 3 clips (0-9s) 2. BGM: Calm (0-9s, 35%) "
    '3. Title: "Last Chance" (0-3s)'
)
DIFF = 'Changed Title: "Sale" (0-3s) → "Last Chance" (0-3s).'
