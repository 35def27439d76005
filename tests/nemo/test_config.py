"""Settings are read once from a given environment; importing reads nothing."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

import reelyard
from nemo import PRODUCTION_BASE_URL, NemoConfig, Secret, build_http_client


def test_from_env_reads_the_nemo_variables():
    settings = NemoConfig.from_env(
        {
            "NEMO_API_BASE": "http://127.0.0.1:8600",
            "NEMO_TOKEN": "nmv_usr_abcdef",
            "NEMO_CLIENT_ID": "c0ffee",
            "NEMO_SKILL_SOURCE": "acme",
            "NEMO_SKILL_PLATFORM": "linux",
            "UNRELATED": "x",
        }
    )
    assert settings.base_url == "http://127.0.0.1:8600"
    assert settings.token == Secret("nmv_usr_abcdef")
    assert (settings.client_id, settings.skill_source, settings.skill_platform) == (
        "c0ffee",
        "acme",
        "linux",
    )
    assert settings.skill_version == reelyard.__version__


@pytest.mark.parametrize("environ", [{}, {"NEMO_API_BASE": "", "NEMO_TOKEN": "  "}])
def test_unset_or_blank_variables_keep_the_defaults(environ):
    settings = NemoConfig.from_env(environ)
    assert settings.base_url == PRODUCTION_BASE_URL == "https://mega-api-prod.nemovideo.ai"
    assert settings.token is None
    assert settings.client_id is None
    assert (settings.skill_source, settings.skill_platform) == ("reelyard", "unknown")
    assert (settings.heartbeat_limit, settings.turn_limit) == (600.0, 900.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"base_url": "mega-api-prod.nemovideo.ai"}, "http"),
        ({"skill_source": ""}, "402"),
        ({"skill_platform": ""}, "402"),
        ({"heartbeat_limit": 0}, "positive"),
    ],
)
def test_settings_that_cannot_work_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        NemoConfig(**overrides)


def test_settings_are_frozen():
    settings = NemoConfig()
    with pytest.raises(AttributeError):
        settings.base_url = "http://other"  # type: ignore[misc]


def test_the_http_client_gets_explicit_timeouts():
    settings = NemoConfig(connect_timeout=1, read_timeout=2, write_timeout=3, pool_timeout=4)
    with build_http_client(settings) as http:
        assert http.timeout == httpx.Timeout(connect=1, read=2, write=3, pool=4)
        assert http.follow_redirects is False


def test_importing_nemo_reads_no_environment_and_pulls_in_no_service_code():
    code = (
        "import sys, nemo, nemo.client, nemo.draft, nemo.guispeak; "
        "bad = [m for m in ('studio', 'celery', 'flask', 'sqlalchemy') if m in sys.modules]; "
        "print(bad)"
    )
    env = {"NEMO_API_BASE": "not a url", "NEMO_SKILL_SOURCE": "", "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
