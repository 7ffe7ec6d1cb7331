"""The reliability checks can fail: they are tried here on made-up outcomes."""

from __future__ import annotations

import pytest

from .journeys import ConsentAck, Outcomes, check_every_ack_is_in_the_ledger


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
