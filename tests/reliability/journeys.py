"""What visitors do during the run, and what must hold afterwards.

JOURNEYS are run over and over by concurrent visitors while servers die and come
back; each records what it was told in Outcomes. CHECKS run once everything has
stopped: CHECKS against the ledger, MAIL_CHECKS against the CRM, the rights
register, the outbox and what the test SMTP server received (see the README of
this folder).
"""

from __future__ import annotations

import hashlib
import random
import secrets
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from itsdangerous import URLSafeTimedSerializer

from lorchestre.tokens import SALT_CONSENT_COOKIE

from .cluster import Reply, Visitor, csrf_token

OPTIONAL = ("analytics", "advertising", "personalization")
# Addresses the CRM knows before the traffic starts (the test posts one contact
# message for each): contact journeys reuse them, so two hosts update one lead at
# once, and rights requests for them get a link, up to RIGHTS_ADDRESS_LIMIT a day.
KNOWN_ADDRESSES = tuple(f"known{n}@example.fr" for n in range(6))
RIGHTS_KINDS = ("access", "rectify", "erase", "object")


@dataclass(frozen=True)
class ConsentAck:
    """A consent the site acknowledged: 303 with its cookie, or 200 with JSON."""

    consent_id: str
    action: str
    choices: tuple[bool, bool, bool]
    recorded_at: str | None  # only the JSON answer says it
    port: int
    at: float  # time.monotonic() when acknowledged


@dataclass(frozen=True)
class ContactAck:
    """A contact message the site acknowledged (303 to the thanks page)."""

    marker: str  # unique, inside the message text
    email: str
    port: int


@dataclass(frozen=True)
class RightsAck:
    """A rights request the site acknowledged (303 to the "sent" page)."""

    email: str
    known: bool
    answer: tuple[int, str, str]  # status, Location, SHA-256 of the body
    port: int


@dataclass
class Outcomes:
    """Everything the visitors observed, shared by all their threads."""

    secret_key: str
    acks: list[ConsentAck] = field(default_factory=list)
    contact_acks: list[ContactAck] = field(default_factory=list)
    rights_acks: list[RightsAck] = field(default_factory=list)
    # Contact markers and rights addresses whose POST was cut mid-flight or got a
    # 503: stored or not, nobody knows; they may be in the database, or not.
    contact_unknown: set[str] = field(default_factory=set)
    rights_unknown: Counter = field(default_factory=Counter)
    form_statuses: Counter = field(default_factory=Counter)  # (form, status)
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


def contact_form(email: str, marker: str, token: str, rnd: random.Random) -> dict:
    """A well-formed contact submission carrying a unique marker."""
    form = {
        "csrf_token": token,
        "name": "Camille Fiabilité",
        "email": email,
        "message": f"Bonjour, une question sur vos parfums. marker:{marker}",
        "website": "",  # the honeypot, left empty as a person does
    }
    if rnd.random() < 0.3:
        form["marketing"] = "y"
    if rnd.random() < 0.5:
        form["phone"] = "+33 1 23 45 67 89"
    return form


def contact_journey(visitor: Visitor, ports: list[int], rnd: random.Random,
                    outcomes: Outcomes) -> None:  # fmt: skip
    """Open the contact form and send a message or two, on whichever host answers."""
    lang = rnd.choice(["fr", "en"])
    token = csrf_token(send(visitor, ports, rnd, outcomes, "GET", f"/{lang}/contact"))
    if rnd.random() < 0.4:
        email = rnd.choice(KNOWN_ADDRESSES)
    else:
        email = f"c-{secrets.token_hex(6)}@example.fr"
    for _ in range(rnd.randint(1, 2)):  # under CONTACT_RATE_LIMIT (5 a minute)
        marker = secrets.token_hex(8)
        form = contact_form(email, marker, token, rnd)
        try:
            reply = send(
                visitor, ports, rnd, outcomes, "POST", f"/{lang}/contact", form
            )
        except OSError:
            with outcomes.lock:
                outcomes.contact_unknown.add(marker)
            continue
        with outcomes.lock:
            outcomes.form_statuses["contact", reply.status] += 1
        location = reply.header("Location") or ""
        if reply.status == 303 and location.endswith(f"/{lang}/contact/thanks"):
            with outcomes.lock:
                outcomes.contact_acks.append(ContactAck(marker, email, reply.port))
        elif reply.status == 503:
            with outcomes.lock:
                outcomes.contact_unknown.add(marker)
            if not reply.header("Retry-After"):
                outcomes.problem("a contact 503 without Retry-After")
        else:
            outcomes.problem(
                f"POST /{lang}/contact answered {reply.status} {location!r}"
            )


def rights_journey(visitor: Visitor, ports: list[int], rnd: random.Random,
                   outcomes: Outcomes) -> None:  # fmt: skip
    """Ask the rights desk about a known or an unknown address."""
    lang = rnd.choice(["fr", "en"])
    token = csrf_token(send(visitor, ports, rnd, outcomes, "GET", f"/{lang}/my-data"))
    known = rnd.random() < 0.5
    email = (
        rnd.choice(KNOWN_ADDRESSES) if known else f"r-{secrets.token_hex(6)}@example.fr"
    )
    form = {"csrf_token": token, "email": email, "kind": rnd.choice(RIGHTS_KINDS)}
    try:
        reply = send(visitor, ports, rnd, outcomes, "POST", f"/{lang}/my-data", form)
    except OSError:
        with outcomes.lock:
            outcomes.rights_unknown[email] += 1
        return
    with outcomes.lock:
        outcomes.form_statuses["rights", reply.status] += 1
    if reply.status == 303:
        answer = (
            reply.status,
            reply.header("Location") or "",
            hashlib.sha256(reply.body).hexdigest(),
        )
        with outcomes.lock:
            outcomes.rights_acks.append(RightsAck(email, known, answer, reply.port))
    elif reply.status == 503:
        with outcomes.lock:
            outcomes.rights_unknown[email] += 1
    else:
        outcomes.problem(f"POST /{lang}/my-data answered {reply.status}")


