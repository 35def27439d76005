"""``reelyard flower``: it asks for a password, and hands Flower the broker and the auth.

The dashboard itself, served to a browser with a worker in it, is tested in
tests/e2e/test_browser.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from click.testing import CliRunner

import workers.app
from reelyard.cli import main
from reelyard.settings import Settings, SettingsError
from workers.flower import FLOWER_AUTH_VARIABLE

NO_SETTINGS = {"REELYARD_FLOWER_BASIC_AUTH": None, "REELYARD_STANDALONE": None}


class FakeCelery:
    def __init__(self, broker_url: str) -> None:
        self.broker_url = broker_url
        self.started: list[tuple[list[str], str | None]] = []

    def start(self, argv: list[str]) -> None:
        self.started.append((argv, os.environ.get(FLOWER_AUTH_VARIABLE)))


@pytest.fixture
def celery(monkeypatch: pytest.MonkeyPatch) -> list[FakeCelery]:
    """Replaces the Celery app the command builds; the apps it built."""
    made: list[FakeCelery] = []

    def create_celery(settings: Settings) -> Any:
        made.append(FakeCelery(settings.broker_url))
        return made[-1]

    monkeypatch.setattr(workers.app, "create_celery", create_celery)
    # the command writes Flower's variable: set here, so that it is undone after
    monkeypatch.setenv(FLOWER_AUTH_VARIABLE, "")
    monkeypatch.delenv(FLOWER_AUTH_VARIABLE)
    return made


def test_refuses_to_start_without_a_password(celery: list[FakeCelery]) -> None:
    result = CliRunner().invoke(main, ["flower"], env=NO_SETTINGS)
    assert result.exit_code == 1
    assert "REELYARD_FLOWER_BASIC_AUTH=user:password" in result.output
    assert "--no-auth" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert celery == []


def test_runs_flower_on_the_broker_with_the_password(celery: list[FakeCelery]) -> None:
    env = {
        **NO_SETTINGS,
        "REELYARD_BROKER_URL": "redis://127.0.0.1:6379/9",
        "REELYARD_FLOWER_BASIC_AUTH": "ops:s3cret",
    }
    result = CliRunner().invoke(main, ["flower", "--port", "5600"], env=env)
    assert result.exit_code == 0, result.output
    [app] = celery
    assert app.broker_url == "redis://127.0.0.1:6379/9"
    [(argv, auth)] = app.started
    assert argv[:3] == ["flower", "--address=127.0.0.1", "--port=5600"]
    # through Flower's environment, never its command line (ps shows that)
    assert auth == "ops:s3cret"
    assert not any("s3cret" in word for word in argv)


@pytest.mark.parametrize(
    ("args", "env"),
    [(["flower", "--no-auth"], {}), (["flower"], {"REELYARD_STANDALONE": "1"})],
    ids=["no-auth", "standalone"],
)
def test_development_may_run_without_a_password(
    celery: list[FakeCelery], args: list[str], env: dict[str, str]
) -> None:
    result = CliRunner().invoke(main, args, env={**NO_SETTINGS, **env})
    assert result.exit_code == 0, result.output
    [(_, auth)] = celery[0].started
    assert auth is None


def test_a_malformed_password_setting_is_refused_without_echoing_it(
    celery: list[FakeCelery],
) -> None:
    env = {**NO_SETTINGS, "REELYARD_FLOWER_BASIC_AUTH": "only-a-secret-no-user"}
    result = CliRunner().invoke(main, ["flower"], env=env)
    assert result.exit_code == 1
    assert "expected user:password" in result.output
    assert "only-a-secret" not in result.output
    assert celery == []


def test_settings_read_the_flower_password_and_keep_it_out_of_repr() -> None:
    settings = Settings.from_env({"REELYARD_FLOWER_BASIC_AUTH": "ops:a:b,dev:c"})
    assert settings.flower_basic_auth == "ops:a:b,dev:c"
    assert "ops:a:b" not in repr(settings)
    assert Settings.from_env({}).flower_basic_auth is None
    for bad in (":nouser", "nopassword:", "ops:ok,broken"):
        with pytest.raises(SettingsError):
            Settings.from_env({"REELYARD_FLOWER_BASIC_AUTH": bad})
