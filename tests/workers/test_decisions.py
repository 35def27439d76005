"""The pipeline's decisions on tables of cases: no Celery, database or network."""

from __future__ import annotations

import pytest

from models.jobs import Stage
from nemo import (
    CanvasConfig,
    DownloadTooLarge,
    Draft,
    DuplicateRenderId,
    ExportBlocked,
    MediaTooLarge,
    MissingClientId,
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
    MAX_RENDER_ATTEMPTS,
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
    compose_correction,
    compose_instruction,
    decide,
    next_render,
    recovery_delay_s,
    render_id,
    stage_progress,
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


# every path through decide, and the codes it cannot give


TOKEN_LOST = api(TokenInvalid, 1001, 401)
SESSION_LOST = api(SessionNotFound, 1002, 404)


@pytest.mark.parametrize(
    ("error", "attempts", "expected"),
    [
        # fatal whatever was spent: no waiting or repair can fix these
        (api(OutOfCredits, 2001, 200), Attempts(retries=8, token_repairs=3), "out_of_credits"),
        (api(UnsupportedMedia, 4001, 400), Attempts(), "unsupported_media"),
        (api(MediaTooLarge, 4002, 413), Attempts(session_repairs=2), "media_too_large"),
        (api(ExportBlocked, 402, 402), Attempts(), "export_blocked"),
        # refused for a reason nothing here can change
        (api(ApiError, 400, 400), Attempts(), "invalid_input"),
        (api(ApiError, 4004, 404), Attempts(), "invalid_input"),
        (api(DuplicateRenderId, 4009, 409), Attempts(), "invalid_input"),  # export handles it
        (DownloadTooLarge(100, 200), Attempts(), "invalid_input"),
        # retries and repairs, each until its bound
        (TransportError("reset"), Attempts(retries=7), Retry),
        (TransportError("reset"), Attempts(retries=8), "upstream_unavailable"),
        (api(ServerError, 5000, 503), Attempts(retries=9), "upstream_unavailable"),
        (api(RateLimited, 429, 429), Attempts(retries=8), "upstream_unavailable"),
        (api(MissingClientId, 400, 400), Attempts(), Retry),
        (TOKEN_LOST, Attempts(retries=8), RepairKind.NEW_TOKEN),  # retries do not count
        (TOKEN_LOST, Attempts(token_repairs=3), "upstream_auth"),
        (SESSION_LOST, Attempts(session_repairs=1), RepairKind.NEW_SESSION),
        (SESSION_LOST, Attempts(session_repairs=2), "upstream_unavailable"),
        # the edit's outcome is unknown: read, however often the stage was tried
        (StreamBroken(BreakReason.TRUNCATED, "cut"), Attempts(retries=8), ReadState),
    ],
)
def test_each_error_takes_its_one_path_through_decide(error, attempts, expected):
    decision = decide(error, attempts, POLICY, jitter=lambda: 0.5)
    match expected:
        case RepairKind():
            assert isinstance(decision, Repair)
            assert decision.kind is expected
        case str():
            assert decision == Fail(ErrorCode(expected), MESSAGES[ErrorCode(expected)])
        case _:
            assert isinstance(decision, expected)


@pytest.mark.parametrize("reason", list(BreakReason))
def test_every_kind_of_broken_stream_is_read_never_retried(reason):
    decision = decide(StreamBroken(reason, "broke"), Attempts(), POLICY)
    assert isinstance(decision, ReadState)


def test_every_delay_decide_gives_is_scaled_for_tests():
    fast = Policy(time_scale=0.01)
    broken = decide(StreamBroken(BreakReason.RESET, "reset"), Attempts(), fast)
    assert broken == ReadState(0.3, "the stream broke mid-turn")
    limited = decide(
        api(RateLimited, 429, 429, retry_after=30.0), Attempts(), fast, jitter=lambda: 0
    )
    assert limited == Retry(pytest.approx(0.3), "RateLimited")
    assert recovery_delay_s(0, fast) == pytest.approx(0.6)
    assert after_unknown_edit(EDITED, EDITED, 1, fast) == ReadAgain(pytest.approx(0.6))


def test_a_429_without_retry_after_waits_the_documented_30_s():
    error = RateLimited(429, 429, "slow down")  # the client's default when no header came
    decision = decide(error, Attempts(), POLICY, jitter=lambda: 0.0)
    assert decision == Retry(30.0, "RateLimited")


def test_every_error_code_has_a_message_a_platform_can_show():
    assert set(MESSAGES) == set(ErrorCode)
    for code, message in MESSAGES.items():
        assert message.endswith("."), code  # whole sentences, shown as they are
        assert code.value not in message
        assert "nmv_" not in message
        assert "Exception" not in message


# backoff bounds


@pytest.mark.parametrize("retry_after", [0.0, 1.0, 30.0, 45.0, 900.0])
@pytest.mark.parametrize("retries", [0, 3, 8, 20])
@pytest.mark.parametrize("jitter", [0.0, 0.5, 0.999])
def test_backoff_is_never_below_retry_after_and_at_most_half_as_long_again(
    retry_after, retries, jitter
):
    wait = backoff_s(retries, POLICY, retry_after_s=retry_after, jitter=lambda: jitter)
    ceiling = min(POLICY.cap_s, POLICY.base_s * 2**retries)
    assert wait >= retry_after
    assert wait <= max(ceiling, 1.5 * retry_after)


def test_jobs_told_the_same_retry_after_do_not_all_come_back_at_once():
    waits = {backoff_s(0, POLICY, retry_after_s=30.0, jitter=lambda j=j: j / 10) for j in range(10)}
    assert len(waits) == 10
    assert min(waits) == 30.0


@pytest.mark.parametrize("jitter", [0.0, 0.999])
def test_backoff_never_shrinks_as_retries_grow_and_stops_at_its_cap(jitter):
    waits = [backoff_s(n, POLICY, jitter=lambda: jitter) for n in range(20)]
    assert waits == sorted(waits)
    assert waits[-1] <= POLICY.cap_s
    assert waits[-1] >= POLICY.cap_s / 2


def test_backoff_reads_one_jitter_draw():
    draws = iter([0.25])
    wait = backoff_s(1, POLICY, retry_after_s=1.0, jitter=lambda: next(draws))
    assert wait == pytest.approx(4.0 * 0.625)


# instructions


@pytest.mark.parametrize(
    ("mismatches", "options", "expected"),
    [
        (
            ["aspect ratio is 16:9, 9:16 was asked"],
            JobOptions(aspect_ratio="9:16"),
            (
                "The video does not match what was asked: aspect ratio is 16:9, 9:16 was "
                "asked. Please correct it. The aspect ratio must be 9:16 vertical."
            ),
        ),
        (
            ["length is 15 s, 30 s was asked", "the title 'Sale' is missing"],
            JobOptions(duration_s=30, title="Sale", music=True),
            (
                "The video does not match what was asked: length is 15 s, 30 s was asked; "
                "the title 'Sale' is missing. Please correct it. The video must be 30 seconds "
                "long. Use the title 'Sale'. Add background music."
            ),
        ),
        (
            ["there is music, none was asked"],
            JobOptions(music=False, aspect_ratio="1:1"),
            (
                "The video does not match what was asked: there is music, none was asked. "
                "Please correct it. The aspect ratio must be 1:1 square. No music."
            ),
        ),
    ],
)
def test_a_correction_names_each_mismatch_and_restates_every_option(mismatches, options, expected):
    assert compose_correction(mismatches, options) == expected


def test_a_correction_is_one_line_without_stray_whitespace():
    text = compose_correction(["length is 1 s, 6 s was asked"], JobOptions(duration_s=6))
    assert "\n" not in text
    assert text == text.strip()


# renders


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        (1, Retry(0.0, "the render failed (out of memory); starting it once more")),
        (
            2,
            Fail(ErrorCode.RENDER_FAILED, "Rendering failed twice. Last: out of memory."),
        ),
        (3, Fail(ErrorCode.RENDER_FAILED, "Rendering failed twice. Last: out of memory.")),
    ],
)
def test_a_failed_render_gets_one_new_attempt_then_fails_the_job(attempt, expected):
    assert next_render(attempt, "out of memory") == expected


