"""``STUDIO_TURN_S`` gives every chat turn one known length in wall time, for load
tests, even when everything else runs at time scale 0."""

from __future__ import annotations

import time

from tests.studio.api.helpers import User

PAID = "tok_fixed_turns"
STUDIO_ENV = {
    "STUDIO_TIME_SCALE": "0",
    "STUDIO_TURN_S": "1.5",
    "STUDIO_PAID_TOKENS": f"{PAID}:1000000",
}


def test_every_turn_lasts_the_configured_time(studio, client):
    user = User.paid(client, PAID)
    session_id = user.session()
    for text in ("a 3-second video", "change the title to 'Fixed'"):  # a generation, an edit
        started = time.monotonic()
        stream = user.chat(session_id, text)
        took = time.monotonic() - started
        assert stream.status == 200
        assert stream.of_type("tool_result")
        # the last action comes at 90 % of the turn; drawn lengths would be 10-90 s
        assert 1.2 <= took <= 5.0, took