JOURNEYS: list[Callable[[Visitor, list[int], random.Random, Outcomes], None]] = [
    consent_journey,
    consent_journey,  # consents stay the bulk of the traffic, as on the real site
    contact_journey,
    rights_journey,
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


@dataclass
class MailState:
    """The CRM, the rights register and the mail, read after everything stopped."""

    leads: list[dict]  # id, email_key
    messages: list[dict]  # lead_id, body
    outbox: list[dict]  # lead_id, kind, to_address, message_id, status
    rights: list[dict]  # address_hash, lead_id, link_sent_at, status
    delivered: list[tuple[str, str]]  # (Message-ID, To) of each mail the SMTP got
    address_hash: Callable[[str], str]  # the app's keyed hash of an address key
    address_limit: int  # RIGHTS_ADDRESS_LIMIT


def marker_of(body: str) -> str | None:
    """The marker a contact journey put in its message, if any."""
    _, found, rest = body.partition("marker:")
    return rest.split()[0] if found else None


def check_every_contact_stored_once(state: MailState, outcomes: Outcomes) -> None:
    """Each acknowledged message is stored exactly once, under its own address's lead."""
    by_marker: dict[str, list[dict]] = defaultdict(list)
    for message in state.messages:
        marker = marker_of(message["body"])
        if marker:
            by_marker[marker].append(message)
    duplicated = [m for m, rows in by_marker.items() if len(rows) > 1]
    assert not duplicated, f"contact messages stored twice: {duplicated[:5]}"
    email_key = {lead["id"]: lead["email_key"] for lead in state.leads}
    for ack in outcomes.contact_acks:
        rows = by_marker.get(ack.marker)
        assert rows, f"acknowledged but not stored: {ack}"
        assert email_key[rows[0]["lead_id"]] == ack.email.lower(), (ack, rows[0])
    told = {ack.marker for ack in outcomes.contact_acks}
    phantom = set(by_marker) - told - outcomes.contact_unknown
    assert not phantom, f"stored messages nobody sent: {sorted(phantom)[:5]}"
    keys = [lead["email_key"] for lead in state.leads]
    assert len(keys) == len(set(keys)), "two leads for one address"
    with_messages = {message["lead_id"] for message in state.messages}
    assert with_messages == set(email_key), "a lead without a message, or the reverse"


def check_rights_requests(state: MailState, outcomes: Outcomes) -> None:
    """Registered once each; links only to known addresses, within the daily limit."""
    answers: dict[str, set] = defaultdict(set)  # per language (Location)
    for ack in outcomes.rights_acks:
        answers[ack.answer[1]].add(ack.answer)
    assert all(len(seen) == 1 for seen in answers.values()), (
        f"the answers told addresses apart: {dict(answers)}"
    )
    rows_by_hash: dict[str, list[dict]] = defaultdict(list)
    for row in state.rights:
        rows_by_hash[row["address_hash"]].append(row)
    acks_by_email = Counter(ack.email for ack in outcomes.rights_acks)
    known_leads = {
        lead["email_key"]: lead["id"]
        for lead in state.leads
        if lead["email_key"] in KNOWN_ADDRESSES
    }
    links = Counter(
        row["lead_id"] for row in state.outbox if row["kind"] == "rights_link"
    )
    emails = set(acks_by_email) | set(outcomes.rights_unknown)
    for email in emails:
        rows = rows_by_hash.get(state.address_hash(email.lower()), [])
        told, unknown = acks_by_email[email], outcomes.rights_unknown[email]
        assert told <= len(rows) <= told + unknown, (email, told, unknown, len(rows))
        linked = [row for row in rows if row["link_sent_at"] is not None]
        if email in known_leads:
            assert len(linked) == min(len(rows), state.address_limit), (email, rows)
            assert links[known_leads[email]] == len(linked), (email, links)
        else:
            assert not linked, f"a link for an address we do not hold: {email}"
    assert sum(links.values()) == sum(
        1 for row in state.rights if row["link_sent_at"] is not None
    )


def check_every_mail_delivered_once(state: MailState, outcomes: Outcomes) -> None:
    """Two mails per stored message, a link per link sent, each delivered exactly once."""
    per_lead = Counter(message["lead_id"] for message in state.messages)
    for kind in ("contact_ack", "contact_notification"):
        queued = Counter(row["lead_id"] for row in state.outbox if row["kind"] == kind)
        assert queued == per_lead, f"{kind}: queued {queued} for messages {per_lead}"
    stuck = [row for row in state.outbox if row["status"] != "sent"]
    assert not stuck, f"{len(stuck)} mails not delivered: {stuck[:3]}"
    delivered = Counter(message_id for message_id, _to in state.delivered)
    twice = [message_id for message_id, n in delivered.items() if n > 1]
    assert not twice, f"delivered more than once: {twice[:5]}"
    expected = {(row["message_id"], row["to_address"]) for row in state.outbox}
    assert set(state.delivered) == expected, "mail lost, or sent that was not queued"


MAIL_CHECKS: list[Callable[[MailState, Outcomes], None]] = [
    check_every_contact_stored_once,
    check_rights_requests,
    check_every_mail_delivered_once,
]
