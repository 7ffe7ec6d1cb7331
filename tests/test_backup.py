"""deploy/backup-db.sh and deploy/restore-db.sh: a restored backup verifies the ledger."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lorchestre.extensions import db

from . import infra
from .conftest import ROOT, make_app
from .test_ledger import append_some

BACKUP = ROOT / "deploy" / "backup-db.sh"
RESTORE = ROOT / "deploy" / "restore-db.sh"
VERIFIED = re.compile(r"ok: (\d+) records, head hash ([0-9a-f]{64})")


def run(script: Path, *args: str, url: str) -> str:
    env = {
        **os.environ,
        "LORCHESTRE_SQLALCHEMY_DATABASE_URI": url,
        "LORCHESTRE_SECRET_KEY": "backup-test-secret-key-0123456789abcdef",
        "PYTHON": sys.executable,
        "FLASK": str(Path(sys.executable).with_name("flask")),
    }
    result = subprocess.run(
        [str(script), *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def verified(app) -> tuple[str, str]:
    output = app.test_cli_runner().invoke(args=["consent", "verify"]).output
    return VERIFIED.search(output).groups()


def test_sqlite_backup_restores_and_verifies(tmp_path):
    source = f"sqlite:///{tmp_path / 'live.db'}"
    app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=source)
    append_some(app, 9)
    expected = verified(app)
    backup = Path(run(BACKUP, str(tmp_path / "backups"), url=source).strip())
    assert backup.name.endswith(".sqlite3") and backup.stat().st_mode & 0o077 == 0
    append_some(app, 2)  # written after the backup: gone once restored

    target = tmp_path / "restored.db"
    target.write_bytes(b"not a database")  # an existing file is kept aside, not lost
    output = run(RESTORE, str(backup), "--yes", url=f"sqlite:///{target}")
    assert VERIFIED.search(output).groups() == expected
    assert list(tmp_path.glob("restored.db.before-restore-*"))


def test_restore_refuses_without_yes(tmp_path):
    result = subprocess.run(
        [str(RESTORE), str(tmp_path / "x")],
        env={**os.environ, "LORCHESTRE_SQLALCHEMY_DATABASE_URI": "sqlite:///x"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--yes" in result.stderr


def test_backups_are_pruned_to_the_newest(tmp_path, monkeypatch):
    source = f"sqlite:///{tmp_path / 'live.db'}"
    make_app(tmp_path, SQLALCHEMY_DATABASE_URI=source)
    backups = tmp_path / "backups"
    backups.mkdir()
    for day in range(1, 5):  # older backups by name
        (backups / f"lorchestre-2020010{day}T000000Z.sqlite3").write_bytes(b"")
    monkeypatch.setenv("LORCHESTRE_BACKUP_KEEP", "2")
    newest = run(BACKUP, str(backups), url=source).strip()
    kept = sorted(p.name for p in backups.iterdir())
    assert kept == ["lorchestre-20200104T000000Z.sqlite3", Path(newest).name]


def test_postgres_backup_restores_and_verifies(tmp_path):
    """pg_dump -Fc, then pg_restore into another database, twice (the second over data)."""
    if not shutil.which("pg_dump"):
        infra.service_missing("pg_dump is not installed")
    with (
        infra.postgres_database("backup_src") as source,
        infra.postgres_database("backup_dst") as target,
    ):
        app = make_app(tmp_path, SQLALCHEMY_DATABASE_URI=source)
        append_some(app, 7)
        append_some(app, 2, locale="en")
        expected = verified(app)
        backup = run(BACKUP, str(tmp_path / "backups"), url=source).strip()
        assert backup.endswith(".dump")
        for _ in range(2):
            output = run(RESTORE, backup, "--yes", url=target)
            assert VERIFIED.search(output).groups() == expected
        with app.app_context():
            db.engine.dispose()
