"""Two hosts x 2 gunicorn workers on one PostgreSQL and one Redis, under faults.

Concurrent visitors post consents to both hosts while one host is SIGKILLed and
restarted and every PostgreSQL connection is cut; then every acknowledged consent
must be in the ledger, the chain must verify with no gap or fork, and the rate
limit must have been one limit shared by both hosts. Bounded: about 20 s of traffic.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time

import pytest

from .. import infra
from ..test_ledger import independent_verify
from .cluster import ROOT, AppServer, Visitor
from .journeys import CHECKS, JOURNEYS, Outcomes

pytestmark = pytest.mark.reliability

VISITORS = 12
TRAFFIC_SECONDS = 12
RATE_LIMIT = 60  # CONSENT_RATE_LIMIT's default, "60 per minute"


def flask(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "lorchestre", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Database and Redis keys of our own; two servers; all removed afterwards."""
    redis = infra.redis_client()
    redis_prefix = f"{infra.REDIS_PREFIX}reliability"
    with infra.postgres_database("reliability") as url:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("LORCHESTRE_", "GUNICORN_"))
        } | {
            "LORCHESTRE_ENV_NAME": "production",
            "LORCHESTRE_SECRET_KEY": secrets.token_urlsafe(48),
            "LORCHESTRE_SQLALCHEMY_DATABASE_URI": url,
            "LORCHESTRE_RATELIMIT_STORAGE_URI": infra.REDIS_URL,
            "LORCHESTRE_RATELIMIT_STORAGE_OPTIONS": json.dumps(
                {
                    "key_prefix": redis_prefix,
                    "socket_connect_timeout": 0.5,
                    "socket_timeout": 0.5,
                }  # fmt: skip
            ),
            "LORCHESTRE_PROXY_COUNT": "1",
            "LORCHESTRE_TRUSTED_HOSTS": json.dumps(["www.example.test"]),
            "LORCHESTRE_BASE_URL": "https://www.example.test",
            "GUNICORN_WORKERS": "2",
            "GUNICORN_THREADS": "4",
            "GUNICORN_LOGLEVEL": "warning",
        }
        migrated = flask("db", "upgrade", env=env)  # migrations at deploy
        assert migrated.returncode == 0, migrated.stderr[-2000:]
        logs = tmp_path_factory.mktemp("gunicorn")
        servers = [AppServer(name, env, logs) for name in ("host-a", "host-b")]
        try:
            for server in servers:
                server.start()
            for server in servers:
                server.wait_ready()
            yield {"servers": servers, "env": env, "url": url, "redis": redis,
                   "redis_prefix": redis_prefix}  # fmt: skip
        finally:
            for server in servers:
                server.begin_stop()  # both at once
            for server in servers:
                server.stop()
            infra.delete_redis_keys(redis, redis_prefix)


def visit(ports, outcomes, stop, seed):
    """One visitor thread: journeys one after the other until told to stop."""
    rnd = random.Random(seed)
    journey_no = 0
    while not stop.is_set():
        journey_no += 1
        visitor = Visitor(f"10.{seed}.{journey_no // 250}.{journey_no % 250 + 1}")
        try:
            rnd.choice(JOURNEYS)(visitor, ports, rnd, outcomes)
        except OSError:
            with outcomes.lock:
                outcomes.lost += 1  # the page itself could not be fetched
        except Exception as exc:  # noqa: BLE001 -- reported, then asserted on
            outcomes.problem(f"{type(exc).__name__}: {exc}")


def test_two_hosts_lose_nothing(cluster):
    host_a, host_b = cluster["servers"]
    ports = [host_a.port, host_b.port]
    outcomes = Outcomes(secret_key=cluster["env"]["LORCHESTRE_SECRET_KEY"])
    stop = threading.Event()
    threads = [
        threading.Thread(target=visit, args=(ports, outcomes, stop, n), daemon=True)
        for n in range(VISITORS)
    ]
    start = time.monotonic()
    for thread in threads:
        thread.start()

    time.sleep(3)
    host_b.kill()  # host B dies mid-request, workers and all
    killed_at = time.monotonic()
    time.sleep(2)
    host_b.start()
    host_b.wait_ready()
    back_at = time.monotonic()
    time.sleep(2)
    cut = infra.terminate_backends(cluster["url"])  # as if PostgreSQL restarted
    time.sleep(max(0.0, TRAFFIC_SECONDS - (time.monotonic() - start)))
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    print(
        f"traffic {time.monotonic() - start:.1f}s: {len(outcomes.acks)} consents "
        f"acknowledged, statuses {dict(outcomes.statuses)}, {outcomes.lost} requests "
        f"cut by the kill, {outcomes.failovers} refused and sent to the other host, "
        f"{cut} database connections cut, host B back after {back_at - killed_at:.1f}s"
    )
    assert not outcomes.problems, outcomes.problems[:10]
    assert set(outcomes.statuses) <= {200, 303, 503}, outcomes.statuses
    assert len(outcomes.acks) >= 100, outcomes.statuses  # real traffic happened
    # the surviving host kept serving while the other one was down
    assert any(
        a.port == host_a.port and killed_at < a.at < back_at for a in outcomes.acks
    )
    assert any(a.port == host_b.port and a.at > back_at for a in outcomes.acks)
    assert cut >= 1

    # The ledger: complete, chained, verifiable, from both hosts' writes.
    env = cluster["env"]
    exported = flask("consent", "export", "--format", "jsonl", env=env)
    assert exported.returncode == 0, exported.stderr[-2000:]
    lines = exported.stdout.splitlines()
    head = independent_verify(lines)  # seq 1..N without gaps, links, hashes
    records = [json.loads(line) for line in lines]
    assert len({r["prev_hash"] for r in records}) == len(records)  # no fork
    verified = flask("consent", "verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"{len(records)} records" in verified.stdout and head in verified.stdout
    rows = [
        {**{k: v for k, v in r.items() if k != "choices"}, **r["choices"]}
        for r in records
    ]
    for check in CHECKS:
        check(rows, outcomes)

    # One rate limit for both hosts: one address, alternating between them.
    abuser = Visitor("203.0.113.66")
    token = abuser.csrf_token(host_a.port, "/fr/")
    answers = [
        abuser.request(ports[i % 2], "POST", "/consent",
                       {"csrf_token": token, "action": "reject_all", "lang": "fr"})
        for i in range(RATE_LIMIT + 10)
    ]  # fmt: skip
    accepted = [r for r in answers if r.status == 303]
    limited = [r for r in answers if r.status == 429]
    assert len(accepted) == RATE_LIMIT, [r.status for r in answers]
    assert len(limited) == 10 and {r.port for r in limited} == set(ports)
    assert all(int(r.header("Retry-After")) > 0 for r in limited)
    assert list(cluster["redis"].scan_iter(match=f"{cluster['redis_prefix']}*"))

    for server in (host_a, host_b):
        assert (
            Visitor("127.0.0.1").request(server.port, "GET", "/healthz").status == 200
        )
