"""Engine set-up and the one way to open a write transaction safely on SQLite and PostgreSQL."""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event
from sqlalchemy.engine import Engine

from .extensions import db

# Set while write_transaction() opens its transaction, so the "begin" hook knows to
# take SQLite's write lock up front instead of on the first write.
_immediate = contextvars.ContextVar("sqlite_begin_immediate", default=False)


class DatabaseUnavailable(Exception):
    """The database could not be written: callers answer 503 rather than 500."""


class UTCDateTime(sa.TypeDecorator):
    """Aware UTC datetimes in and out; SQLite forgets the zone, so it is re-attached."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):  # noqa: D102
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):  # noqa: D102
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    """Current time, aware, in UTC."""
    return datetime.now(UTC)


def configure_engine(engine: Engine, busy_timeout_ms: int) -> None:
    """Install WAL, foreign keys and explicit BEGIN handling on a SQLite engine."""
    if engine.dialect.name != "sqlite":
        return

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy emit BEGIN itself so we can choose IMMEDIATE (pysqlite's own
        # implicit BEGIN is deferred, which lets two writers read the same chain head).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if _immediate.get() else "BEGIN")


def _advisory_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_xact_lock from a lock name."""
    digest = hashlib.sha256(name.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def write_transaction(lock: str | None = None) -> Iterator[None]:
    """Run the block in one write transaction, holding the write lock before any read.

    On SQLite the transaction starts with BEGIN IMMEDIATE; on PostgreSQL, when ``lock``
    is given, a transaction-level advisory lock of that name is taken first, waiting at
    most POSTGRES_LOCK_TIMEOUT_MS. Commits on success, rolls back on error; database
    errors (including a lock wait that timed out) surface as DatabaseUnavailable.
    """
    session = db.session()  # the request's Session, not the scoped proxy
    if session.in_transaction():
        if session.new or session.dirty or session.deleted:
            raise RuntimeError("write_transaction() opened over pending changes")
        session.rollback()  # end the read snapshot so the lock is taken first
    token = _immediate.set(True)
    try:
        connection = session.connection()
    except sa.exc.OperationalError as exc:
        session.rollback()
        raise DatabaseUnavailable(str(exc)) from exc
    finally:
        _immediate.reset(token)
    try:
        if connection.dialect.name == "postgresql":
            # PostgreSQL's counterpart of SQLite's busy timeout: wait this long for a
            # lock, then fail (503) instead of holding the visitor until gunicorn's
            # worker timeout.
            timeout_ms = int(current_app.config["POSTGRES_LOCK_TIMEOUT_MS"])
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")
            if lock:
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"),
                    {"key": _advisory_key(lock)},
                )
        yield
        session.commit()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        session.rollback()
        raise DatabaseUnavailable(str(exc)) from exc
    except BaseException:
        session.rollback()
        raise
