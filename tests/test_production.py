"""Production shape: configuration defaults, rate-limit storage, deploy/ files."""

from __future__ import annotations

from lorchestre import create_app
from lorchestre.config import DefaultConfig


def test_nested_env_override_does_not_leak_into_later_apps(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path}/x.db"
    monkeypatch.setenv("LORCHESTRE_RATELIMIT_STORAGE_OPTIONS__key_prefix", "other")
    first = create_app({"SQLALCHEMY_DATABASE_URI": url})
    assert first.config["RATELIMIT_STORAGE_OPTIONS"]["key_prefix"] == "other"
    monkeypatch.delenv("LORCHESTRE_RATELIMIT_STORAGE_OPTIONS__key_prefix")
    second = create_app({"SQLALCHEMY_DATABASE_URI": url})
    assert second.config["RATELIMIT_STORAGE_OPTIONS"]["key_prefix"] == "lorchestre"
    assert DefaultConfig.RATELIMIT_STORAGE_OPTIONS["key_prefix"] == "lorchestre"


def test_rate_limits_fail_open_with_a_per_process_fallback():
    """Chosen policy (docs/reliability.md): a dead Redis never blocks a consent."""
    assert DefaultConfig.RATELIMIT_IN_MEMORY_FALLBACK_ENABLED is True
    assert DefaultConfig.RATELIMIT_SWALLOW_ERRORS is True
    options = DefaultConfig.RATELIMIT_STORAGE_OPTIONS
    assert options["socket_connect_timeout"] <= 1 and options["socket_timeout"] <= 1
