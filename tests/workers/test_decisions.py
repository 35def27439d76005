"""The pipeline's decisions on tables of cases: no Celery, database or network."""

from __future__ import annotations

import pytest

from nemo import (
    CanvasConfig,
    Draft,
    DuplicateRenderId,
    ExportBlocked,
    MediaTooLarge,
    OutOfCredits,
    ProtocolError,
    RateLimited,
    ServerError,
    SessionNotFound,
    StreamBroken,
    TokenInvalid,
    TransportError,
    UnsupportedMedia,
)
from nemo.errors import ApiError, BreakReason
from workers.decisions import (
    MESSAGES,
    Attempts,
    EditLanded,
    ErrorCode,
    Fail,
    JobOptions,
    Policy,
    ReadAgain,
    ReadState,
    Repair,
    RepairKind,
    Retry,
    after_unknown_edit,
    backoff_s,
    compose_instruction,
    decide,
    recovery_delay_s,
    render_id,
    verify_draft,
)

POLICY = Policy()


def api(kind, code, status, **extra):
    return kind(code=code, http_status=status, message="upstream says no", **extra)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (api(OutOfCredits, 2001, 402), ErrorCode.OUT_OF_CREDITS),
        (api(UnsupportedMedia, 4001, 415), ErrorCode.UNSUPPORTED_MEDIA),
        (api(MediaTooLarge, 4002, 413), ErrorCode.MEDIA_TOO_LARGE),
        (api(ExportBlocked, 402, 402), ErrorCode.EXPORT_BLOCKED),
        (api(ApiError, 400, 400), ErrorCode.INVALID_INPUT),
    ],
)
def test_errors_that_waiting_cannot_fix_fail_at_once_with_a_stable_code(error, code):
    decision = decide(error, Attempts(), POLICY)
    assert decision == Fail(code, MESSAGES[code])


@pytest.mark.parametrize(
    "error",
    [
        TransportError("connection reset"),
        ProtocolError("not JSON"),
        api(ServerError, None, 503),
        api(RateLimited, 429, 429, retry_after=0.0),
    ],
)
def test_transient_errors_are_retried_with_backoff(error):
    decision = decide(error, Attempts(retries=2), POLICY, jitter=lambda: 0.0)
    assert isinstance(decision, Retry)
    assert decision.after_s == pytest.approx(4.0)  # half of 2 s * 2**2 with no jitter


def test_rate_limit_waits_at_least_its_retry_after():
    error = api(RateLimited, 429, 429, retry_after=45.0)
    decision = decide(error, Attempts(retries=0), POLICY, jitter=lambda: 0.0)
    assert decision == Retry(45.0, "RateLimited")


def test_retries_stop_after_the_policy_allows():
    decision = decide(TransportError("down"), Attempts(retries=8), POLICY)
    assert decision == Fail(
        ErrorCode.UPSTREAM_UNAVAILABLE, MESSAGES[ErrorCode.UPSTREAM_UNAVAILABLE]
    )


@pytest.mark.parametrize(
    ("error", "attempts", "expected"),
    [
        (api(TokenInvalid, 1001, 401), Attempts(), RepairKind.NEW_TOKEN),
        (api(TokenInvalid, 1001, 401), Attempts(token_repairs=2), RepairKind.NEW_TOKEN),
        (api(TokenInvalid, 1001, 401), Attempts(token_repairs=3), ErrorCode.UPSTREAM_AUTH),
        (api(SessionNotFound, 1002, 404), Attempts(), RepairKind.NEW_SESSION),
        (
            api(SessionNotFound, 1002, 404),
            Attempts(session_repairs=2),
            ErrorCode.UPSTREAM_UNAVAILABLE,
        ),
    ],
)
def test_token_and_session_losses_are_repaired_a_bounded_number_of_times(error, attempts, expected):
    decision = decide(error, attempts, POLICY)
    if isinstance(expected, RepairKind):
        assert isinstance(decision, Repair)
        assert decision.kind is expected
    else:
        assert isinstance(decision, Fail)
        assert decision.code is expected


def test_a_broken_stream_is_never_resent_the_state_is_read_after_30_s():
    decision = decide(StreamBroken(BreakReason.RESET, "connection reset"), Attempts(), POLICY)
    assert decision == ReadState(30.0, "the stream broke mid-turn")


def test_a_duplicate_render_id_is_not_a_retry():
    decision = decide(api(DuplicateRenderId, None, 409), Attempts(), POLICY)
    assert not isinstance(decision, Retry)


@pytest.mark.parametrize("retries", range(12))
@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_backoff_grows_with_retries_stays_under_its_cap_and_never_below_half(retries, jitter):
    wait = backoff_s(retries, POLICY, jitter=lambda: jitter)
    ceiling = min(POLICY.cap_s, POLICY.base_s * 2**retries)
    assert ceiling / 2 <= wait <= ceiling


