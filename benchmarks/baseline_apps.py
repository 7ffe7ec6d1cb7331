"""The baselines served by gunicorn with the app's own settings (deploy/gunicorn.conf.py).

``hello``: bare Flask. ``insert``: a bare Flask route appending a consent-style row with
plain sqlite3 and the app's durability settings (WAL, synchronous=FULL, BEGIN
IMMEDIATE, read the head then insert, unique prev_hash), with no ORM, CSRF or cookie.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from datetime import UTC, datetime

from flask import Flask, request

hello = Flask("hello")


@hello.get("/")
def say_hello() -> str:
    """The cheapest possible Flask page."""
    return "Hello, World!"


insert = Flask("insert")
_local = threading.local()
SCHEMA = """CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY, consent_id TEXT, recorded_at TEXT, action TEXT,
    analytics INTEGER, advertising INTEGER, personalization INTEGER,
    prev_hash TEXT UNIQUE, hash TEXT UNIQUE)"""


def prepare_insert_database(path: str) -> None:
    """Create the bare route's table in WAL mode, once, before its server starts.

    Switching the journal mode needs the database to itself: eight threads doing it on
    their first request raced, and one answered "database is locked" (a 500).
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
        conn.execute(SCHEMA)
    finally:
        conn.close()


def _connection() -> sqlite3.Connection:
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(os.environ["BENCH_SQLITE_PATH"], isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA synchronous = FULL")
        _local.conn = conn
    return conn


@insert.post("/insert")
def insert_row() -> tuple[str, int]:
    """Append one row to a hash chain, durably, the bare way."""
    action = request.form.get("action", "accept_all")
    conn = _connection()
    conn.execute("BEGIN IMMEDIATE")
    try:
        head = conn.execute(
            "SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        seq, prev = head if head else (0, "0" * 64)
        now = datetime.now(UTC).isoformat()
        digest = hashlib.sha256(f"{prev}\n{seq + 1}{now}{action}".encode()).hexdigest()
        conn.execute(
            "INSERT INTO ledger VALUES (?, ?, ?, ?, 1, 1, 1, ?, ?)",
            (seq + 1, "x" * 32, now, action, prev, digest),
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return "ok", 200
