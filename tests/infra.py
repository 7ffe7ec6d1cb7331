"""The PostgreSQL and Redis that CI provides, for tests that need databases of their own.

Every database created here is named ``lorchestre_t_<run id>_<tag>`` and every Redis
key starts with ``lorchestre-test:<run id>:``, so `.ci/run` can remove whatever a
killed run left behind without touching anybody else's data. Set
LORCHESTRE_TEST_REQUIRE_SERVICES=1 (CI does) to fail instead of skipping when a
service is unreachable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

POSTGRES_ADMIN_URL = os.environ.get(
    "LORCHESTRE_TEST_POSTGRES_ADMIN_URL",
    "postgresql://postgres@127.0.0.1:5432/postgres",
)
REDIS_URL = os.environ.get("LORCHESTRE_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
RUN_ID = os.environ.get("LORCHESTRE_TEST_RUN_ID") or (
    f"{os.getpid()}_{secrets.token_hex(3)}"
)
DATABASE_PREFIX = f"lorchestre_t_{RUN_ID}_".lower()
REDIS_PREFIX = f"lorchestre-test:{RUN_ID}:"
REQUIRE_SERVICES = os.environ.get("LORCHESTRE_TEST_REQUIRE_SERVICES") == "1"


def service_missing(reason: str) -> None:
    """Skip (locally) or fail (in CI) because a service the test needs is not there."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (LORCHESTRE_TEST_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


def _admin_connection():
    import psycopg

    try:
        return psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        service_missing(f"PostgreSQL unreachable at {POSTGRES_ADMIN_URL}: {exc}")
        raise  # not reached


def sqlalchemy_url(database: str) -> str:
    """The app's URL (psycopg 3 driver) for one database of the test server."""
    url = make_url(POSTGRES_ADMIN_URL).set(
        drivername="postgresql+psycopg", database=database
    )
    return url.render_as_string(hide_password=False)


@contextmanager
def postgres_database(tag: str) -> Iterator[str]:
    """Create an empty database for one test, yield its app URL, drop it afterwards."""
    name = f"{DATABASE_PREFIX}{tag}"
    with _admin_connection() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield sqlalchemy_url(name)
    finally:
        with _admin_connection() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def terminate_backends(database_url: str) -> int:
    """Kill every server process serving that database (what a restart does to apps)."""
    name = make_url(database_url).database
    with _admin_connection() as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return len(rows)


def redis_client():
    """A client for the test Redis, or skip/fail when it does not answer."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        service_missing(f"Redis unreachable at {REDIS_URL}: {exc}")
    return client


def delete_redis_keys(client, prefix: str) -> int:
    """Remove every key under ``prefix`` (never anything else)."""
    assert prefix.startswith(REDIS_PREFIX)
    keys = list(client.scan_iter(match=f"{prefix}*", count=500))
    if keys:
        client.delete(*keys)
    return len(keys)


def closed_port() -> int:
    """A local TCP port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
