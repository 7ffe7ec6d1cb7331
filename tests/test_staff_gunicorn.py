"""The DPO's downloads under the production server: gunicorn gthread streams them whole."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime, timedelta

from lorchestre import create_app
from lorchestre.staff.exports import parse_trailer
from tests.reliability.cluster import AppServer, Visitor, flask, production_env
from tests.staff_support import (
    FAST_ARGON2,
    PASSWORD,
    create_staff,
    csrf_of,
    seed_ledger,
)
from tests.test_ledger import independent_verify

ROWS = 20_000
DPO = "dpo@lorchestreparfum.com"


def test_ledger_export_and_audit_bundle_download_whole_under_gunicorn(tmp_path):
    url = f"sqlite:///{tmp_path / 'production.db'}"
    env = production_env(url, LORCHESTRE_STAFF_ARGON2_PARAMS=json.dumps(FAST_ARGON2))
    migrated = flask("db", "upgrade", env=env)
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    app = create_app(
        {"SQLALCHEMY_DATABASE_URI": url, "STAFF_ARGON2_PARAMS": FAST_ARGON2}
    )
    now = datetime.now(UTC)
    with app.app_context():
        seed_ledger(ROWS, now - timedelta(days=20), now - timedelta(minutes=1))
    create_staff(app, DPO, "dpo")

    server = AppServer("exports", env, tmp_path)
    server.start()
    try:
        server.wait_ready()
        dpo = Visitor("203.0.113.9")
        token = csrf_of(dpo.request(server.port, "GET", "/staff/login").body)
        signed = dpo.request(
            server.port,
            "POST",
            "/staff/login",
            {"csrf_token": token, "email": DPO, "password": PASSWORD},
        )
        assert signed.status == 303, server.log_tail()
        token = csrf_of(dpo.request(server.port, "GET", "/staff/ledger").body)
        for fmt in ("jsonl", "csv"):
            export = dpo.request(
                server.port,
                "POST",
                "/staff/ledger/export",
                {"csrf_token": token, "format": fmt},
            )
            assert export.status == 200, server.log_tail()
            # Streamed as it is read, not built in memory first: no length known ahead.
            assert export.header("Content-Length") is None
            assert export.header("Transfer-Encoding") == "chunked"
            trailer = parse_trailer(export.body)
            assert trailer["intact"] and trailer["row_count"] == ROWS
        bundle = dpo.request(
            server.port, "POST", "/staff/ledger/audit-bundle", {"csrf_token": token}
        )
        assert bundle.status == 200, server.log_tail()
        with zipfile.ZipFile(io.BytesIO(bundle.body)) as archive:
            manifest = json.loads(archive.read("manifest.json"))
            lines = archive.read("ledger.jsonl").decode("utf-8").splitlines()
        assert len(lines) == manifest["row_count"] == ROWS
        assert independent_verify(lines) == manifest["head_hash"]
        assert bundle.header("X-Ledger-Head-Hash") == manifest["head_hash"]
    finally:
        server.stop()
