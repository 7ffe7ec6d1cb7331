"""Hostile input against the staff area: bad-inputs #31-#33 beyond tests/test_staff*.py.

#33 asks for "similar timing for unknown users". Timing assertions are flaky on a
shared CI machine, so this proves the cause instead: every failed sign-in, known
account or not, runs exactly one Argon2id verification at the same cost, and gets
the same page.
"""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher, extract_parameters
from flask import Flask

from lorchestre.staff import services
from tests.staff_support import (
    FAST_ARGON2,
    PASSWORD,
    create_staff,
    new_client,
    sign_in,
)

DPO = "dpo@lorchestreparfum.com"
MARKETING = "marketing@lorchestreparfum.com"
TOKEN = re.compile(r'name="csrf_token"[^>]*value="[^"]+"')


@pytest.fixture(autouse=True)
def _cheap_hashing(app: Flask) -> None:
    app.config["STAFF_ARGON2_PARAMS"] = FAST_ARGON2


@pytest.fixture
def accounts(app: Flask) -> None:
    create_staff(app, DPO, "dpo")
    create_staff(app, MARKETING, "marketing")


@pytest.fixture
def verifications(monkeypatch) -> list[str]:
    """The hash each Argon2 verification was run against, in order."""
    seen: list[str] = []
    original = PasswordHasher.verify

    def counting(self, hash, password):  # noqa: A002 -- argon2-cffi's own name
        seen.append(hash if isinstance(hash, str) else hash.decode())
        return original(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting)
    return seen


def page_without_echo(response, email: str) -> str:
    """The page minus its CSRF token and the address typed (the form keeps it)."""
    return TOKEN.sub("", response.text).replace(f'value="{email}"', 'value=""')


@pytest.mark.parametrize(
    "email", ["nobody@lorchestreparfum.com", "not an address", "DPO@example.fr"]
)
def test_unknown_accounts_cost_one_argon2_verification_like_known_ones(
    app, accounts, verifications, email
):
    """#33: the same page, and the same Argon2id work, known account or not."""
    known = sign_in(new_client(app), DPO, "not the password")
    assert len(verifications) == 1
    other = sign_in(new_client(app), email, "not the password")
    assert len(verifications) == 2, "a failed sign-in skipped (or doubled) Argon2"
    assert known.status_code == other.status_code == 200
    assert page_without_echo(known, DPO) == page_without_echo(other, email)
    # The stand-in hash costs what a real one costs: same algorithm and parameters.
    real, stand_in = (extract_parameters(h) for h in verifications)
    assert stand_in == real
    assert verifications[0] != verifications[1]


def test_an_overlong_password_is_refused_alike_for_known_and_unknown(
    app, accounts, verifications
):
    """Over MAX_PASSWORD_LENGTH the form refuses before any hashing, whoever it is."""
    long = "x" * (services.MAX_PASSWORD_LENGTH + 1)
    known = sign_in(new_client(app), DPO, long)
    unknown = sign_in(new_client(app), "nobody@lorchestreparfum.com", long)
    assert verifications == []
    assert known.status_code == unknown.status_code == 200
    assert page_without_echo(known, DPO) == page_without_echo(
        unknown, "nobody@lorchestreparfum.com"
    )


def test_the_stand_in_hash_follows_the_configured_cost(app, accounts):
    """Raising STAFF_ARGON2_PARAMS raises the unknown-account cost with it."""
    with app.app_context():
        services._hasher()
        stand_in = services._dummy_hash()
    params = extract_parameters(stand_in)
    assert (params.time_cost, params.memory_cost, params.parallelism) == (
        FAST_ARGON2["time_cost"],
        FAST_ARGON2["memory_cost"],
        FAST_ARGON2["parallelism"],
    )


def test_a_disabled_accounts_open_session_is_rejected_everywhere(app, accounts):
    """#32: disabling ends the sessions already open, on every staff page."""
    client = new_client(app)
    assert sign_in(client, DPO).status_code == 303
    assert client.get("/staff/").status_code == 200
    admin = app.test_cli_runner().invoke(args=["staff", "disable", DPO])
    assert admin.exit_code == 0, admin.output
    for path in ("/staff/", "/staff/account", "/staff/ledger", "/staff/leads"):
        response = client.get(path)
        assert response.status_code in (302, 303), (path, response.status_code)
        assert "/staff/login" in response.headers["Location"]
    # Enabling the account again does not bring the old session back.
    app.test_cli_runner().invoke(args=["staff", "enable", DPO])
    assert client.get("/staff/").status_code in (302, 303)
    assert sign_in(new_client(app), DPO, PASSWORD).status_code == 303


def test_marketing_sessions_never_reach_personal_data(app, accounts):
    """#31: every DPO page answers a marketing account 403 and shows nothing."""
    client = new_client(app)
    assert sign_in(client, MARKETING).status_code == 303
    paths = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("staff.")
        and "GET" in rule.methods
        and not rule.arguments
    ]
    denied = [path for path in paths if client.get(path).status_code == 403]
    assert {"/staff/ledger", "/staff/leads", "/staff/leads.csv", "/staff/audit",
            "/staff/register", "/staff/accounts"} <= set(denied)  # fmt: skip
    for path in denied:
        body = client.get(path).text
        assert "@" not in body.replace(MARKETING, "").replace(
            "contact@lorchestreparfum.com", ""
        ), path