def test_backoff_is_scaled_for_tests():
    fast = Policy(time_scale=0.01)
    assert backoff_s(3, fast, jitter=lambda: 1.0) == pytest.approx(0.16)


def test_after_a_broken_stream_the_state_is_read_every_60_s_five_times_then_given_up():
    delays = [recovery_delay_s(n, POLICY) for n in range(7)]
    assert delays == [60.0, 60.0, 60.0, 60.0, 60.0, None, None]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (JobOptions(), "turn these photos into a video"),
        (
            JobOptions(aspect_ratio="9:16", duration_s=15, title="Summer Sale", music=True),
            (
                "turn these photos into a video\nThe aspect ratio must be 9:16 vertical. "
                "The video must be 15 seconds long. Use the title 'Summer Sale'. "
                "Add background music."
            ),
        ),
        (
            JobOptions(aspect_ratio="1:1", resolution="720p", music=False, language="fr"),
            (
                "turn these photos into a video\nThe aspect ratio must be 1:1 square. "
                "Export in 720p. No music. Write any text in the language 'fr'."
            ),
        ),
        (
            JobOptions(music="https://cdn.example.com/song.mp3", duration_s=7.5),
            (
                "turn these photos into a video\nThe video must be 7.5 seconds long. "
                "Use the uploaded audio file as the background music."
            ),
        ),
    ],
)
def test_instruction_is_the_prompt_then_every_option_spelled_out(options, expected):
    assert compose_instruction("  turn these photos into a video ", options) == expected


def test_options_are_read_from_the_api_json_ignoring_wrong_types():
    options = JobOptions.from_json(
        {"aspect_ratio": "4:5", "duration_s": 20, "music": "yes please", "title": "  ", "x": 1}
    )
    assert options == JobOptions(aspect_ratio="4:5", duration_s=20.0, music="yes please")


DRAFT = Draft(
    {
        "d": 15000,
        "t": [
            {"tt": 0, "sg": [{"s": 0, "d": 7750}, {"s": 7250, "d": 7750}]},
            {"tt": 1, "sg": [{"s": 0, "d": 15000, "m": {"volume": 0.35}}]},
            {"tt": 7, "sg": [{"s": 0, "d": 3000, "text": "Summer Sale"}]},
        ],
    }
)
VERTICAL = CanvasConfig(width=1080, height=1920, aspect_ratio="9:16")


@pytest.mark.parametrize(
    ("canvas", "options", "mismatches"),
    [
        (VERTICAL, JobOptions(aspect_ratio="9:16", duration_s=15, title="Summer Sale"), []),
        (VERTICAL, JobOptions(duration_s=16), []),  # within a second
        (VERTICAL, JobOptions(duration_s=30), ["length is 15 s, 30 s was asked"]),
        (
            CanvasConfig(width=1920, height=1080),
            JobOptions(aspect_ratio="9:16"),
            ["aspect ratio is 1920x1080, 9:16 was asked"],
        ),
        (CanvasConfig(aspect_ratio="1:1"), JobOptions(aspect_ratio="1:1"), []),
        (VERTICAL, JobOptions(title="summer sale"), []),  # the case of a title is free
        (VERTICAL, JobOptions(title="Last Chance"), ["the title 'Last Chance' is missing"]),
        (VERTICAL, JobOptions(music=False), ["there is music, none was asked"]),
    ],
)
def test_draft_verification_names_each_mismatch(canvas, options, mismatches):
    assert verify_draft(DRAFT, canvas, options) == mismatches


def test_render_id_is_derived_from_the_job_and_attempt_and_is_stable():
    assert render_id("job_01HZX", 1) == "render_job_01HZX_1"
    assert render_id("job_01HZX", 1) == render_id("job_01HZX", 1)
    assert render_id("job_01HZX", 2) != render_id("job_01HZX", 1)
    assert render_id("job/../x", 1) == "render_job____x_1"


UNKNOWN = ErrorCode.EDIT_OUTCOME_UNKNOWN
EMPTY = Draft({"t": []})
EDITED = Draft({"t": [{"tt": 0, "sg": [{"s": 0, "d": 3000, "src": "a.jpg"}]}]})


@pytest.mark.parametrize(
    ("before", "now", "reads", "expected"),
    [
        (None, EDITED, 1, EditLanded()),
        (EMPTY, EDITED, 3, EditLanded()),
        (EDITED, EDITED, 1, ReadAgain(60.0)),  # unchanged: not yet
        (None, None, 4, ReadAgain(60.0)),
        (
            EMPTY,
            EMPTY,
            5,
            Fail(ErrorCode.EDIT_OUTCOME_UNKNOWN, MESSAGES[ErrorCode.EDIT_OUTCOME_UNKNOWN]),
        ),
        (None, EMPTY, 2, ReadAgain(60.0)),  # changed, but nothing to export yet
    ],
)
def test_after_a_broken_stream_the_edit_counts_only_when_the_state_shows_it(
    before, now, reads, expected
):
    assert after_unknown_edit(before, now, reads, POLICY) == expected
