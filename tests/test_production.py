"""Production shape: configuration defaults, rate-limit storage, deploy/ files."""

from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lorchestre import create_app
from lorchestre.config import DefaultConfig
from lorchestre.security import InsecureConfiguration

from .conftest import ROOT


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


# --- deploy/ -----------------------------------------------------------------------

DEPLOY = ROOT / "deploy"


def env_example_names() -> set[str]:
    text = (DEPLOY / "env.example").read_text()
    return set(re.findall(r"^#?LORCHESTRE_([A-Z0-9_]+)=", text, re.M))


def test_env_example_lists_every_setting():
    settings = {name for name in vars(DefaultConfig) if name.isupper()}
    missing = settings - env_example_names()
    assert not missing, f"add to deploy/env.example: {sorted(missing)}"


def sourced_env_example(**overrides: str) -> dict[str, str]:
    """The variables a shell (like systemd) gets from env.example."""
    script = "set -a; . deploy/env.example; env -0"
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, capture_output=True, check=True, env={}
    )
    pairs = (item.split("=", 1) for item in result.stdout.decode().split("\0") if item)
    env = {k: v for k, v in pairs if k.startswith(("LORCHESTRE_", "GUNICORN_"))}
    return env | overrides


def test_env_example_refuses_to_start_until_the_secret_is_set(monkeypatch):
    for name, value in sourced_env_example().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InsecureConfiguration):
        create_app()


def test_env_example_parses_into_the_production_config(monkeypatch, tmp_path):
    env = sourced_env_example(
        LORCHESTRE_SECRET_KEY="s" * 48,
        LORCHESTRE_SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path}/x.db",
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app()
    assert app.config["ENV_NAME"] == "production"
    assert app.config["TRUSTED_HOSTS"] == ["www.lorchestreparfum.com"]
    assert app.config["PROXY_COUNT"] == 1
    assert app.config["RATELIMIT_STORAGE_URI"].startswith("redis://")
    assert app.config["BASE_URL"] == "https://www.lorchestreparfum.com"
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert env["GUNICORN_BIND"].startswith("127.0.0.1:8000")


def test_gunicorn_config_is_gthread_sized_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    monkeypatch.setenv("GUNICORN_THREADS", "5")
    monkeypatch.setenv("GUNICORN_BIND", "127.0.0.1:8001, 10.0.0.11:8001")
    settings = runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))
    assert settings["worker_class"] == "gthread"
    assert (settings["workers"], settings["threads"]) == (3, 5)
    assert settings["bind"] == ["127.0.0.1:8001", "10.0.0.11:8001"]
    assert settings["preload_app"] is False
    assert "%(h)s" not in settings["access_log_format"]  # no client address logged


def test_gunicorn_loads_the_app_with_this_config(tmp_path):
    env = {
        **os.environ,
        "LORCHESTRE_SECRET_KEY": "s" * 48,
        "LORCHESTRE_SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/x.db",
    }
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "--check-config", "-c",
         "deploy/gunicorn.conf.py", "wsgi:app"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]


def test_systemd_units_are_valid(tmp_path):
    """systemd-analyze verify, with /srv/lorchestre pointed at this checkout."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    for tool in ("gunicorn", "flask"):
        (tmp_path / ".venv" / "bin" / tool).symlink_to(
            Path(sys.executable).with_name(tool)
        )
    (tmp_path / "deploy").symlink_to(DEPLOY)
    units = []
    for unit in sorted((DEPLOY / "systemd").iterdir()):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/srv/lorchestre", str(tmp_path)))
        units.append(str(copy))
    result = subprocess.run(
        ["systemd-analyze", "verify", *units],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(tmp_path) in line or "lorchestre" in line
    ]
    assert not problems, problems
    timers = {u.name for u in (DEPLOY / "systemd").glob("*.timer")}
    assert timers == {"lorchestre-outbox.timer", "lorchestre-retention.timer",
                      "lorchestre-backup.timer", "lorchestre-anchor.timer"}  # fmt: skip
    outbox = (DEPLOY / "systemd" / "lorchestre-outbox.service").read_text()
    retention = (DEPLOY / "systemd" / "lorchestre-retention.service").read_text()
    assert "flask --app lorchestre outbox send" in outbox
    assert "flask --app lorchestre retention run" in retention


def test_nginx_config_is_valid(tmp_path):
    """nginx -t on the example, with a throw-away certificate and paths."""
    if not (shutil.which("nginx") and shutil.which("openssl")):
        pytest.skip("nginx or openssl is not installed")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=t",
         "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem"),
         "-days", "1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    site = (DEPLOY / "nginx" / "lorchestre.conf").read_text()
    live = "/etc/letsencrypt/live/www.lorchestreparfum.com/"
    site = site.replace(live + "fullchain.pem", str(tmp_path / "cert.pem"))
    site = site.replace(live + "privkey.pem", str(tmp_path / "key.pem"))
    site = site.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        f"events {{}}\nhttp {{ include {tmp_path}/site.conf; }}\n"
    )
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
         "-e", str(tmp_path / "error.log")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # one trusted hop: X-Forwarded-For is replaced, never appended to
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in site
    assert "proxy_add_x_forwarded_for" not in site
