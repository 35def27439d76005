"""The studio's settings from the environment: defaults, parsing, and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.config import ConfigError, EventShape, RenderMode, StatusShape, StudioConfig


def test_defaults_behave_like_the_real_service():
    config = StudioConfig.from_env({})
    assert (config.host, config.port) == ("127.0.0.1", 8600)
    assert config.time_scale == 1.0
    assert config.free_credits == 100
    assert (config.cost_generate, config.cost_edit, config.cost_export) == (100, 50, 0)
    assert config.max_upload_bytes == 200 * 1024 * 1024
    assert config.allow_private_urls is False
    assert config.silent_close_ratio == 0.3
    assert config.turn_s is None
    assert config.base_url == "http://127.0.0.1:8600"


def test_every_variable_is_read():
    config = StudioConfig.from_env(
        {
            "STUDIO_PORT": "9000",
            "STUDIO_PUBLIC_URL": "https://studio.example.com/",
            "STUDIO_DATA_DIR": "/srv/studio",
            "STUDIO_TIME_SCALE": "0.01",
            "STUDIO_SEED": "42",
            "STUDIO_EVENT_SHAPE": "adk",
            "STUDIO_STATUS_SHAPE": "top",
            "STUDIO_PAID_TOKENS": "tok_a:1000, tok_b:5",
            "STUDIO_ANONYMOUS_EXPORT": "0",
            "STUDIO_MAX_UPLOAD_MB": "1",
            "STUDIO_ALLOW_PRIVATE_URLS": "yes",
            "STUDIO_RENDER_MODE": "none",
            "STUDIO_TURN_S": "60",
        }
    )
    assert config.port == 9000
    assert config.base_url == "https://studio.example.com"
    assert config.data_dir == Path("/srv/studio")
    assert config.time_scale == 0.01
    assert config.seed == 42
    assert config.event_shape is EventShape.ADK
    assert config.status_shape is StatusShape.TOP
    assert config.paid_tokens == {"tok_a": 1000, "tok_b": 5}
    assert config.anonymous_export is False
    assert config.max_upload_bytes == 1024 * 1024
    assert config.allow_private_urls is True
    assert config.render_mode is RenderMode.NONE
    assert config.turn_s == 60.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STUDIO_PORT", "eighty"),
        ("STUDIO_PORT", "70000"),
        ("STUDIO_TIME_SCALE", "-1"),
        ("STUDIO_TIME_SCALE", "nan"),
        ("STUDIO_TIME_SCALE", "inf"),
        ("STUDIO_TURN_S", "-5"),
        ("STUDIO_TURN_S", "soon"),
        ("STUDIO_SILENT_CLOSE_RATIO", "1.5"),
        ("STUDIO_EVENT_SHAPE", "xml"),
        ("STUDIO_PAID_TOKENS", "nocredits"),
        ("STUDIO_ALLOW_PRIVATE_URLS", "maybe"),
        ("STUDIO_RENDER_QUALITY", "ultra"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        StudioConfig.from_env({name: value})
