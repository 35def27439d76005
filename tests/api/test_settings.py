"""The settings object: read once from the environment, with the documented names."""

from __future__ import annotations

from pathlib import Path

import pytest

from reelyard.settings import DEFAULT_BROKER_URL, DEFAULT_DATABASE_URL, Settings, SettingsError


def test_defaults_serve_a_developer_machine():
    settings = Settings.from_env({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.broker_url == settings.redis_url == DEFAULT_BROKER_URL
    assert settings.storage_dir == Path(".reelyard/videos")
    assert settings.allow_private_urls is False
    assert settings.public_url == "http://127.0.0.1:8000"


def test_every_documented_variable_is_read():
    settings = Settings.from_env(
        {
            "REELYARD_DATABASE_URL": "sqlite:///x.db",
            "REELYARD_BROKER_URL": "redis://broker:6379/1",
            "REELYARD_REDIS_URL": "redis://cache:6379/2",
            "REELYARD_STORAGE_DIR": "/videos",
            "REELYARD_DATA_DIR": "/data",
            "REELYARD_ALLOW_PRIVATE_URLS": "on",
            "REELYARD_PUBLIC_URL": "https://api.example.com/",
            "REELYARD_RATE_LIMIT": "10/second;100/minute",
            "REELYARD_AUTH_CACHE_S": "0",
        }
    )
    assert settings.database_url == "sqlite:///x.db"
    assert settings.broker_url == "redis://broker:6379/1"
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.storage_dir == Path("/videos")
    assert settings.data_dir == Path("/data")
    assert settings.allow_private_urls is True
    assert settings.public_url == "https://api.example.com"
    assert settings.rate_limit == "10/second;100/minute"
    assert settings.auth_cache_s == 0


def test_the_pipelines_variables_are_read():
    settings = Settings.from_env(
        {
            "REELYARD_TIME_SCALE": "0.01",
            "REELYARD_LEASE_S": "5",
            "REELYARD_RENDER_POLL_S": "10",
            "REELYARD_RENDER_TIMEOUT_S": "60",
            "REELYARD_JOB_DEADLINE_S": "600",
            "REELYARD_UPLOAD_MODE": "FILE",
            "REELYARD_MAX_CORRECTIONS": "0",
            "REELYARD_CREDITS_EVERY_S": "0",
            "REELYARD_RECONCILE_EVERY_S": "2",
            "REELYARD_CONTINUE_STAGES": "off",
        }
    )
    assert (settings.time_scale, settings.lease_s, settings.render_poll_s) == (0.01, 5, 10)
    assert (settings.render_timeout_s, settings.job_deadline_s) == (60, 600)
    assert (settings.upload_mode, settings.max_corrections) == ("file", 0)
    assert (settings.credits_every_s, settings.reconcile_every_s) == (0, 2)
    assert settings.continue_stages is False


def test_the_redis_url_defaults_to_the_broker():
    settings = Settings.from_env({"REELYARD_BROKER_URL": "redis://broker:6379/3"})
    assert settings.redis_url == "redis://broker:6379/3"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REELYARD_ALLOW_PRIVATE_URLS", "maybe"),
        ("REELYARD_RATE_LIMIT", "lots"),
        ("REELYARD_DATABASE_POOL_SIZE", "0"),
        ("REELYARD_EVENTS_POLL_S", "-1"),
        ("REELYARD_AUTH_CACHE_S", "soon"),
        ("REELYARD_TIME_SCALE", "-0.5"),
        ("REELYARD_LEASE_S", "0"),
        ("REELYARD_UPLOAD_MODE", "carrier-pigeon"),
        ("REELYARD_MAX_CORRECTIONS", "-1"),
        ("REELYARD_CONTINUE_STAGES", "perhaps"),
    ],
)
def test_unusable_values_are_refused_with_their_name(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        Settings.from_env({}).broker_url = "x"  # type: ignore[misc]
