"""Two hosts x 2 gunicorn workers on one PostgreSQL and one Redis, under faults.

Concurrent visitors post consents, contact messages and rights requests to both
hosts while one host is SIGKILLed and restarted and every PostgreSQL connection is
cut, and the outbox runs once; then `flask outbox send` runs from both hosts at
once against a local SMTP server. Afterwards every acknowledged consent must be in the ledger, the chain must
verify with no gap or fork, every acknowledged message must be stored once with its
two mails each delivered exactly once, and the consent and contact rate limits must
each have been one limit shared by both hosts. Bounded: about 12 s of traffic.
"""

from __future__ import annotations

import json
import random
import re
import secrets
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa
from flask import Flask

from lorchestre.rights.services import address_hash

from .. import infra
from ..smtp_stub import running_smtp_stub
from ..test_ledger import independent_verify
from .cluster import ROOT, AppServer, Visitor, flask, production_env
from .journeys import (
    CHECKS,
    JOURNEYS,
    KNOWN_ADDRESSES,
    MAIL_CHECKS,
    ContactAck,
    MailState,
    Outcomes,
    contact_form,
)

pytestmark = pytest.mark.reliability

VISITORS = 12
TRAFFIC_SECONDS = 12
RATE_LIMIT = 60  # CONSENT_RATE_LIMIT's default, "60 per minute"
CONTACT_LIMIT = 5  # CONTACT_RATE_LIMIT's default, "5 per minute; 30 per day"
RIGHTS_ADDRESS_LIMIT = 3  # RIGHTS_ADDRESS_LIMIT's default
OUTBOX_SUMMARY = re.compile(r"(\d+) sent, (\d+) to retry later, (\d+) given up")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Database and Redis keys of our own; two servers; all removed afterwards."""
    redis = infra.redis_client()
    redis_prefix = f"{infra.REDIS_PREFIX}reliability"
    with running_smtp_stub() as smtp, infra.postgres_database("reliability") as url:
        env = production_env(
            url,
            LORCHESTRE_RATELIMIT_STORAGE_URI=infra.REDIS_URL,
            LORCHESTRE_RATELIMIT_STORAGE_OPTIONS=json.dumps(
                {
                    "key_prefix": redis_prefix,
                    "socket_connect_timeout": 0.5,
                    "socket_timeout": 0.5,
                }  # fmt: skip
            ),
            # The outbox runners deliver to the test SMTP server; the app servers
            # only queue (nothing is sent during a request).
            LORCHESTRE_MAIL_SERVER="127.0.0.1",
            LORCHESTRE_MAIL_PORT=str(smtp.port),
            LORCHESTRE_MAIL_USE_TLS="false",
            LORCHESTRE_MAIL_TIMEOUT="10",
        )
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
                   "redis_prefix": redis_prefix, "smtp": smtp}  # fmt: skip
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


def post_contact(visitor: Visitor, port: int, token: str, email: str, marker: str):
    """One contact message from ``visitor`` to the host on ``port``."""
    form = contact_form(email, marker, token, random.Random(0))
    return visitor.request(port, "POST", "/fr/contact", form)


def seed_known_addresses(ports: list[int], outcomes: Outcomes) -> None:
    """One message per KNOWN_ADDRESSES, so the CRM knows them before the traffic."""
    for n, email in enumerate(KNOWN_ADDRESSES):
        visitor = Visitor(f"198.51.100.{n + 1}")
        token = visitor.csrf_token(ports[n % 2], "/fr/contact")
        marker = secrets.token_hex(8)
        reply = post_contact(visitor, ports[n % 2], token, email, marker)
        assert reply.status == 303, reply.status
        outcomes.contact_acks.append(ContactAck(marker, email, ports[n % 2]))


def start_outbox_runners(
    env: dict[str, str], count: int, limit: int = 10_000
) -> list[subprocess.Popen]:
    """`flask outbox send` started ``count`` times at once (one per host)."""
    command = [sys.executable, "-m", "flask", "--app", "lorchestre", "outbox", "send",
               "--limit", str(limit)]  # fmt: skip
    return [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for _ in range(count)
    ]


def finish_outbox_runners(runners: list[subprocess.Popen]) -> list[tuple[int, ...]]:
    """Wait for the runners; (sent, to retry, given up) of each."""
    results = []
    for runner in runners:
        out, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, out + err
        results.append(tuple(int(n) for n in OUTBOX_SUMMARY.search(out).groups()))
    return results


def run_outbox_runners(env: dict[str, str], count: int = 2) -> list[tuple[int, ...]]:
    """`flask outbox send` on both hosts at the same moment, to the end."""
    return finish_outbox_runners(start_outbox_runners(env, count))


def read_mail_state(url: str, secret_key: str, smtp) -> MailState:
    """The CRM, the rights register and the outbox, straight from the database."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:

            def rows(sql: str) -> list[dict]:
                return [dict(row._mapping) for row in connection.execute(sa.text(sql))]

            leads = rows("SELECT id, email_key FROM lead")
            messages = rows("SELECT lead_id, body FROM contact_message")
            outbox = rows(
                "SELECT lead_id, kind, to_address, message_id, status "
                "FROM outbox_message"
            )
            rights = rows(
                "SELECT address_hash, lead_id, link_sent_at, status FROM rights_request"
            )
    finally:
        engine.dispose()
    keyed = Flask("address-hash")  # address_hash reads only SECRET_KEY
    keyed.config["SECRET_KEY"] = secret_key

    def hasher(address_key: str) -> str:
        with keyed.app_context():
            return address_hash(address_key)

    with smtp.lock:
        delivered = [(str(m["Message-ID"]), str(m["To"])) for m in smtp.received]
    return MailState(leads, messages, outbox, rights, delivered, hasher,
                     RIGHTS_ADDRESS_LIMIT)  # fmt: skip


