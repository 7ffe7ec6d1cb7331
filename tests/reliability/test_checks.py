"""The reliability checks can fail: they are tried here on made-up outcomes."""

from __future__ import annotations

import pytest

from .journeys import (
    MAIL_CHECKS,
    ConsentAck,
    ContactAck,
    MailState,
    Outcomes,
    RightsAck,
    check_every_ack_is_in_the_ledger,
    check_every_contact_stored_once,
    check_every_mail_delivered_once,
    check_rights_requests,
)


def row(seq, consent_id, action="accept_all", flags=(True, True, True), at="t"):
    analytics, advertising, personalization = flags
    return {"seq": seq, "consent_id": consent_id, "action": action, "recorded_at": at,
            "analytics": analytics, "advertising": advertising,
            "personalization": personalization}  # fmt: skip


def ack(consent_id, action="accept_all", flags=(True, True, True), at=None, when=0.0):
    return ConsentAck(consent_id, action, flags, at, 1, when)


def outcomes(*acks, lost=0):
    result = Outcomes(secret_key="k")
    result.acks.extend(acks)
    result.lost = lost
    return result


def test_acknowledged_and_stored_in_order_passes():
    rows = [row(1, "a"), row(2, "b"), row(3, "a", "reject_all", (False,) * 3)]
    acks = outcomes(ack("a"), ack("b"), ack("a", "reject_all", (False,) * 3, when=1))
    check_every_ack_is_in_the_ledger(rows, acks)


def test_an_acknowledged_consent_missing_from_the_ledger_fails():
    with pytest.raises(AssertionError, match="not in the ledger"):
        check_every_ack_is_in_the_ledger([row(1, "a")], outcomes(ack("a"), ack("b")))


def test_stored_with_other_choices_or_time_fails():
    with pytest.raises(AssertionError):
        check_every_ack_is_in_the_ledger(
            [row(1, "a", "custom", (True, False, False))],
            outcomes(ack("a", "custom", (False, True, False))),
        )
    with pytest.raises(AssertionError):
        check_every_ack_is_in_the_ledger(
            [row(1, "a", at="x")], outcomes(ack("a", at="y"))
        )


def test_acknowledged_twice_stored_once_fails():
    with pytest.raises(AssertionError):
        check_every_ack_is_in_the_ledger(
            [row(1, "a")], outcomes(ack("a"), ack("a", when=1))
        )


def test_rows_nobody_was_told_about_need_a_lost_request_each():
    rows = [row(1, "a"), row(2, "z")]
    check_every_ack_is_in_the_ledger(rows, outcomes(ack("a"), lost=1))
    with pytest.raises(AssertionError, match="nobody was told about"):
        check_every_ack_is_in_the_ledger(rows, outcomes(ack("a"), lost=0))


def mail_state(messages, outbox, delivered, rights=(), leads=None):
    leads = leads or [{"id": 1, "email_key": "a@example.fr"}]
    return MailState(
        leads=list(leads), messages=list(messages), outbox=list(outbox),
        rights=list(rights), delivered=list(delivered),
        address_hash=lambda key: f"h:{key}", address_limit=3,
    )  # fmt: skip


def mail(kind, message_id, status="sent", to="a@example.fr", lead_id=1):
    return {"lead_id": lead_id, "kind": kind, "to_address": to,
            "message_id": message_id, "status": status}  # fmt: skip


def contact_outcomes(*markers, unknown=()):
    result = Outcomes(secret_key="k")
    result.contact_acks.extend(ContactAck(m, "a@example.fr", 1) for m in markers)
    result.contact_unknown.update(unknown)
    return result


MESSAGE = {"lead_id": 1, "body": "hello marker:m1"}
MAILS = [mail("contact_ack", "<1@x>"), mail("contact_notification", "<2@x>", to="h@x")]
DELIVERED = [("<1@x>", "a@example.fr"), ("<2@x>", "h@x")]


def test_a_contact_stored_once_with_both_mails_delivered_once_passes():
    state = mail_state([MESSAGE], MAILS, DELIVERED)
    for check in MAIL_CHECKS:
        check(state, contact_outcomes("m1"))


def test_an_acknowledged_contact_missing_or_stored_twice_fails():
    with pytest.raises(AssertionError, match="not stored"):
        check_every_contact_stored_once(mail_state([], [], []), contact_outcomes("m1"))
    with pytest.raises(AssertionError, match="stored twice"):
        check_every_contact_stored_once(
            mail_state([MESSAGE, MESSAGE], [], []), contact_outcomes("m1")
        )
    with pytest.raises(AssertionError, match="nobody sent"):
        check_every_contact_stored_once(mail_state([MESSAGE], [], []), Outcomes("k"))
    check_every_contact_stored_once(
        mail_state([MESSAGE], [], []), contact_outcomes(unknown={"m1"})
    )


def test_a_mail_lost_stuck_or_delivered_twice_fails():
    with pytest.raises(AssertionError, match="lost"):
        check_every_mail_delivered_once(
            mail_state([MESSAGE], MAILS, DELIVERED[:1]), Outcomes("k")
        )
    with pytest.raises(AssertionError, match="more than once"):
        check_every_mail_delivered_once(
            mail_state([MESSAGE], MAILS, DELIVERED + DELIVERED[:1]), Outcomes("k")
        )
    with pytest.raises(AssertionError, match="not delivered"):
        check_every_mail_delivered_once(
            mail_state(
                [MESSAGE], [MAILS[0] | {"status": "pending"}, MAILS[1]], DELIVERED
            ),  # fmt: skip
            Outcomes("k"),
        )
    with pytest.raises(AssertionError, match="contact_notification"):
        check_every_mail_delivered_once(
            mail_state([MESSAGE], MAILS[:1], DELIVERED[:1]), Outcomes("k")
        )


def test_rights_links_beyond_the_limit_or_to_unknown_addresses_fail():
    known = "known0@example.fr"
    leads = [{"id": 1, "email_key": known}]
    result = Outcomes("k")
    result.rights_acks.extend(
        RightsAck(known, True, (303, "/fr/my-data/sent", "x"), 1) for _ in range(4)
    )
    rows = [{"address_hash": f"h:{known}", "lead_id": 1, "link_sent_at": "t",
             "status": "awaiting_confirmation"}] * 4  # fmt: skip
    links = [mail("rights_link", f"<{n}@x>", to=known) for n in range(4)]
    with pytest.raises(AssertionError):
        check_rights_requests(mail_state([], links, [], rows, leads), result)
    rows = rows[:3] + [rows[0] | {"link_sent_at": None, "status": "refused"}]
    check_rights_requests(mail_state([], links[:3], [], rows, leads), result)
    other = (303, "/fr/my-data/sent", "another body")
    result.rights_acks.append(RightsAck("u@example.fr", False, other, 1))
    rows.append({"address_hash": "h:u@example.fr", "lead_id": None,
                 "link_sent_at": None, "status": "refused"})  # fmt: skip
    with pytest.raises(AssertionError, match="told addresses apart"):
        check_rights_requests(mail_state([], links[:3], [], rows, leads), result)
