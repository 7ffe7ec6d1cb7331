"""What visitors do during the run, and what must hold afterwards.

JOURNEYS are run over and over by concurrent visitors while servers die and come
back; each records what it was told in Outcomes. CHECKS run once everything has
stopped, against the database. The contact form and the rights desk plug in here:
add a journey that posts them (recording each acknowledged submission) and a
check that finds every acknowledged one stored exactly once, with exactly one
outbox mail each after the outbox has run (see the README of this folder).
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from itsdangerous import URLSafeTimedSerializer

from lorchestre.tokens import SALT_CONSENT_COOKIE

from .cluster import Reply, Visitor, csrf_token

OPTIONAL = ("analytics", "advertising", "personalization")


@dataclass(frozen=True)
class ConsentAck:
    """A consent the site acknowledged: 303 with its cookie, or 200 with JSON."""

    consent_id: str
    action: str
    choices: tuple[bool, bool, bool]
    recorded_at: str | None  # only the JSON answer says it
    port: int
    at: float  # time.monotonic() when acknowledged


@dataclass
class Outcomes:
    """Everything the visitors observed, shared by all their threads."""

    secret_key: str
    acks: list[ConsentAck] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    lost: int = 0  # sent, then no answer (server killed mid-request): outcome unknown
    failovers: int = 0  # connection refused, so sent to the other host instead
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, reply: Reply) -> None:
        with self.lock:
            self.statuses[reply.status] += 1

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)


def send(visitor: Visitor, ports: list[int], rnd: random.Random, outcomes: Outcomes,
         method: str, path: str, form=None, accept="text/html") -> Reply:  # fmt: skip
    """One request to a random host; refused connections go to the other one.

    That is what nginx's backup upstream does (proxy_next_upstream error): nothing
    was sent, so nothing can be recorded twice. Any other failure propagates.
    """
    first = rnd.choice(ports)
    try:
        return visitor.request(first, method, path, form, accept)
    except ConnectionRefusedError:
        with outcomes.lock:
            outcomes.failovers += 1
        other = next(port for port in ports if port != first)
        return visitor.request(other, method, path, form, accept)


def consent_id_from_cookie(outcomes: Outcomes, header: str) -> tuple[str, str]:
    """(consent_id, flags) from the signed consent cookie of a Set-Cookie header."""
    value = header.split(";", 1)[0].split("=", 1)[1]
    payload = URLSafeTimedSerializer(
        outcomes.secret_key, salt=SALT_CONSENT_COOKIE
    ).loads(value)
    return payload["id"], payload["c"]


def consent_journey(visitor: Visitor, ports: list[int], rnd: random.Random,
                    outcomes: Outcomes) -> None:  # fmt: skip
    """Open a page, then change one's mind a few times, on whichever host answers."""
    import time

    lang = rnd.choice(["fr", "en"])
    page = send(visitor, ports, rnd, outcomes, "GET", f"/{lang}/")
    token = csrf_token(page)
    for _ in range(rnd.randint(2, 4)):
        action = rnd.choice(
            ["accept_all", "reject_all", "custom", "custom", "withdraw"]
        )
        form = {"csrf_token": token, "action": action, "lang": lang,
                "next": f"/{lang}/privacy"}  # fmt: skip
        picked = {key: rnd.random() < 0.5 for key in OPTIONAL}
        if action == "custom":
            form |= {key: "1" for key, yes in picked.items() if yes}
        as_json = rnd.random() < 0.3
        try:
            reply = send(
                visitor, ports, rnd, outcomes, "POST", "/consent", form,
                accept="application/json" if as_json else "text/html",
            )  # fmt: skip
        except OSError:
            with outcomes.lock:
                outcomes.lost += 1
            continue
        port = reply.port
        outcomes.record(reply)
        expected = {
            "accept_all": (True, True, True),
            "custom": tuple(picked[k] for k in OPTIONAL),
        }.get(action, (False, False, False))
        cookie = reply.set_cookies().get("lorchestre_consent")
        if reply.status in (200, 303):
            if reply.status == 200:
                body = reply.json()
                consent_id, recorded_at = body["consent_id"], body["recorded_at"]
                choices = tuple(body["choices"][k] for k in OPTIONAL)
            else:
                consent_id, flags = consent_id_from_cookie(outcomes, cookie)
                recorded_at, choices = None, tuple(f == "1" for f in flags)
            if choices != expected:
                outcomes.problem(f"{action} acknowledged as {choices}")
            with outcomes.lock:
                outcomes.acks.append(
                    ConsentAck(
                        consent_id, action, choices, recorded_at, port, time.monotonic()
                    )  # fmt: skip
                )
        elif reply.status == 503:
            # Fail closed: nothing optional enabled, never a consent cookie granting one.
            if cookie and "Max-Age=0" not in cookie:
                outcomes.problem("a 503 set a consent cookie")
            if not reply.header("Retry-After"):
                outcomes.problem("a 503 without Retry-After")
        else:
            outcomes.problem(f"POST /consent answered {reply.status} on port {port}")


JOURNEYS: list[Callable[[Visitor, list[int], random.Random, Outcomes], None]] = [
    consent_journey,
]


def check_every_ack_is_in_the_ledger(rows: list[dict], outcomes: Outcomes) -> None:
    """Each visitor's acknowledged choices appear, in order, under its consent ID."""
    by_id: dict[str, list[dict]] = defaultdict(list)
    for row in rows:  # already in seq order
        by_id[row["consent_id"]].append(row)
    acks_by_id: dict[str, list[ConsentAck]] = defaultdict(list)
    for ack in outcomes.acks:
        acks_by_id[ack.consent_id].append(ack)
    for consent_id, acks in acks_by_id.items():
        stored = iter(by_id.get(consent_id, []))
        for ack in sorted(acks, key=lambda a: a.at):
            for row in stored:  # a subsequence: unacknowledged rows may sit between
                if (
                    row["action"] == ack.action
                    and tuple(row[k] for k in OPTIONAL) == ack.choices
                    and ack.recorded_at in (None, row["recorded_at"])
                ):
                    break
            else:
                raise AssertionError(f"acknowledged but not in the ledger: {ack}")
    unacknowledged = len(rows) - len(outcomes.acks)
    assert 0 <= unacknowledged <= outcomes.lost + outcomes.statuses[503], (
        f"{unacknowledged} rows nobody was told about, for {outcomes.lost} lost "
        f"requests and {outcomes.statuses[503]} 503s"
    )


CHECKS: list[Callable[[list[dict], Outcomes], None]] = [
    check_every_ack_is_in_the_ledger,
]