def test_two_hosts_lose_nothing(cluster):
    host_a, host_b = cluster["servers"]
    ports = [host_a.port, host_b.port]
    outcomes = Outcomes(secret_key=cluster["env"]["LORCHESTRE_SECRET_KEY"])
    seed_known_addresses(ports, outcomes)
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
    # The outbox timer fires while visitors keep queueing mail (after the cut: a
    # runner whose connection is cut mid-claim leaves its row for the claim timeout).
    # A small batch, so the two runners below still have most of the work.
    during = start_outbox_runners(cluster["env"], 1, limit=40)
    time.sleep(max(0.0, TRAFFIC_SECONDS - (time.monotonic() - start)))
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    during_traffic = finish_outbox_runners(during)
    assert not any(thread.is_alive() for thread in threads)

    print(
        f"traffic {time.monotonic() - start:.1f}s: {len(outcomes.acks)} consents, "
        f"{len(outcomes.contact_acks)} contact messages and "
        f"{len(outcomes.rights_acks)} rights requests acknowledged, statuses "
        f"{dict(outcomes.statuses)}, forms {dict(outcomes.form_statuses)}, "
        f"{outcomes.lost} requests "
        f"cut by the kill, {outcomes.failovers} refused and sent to the other host, "
        f"{cut} database connections cut, host B back after {back_at - killed_at:.1f}s"
    )
    assert not outcomes.problems, outcomes.problems[:10]
    assert set(outcomes.statuses) <= {200, 303, 503}, outcomes.statuses
    assert len(outcomes.acks) >= 100, outcomes.statuses  # real traffic happened
    assert len(outcomes.contact_acks) >= 20, outcomes.form_statuses
    assert len(outcomes.rights_acks) >= 10, outcomes.form_statuses
    assert {a.known for a in outcomes.rights_acks} == {True, False}
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

    # The rest of the outbox, from both hosts at once, twice: each mail exactly once.
    first_round = run_outbox_runners(env)
    second_round = run_outbox_runners(env)
    state = read_mail_state(cluster["url"], env["LORCHESTRE_SECRET_KEY"],
                            cluster["smtp"])  # fmt: skip
    print(
        f"outbox: {len(state.outbox)} mails; runners sent "
        f"{during_traffic[0][0]} during the traffic, then "
        f"{[r[0] for r in first_round]}, then {[r[0] for r in second_round]}"
    )
    assert all(r[1:] == (0, 0) for r in during_traffic + first_round + second_round)
    assert sum(r[0] for r in during_traffic + first_round) == len(state.outbox)
    assert all(r[0] == 0 for r in second_round)
    for check in MAIL_CHECKS:
        check(state, outcomes)

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

    # The contact form's limit is shared too.
    flooder = Visitor("203.0.113.67")
    token = flooder.csrf_token(host_a.port, "/fr/contact")
    answers = [
        post_contact(flooder, ports[i % 2], token, "flood@example.fr", f"flood{i}")
        for i in range(CONTACT_LIMIT + 4)
    ]
    assert [r.status for r in answers] == [303] * CONTACT_LIMIT + [429] * 4
    assert {r.port for r in answers[CONTACT_LIMIT:]} == set(ports)
    assert all(int(r.header("Retry-After")) > 0 for r in answers[CONTACT_LIMIT:])

    for server in (host_a, host_b):
        assert (
            Visitor("127.0.0.1").request(server.port, "GET", "/healthz").status == 200
        )
