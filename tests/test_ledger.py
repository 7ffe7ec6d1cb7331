"""The hash-chained ledger: an independent verifier, tampering, concurrency, exports."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import zipfile

import pytest
import sqlalchemy as sa

from lorchestre.consent import services
from lorchestre.extensions import db
from lorchestre.models import ConsentRecord

from .conftest import ROOT

SPEC_FIELDS = {
    "seq", "consent_id", "recorded_at", "action", "choices", "policy_version",
    "banner_sha256", "locale", "channel", "gpc", "prev_hash", "hash",
}  # fmt: skip


def independent_verify(lines: list[str]) -> str:
    """Written from spec §5 alone, sharing no code with the app; returns the head hash."""
    prev = "0" * 64
    for expected_seq, line in enumerate(lines, start=1):
        rec = json.loads(line)
        assert set(rec) == SPEC_FIELDS
        assert rec["seq"] == expected_seq
        assert rec["prev_hash"] == prev
        body = dict(rec)
        del body["hash"]
        text = json.dumps(
            body, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        digest = hashlib.sha256((prev + "\n" + text).encode("utf-8")).hexdigest()
        assert digest == rec["hash"], rec["seq"]
        assert rec["recorded_at"].endswith("Z") and len(rec["recorded_at"]) == 27
        prev = rec["hash"]
    return prev


def append_some(app, count: int, locale: str = "fr") -> None:
    actions = ["accept_all", "reject_all", "custom", "withdraw"]
    with app.test_request_context(f"/{locale}/"):
        for i in range(count):
            action = actions[i % 4]
            services.record_choice(
                action=action,
                choices=services.choices_for(action, {"analytics": i % 2 == 0}),
                locale=locale,
                channel="form",
                gpc=i % 3 == 0,
                consent_id=None,
            )


def export_lines(runner, *args) -> list[str]:
    result = runner.invoke(args=["consent", "export", "--format", "jsonl", *args])
    assert result.exit_code == 0, result.output
    return [line for line in result.output.splitlines() if line]


def test_independent_verifier_agrees_with_verify(app, runner):
    append_some(app, 12)
    append_some(app, 3, locale="en")
    lines = export_lines(runner)
    assert len(lines) == 15
    head = independent_verify(lines)
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 0
    assert "15 records" in result.output and head in result.output


def test_empty_ledger_verifies(runner):
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 0 and "0 records" in result.output


def _tamper(app, statement: str, **params) -> None:
    with app.app_context():
        db.session.execute(sa.text(statement), params)
        db.session.commit()


@pytest.mark.parametrize(
    ("statement", "bad_seq"),
    [
        ("UPDATE consent_record SET analytics = NOT analytics WHERE seq = 4", 4),
        ("UPDATE consent_record SET recorded_at = recorded_at WHERE seq = 4", None),
        ("UPDATE consent_record SET policy_version = 'forged' WHERE seq = 7", 7),
        ("DELETE FROM consent_record WHERE seq = 5", 5),
        ("DELETE FROM consent_record WHERE seq = 1", 1),
    ],
)
def test_tampering_is_named(app, runner, statement, bad_seq):
    append_some(app, 10)
    _tamper(app, statement)
    result = runner.invoke(args=["consent", "verify"])
    if bad_seq is None:  # a no-op update must not be reported
        assert result.exit_code == 0
        return
    assert result.exit_code != 0
    assert f"seq {bad_seq}" in result.output


def test_reordering_two_rows_is_caught(app, runner):
    append_some(app, 6)
    _tamper(app, "UPDATE consent_record SET seq = 1000 WHERE seq = 3")
    _tamper(app, "UPDATE consent_record SET seq = 3 WHERE seq = 4")
    _tamper(app, "UPDATE consent_record SET seq = 4 WHERE seq = 1000")
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code != 0 and "seq 3" in result.output


def test_prev_hash_is_unique(app):
    append_some(app, 2)
    with app.app_context():
        first = db.session.get(ConsentRecord, 1)
        with pytest.raises(sa.exc.IntegrityError):
            db.session.execute(
                sa.update(ConsentRecord)
                .where(ConsentRecord.seq == 2)
                .values(prev_hash=first.prev_hash)
            )
            db.session.flush()
        db.session.rollback()


def test_csv_export_flattens_choices(app, runner):
    append_some(app, 4)
    result = runner.invoke(args=["consent", "export", "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == 4
    assert list(rows[0])[:8] == ["seq", "consent_id", "recorded_at", "action", "necessary",
                                  "analytics", "advertising", "personalization"]  # fmt: skip
    assert rows[0]["necessary"] == "true" and rows[1]["analytics"] == "false"
    assert rows[0]["gpc"] in ("true", "false")


def test_export_date_range_and_output_file(app, runner, tmp_path):
    append_some(app, 3)
    target = tmp_path / "out.jsonl"
    result = runner.invoke(
        args=[
            "consent",
            "export",
            "--since",
            "2000-01-01",
            "--until",
            "2999-01-01",
            "--output",
            str(target),
        ]  # fmt: skip
    )
    assert result.exit_code == 0
    assert len(target.read_text().splitlines()) == 3
    assert export_lines(runner, "--until", "2000-01-01") == []
    bad = runner.invoke(args=["consent", "export", "--since", "yesterday"])
    assert bad.exit_code != 0 and "YYYY-MM-DD" in bad.output


def test_no_personal_data_in_the_ledger(app):
    columns = set(ConsentRecord.__table__.columns.keys())
    assert not columns & {"ip", "ip_address", "email", "user_agent", "name"}


def test_audit_bundle_verifies_without_our_code(app, runner, client, tmp_path):
    shots = app.config["BANNER_SCREENSHOTS_DIR"] / "2026-11-25.1"
    shots.mkdir(parents=True)
    (shots / "banner-fr-phone.png").write_bytes(b"\x89PNG fake")
    client.get("/fr/")
    append_some(app, 5)
    append_some(app, 2, locale="en")
    target = tmp_path / "bundle.zip"
    result = runner.invoke(args=["consent", "audit-bundle", "--output", str(target)])
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(target) as bundle:
        names = set(bundle.namelist())
        assert {"ledger.jsonl", "banner_texts.json", "policy_versions.json", "declarations.toml",
                "retention.json", "manifest.json", "README.txt",
                "processing_register.fr.md", "processing_register.en.md",
                "processing_register.fr.json", "processing_register.en.json"} <= names  # fmt: skip
        register = json.loads(bundle.read("processing_register.fr.json"))
        assert register["locale"] == "fr" and register["activities"]
        manifest = json.loads(bundle.read("manifest.json"))
        for name, digest in manifest["files"].items():
            assert hashlib.sha256(bundle.read(name)).hexdigest() == digest, name
        assert "screenshots/2026-11-25.1/banner-fr-phone.png" in manifest["files"]
        lines = bundle.read("ledger.jsonl").decode().splitlines()
        assert independent_verify(lines) == manifest["head_hash"]
        assert manifest["row_count"] == 7 and manifest["first_seq"] == 1
        assert manifest["last_seq"] == 7 and manifest["verification"]["ok"] is True
        texts = {
            t["sha256"]: t["text"] for t in json.loads(bundle.read("banner_texts.json"))
        }
        for line in lines:
            rec = json.loads(line)
            text = texts[rec["banner_sha256"]]
            assert hashlib.sha256(text.encode()).hexdigest() == rec["banner_sha256"]


WORKER = """
import sys
from lorchestre import create_app
from lorchestre.consent import services
app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[1], "SECRET_KEY": "k" * 40,
                  "SQLITE_BUSY_TIMEOUT_MS": 30000})