def test_every_render_attempt_has_its_own_id():
    ids = {render_id("job_01HZX", attempt) for attempt in range(1, MAX_RENDER_ATTEMPTS + 1)}
    assert len(ids) == MAX_RENDER_ATTEMPTS


# progress


@pytest.mark.parametrize(
    ("stage", "render_progress", "expected"),
    [
        ("authorize", None, 2),
        ("open_session", None, 5),
        ("upload", None, 10),
        ("edit", None, 20),
        ("verify", None, 55),
        ("export", None, 60),
        ("poll_render", None, 60),
        ("poll_render", 0.0, 60),
        ("poll_render", 50.0, 78),
        ("poll_render", 100.0, 95),
        ("poll_render", -5.0, 60),  # a backend's odd numbers are clamped
        ("poll_render", 250.0, 95),
        ("finalize", None, 96),
        ("export", 50.0, 60),  # only polling reads the render's own progress
        ("no_such_stage", None, 0),
    ],
)
def test_progress_at_each_stage(stage, render_progress, expected):
    assert stage_progress(stage, render_progress) == expected


def test_progress_never_goes_back_from_one_stage_to_the_next_and_stays_below_100():
    shown = [stage_progress(stage.value) for stage in Stage]
    assert shown == sorted(shown)
    rendering = [stage_progress("poll_render", p) for p in range(0, 101, 5)]
    assert rendering == sorted(rendering)
    assert stage_progress("export") <= min(rendering)
    assert max(rendering) < stage_progress("finalize") < 100  # 100 is the finished job's
