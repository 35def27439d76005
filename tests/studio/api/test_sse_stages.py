"""Generation in two stages, seen from outside: the raw timeline reaches the state first,
then the one with music, title and effects. The clock runs slower here (a stage lasts
0.3 s or more) so that a poll of the state cannot miss the first one."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.studio.api.helpers import GENERATE, User

pytestmark = pytest.mark.slow
PAID = "tok_stages"
STUDIO_ENV = {"STUDIO_PAID_TOKENS": f"{PAID}:1000", "STUDIO_TIME_SCALE": "0.02"}


def test_the_raw_timeline_is_in_the_state_before_post_production(chatty, paid):
    session_id = paid.session()
    seen = []  # every different draft the state showed while the turn ran
    done = threading.Event()

    def watch():
        with httpx.Client(base_url=paid.http.base_url, timeout=30) as http:
            watcher = User(http, paid.token, paid.user_id)
            while not done.is_set():
                draft = watcher.draft(session_id)
                if not seen or seen[-1] != draft:
                    seen.append(draft)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        stream = paid.chat(session_id, GENERATE)
    finally:
        done.set()
        watcher.join()
    assert stream.status == 200
    empty, raw, final = seen
    assert empty == {}
    assert [track["tt"] for track in raw["t"]] == [0]  # the photos alone, first
    assert sorted(track["tt"] for track in final["t"]) == [0, 1, 7]  # then music and title
    photos = [[segment["src"] for segment in draft["t"][0]["sg"]] for draft in (raw, final)]
    assert photos[0] == photos[1]  # the same photos, in the same order