with app.test_request_context("/fr/"):
    for i in range(int(sys.argv[2])):
        services.record_choice(action="accept_all", choices=services.choices_for("accept_all"),
                               locale="fr", channel="form", gpc=False, consent_id=None)
print("done")
"""


def test_concurrent_appends_never_fork(app, runner):
    """8 processes x 100 appends: no error, no gap, no fork (SQLite or PostgreSQL)."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, url, "100"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(8)
    ]
    for worker in workers:
        out, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err[-2000:]
        assert "done" in out
    with app.app_context():
        seqs = list(
            db.session.scalars(sa.select(ConsentRecord.seq).order_by(ConsentRecord.seq))
        )
    assert seqs == list(range(1, 801))
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 0 and "800 records" in result.output


def test_purge_leaves_a_checkpoint_and_the_rest_verifies(app, runner):
    import time_machine

    with time_machine.travel("2025-01-10 12:00:00Z", tick=False):
        append_some(app, 5)
    with time_machine.travel("2026-06-10 12:00:00Z", tick=False):
        append_some(app, 3)
    with time_machine.travel("2026-07-01 12:00:00Z", tick=False):
        dry = runner.invoke(
            args=["consent", "purge", "--older-than-days", "365", "--dry-run"]
        )
        assert "would purge 5 records (up to seq 5)" in dry.output
        assert len(export_lines(runner)) == 8
        done = runner.invoke(args=["consent", "purge", "--older-than-days", "365"])
        assert "purged 5 records" in done.output
        again = runner.invoke(args=["consent", "purge", "--older-than-days", "365"])
        assert "purged 0 records" in again.output
    lines = export_lines(runner)
    assert [json.loads(line)["seq"] for line in lines] == [6, 7, 8]
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code == 0 and "3 records" in result.output
    # appending after a purge continues the same chain
    append_some(app, 1)
    assert runner.invoke(args=["consent", "verify"]).exit_code == 0
    # deleting the first surviving record is still caught
    _tamper(app, "DELETE FROM consent_record WHERE seq = 6")
    result = runner.invoke(args=["consent", "verify"])
    assert result.exit_code != 0 and "seq 6" in result.output
