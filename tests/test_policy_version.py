"""A wording change without a new policy version would keep old consents valid: forbid it."""

from __future__ import annotations

from lorchestre.consent.services import banner_text
from lorchestre.policy import CURRENT_POLICY, POLICY_VERSIONS, wording_fingerprint


def test_current_wording_matches_the_current_version(app):
    with app.test_request_context("/fr/"):
        fingerprint = wording_fingerprint(
            {lang: banner_text(lang) for lang in ("fr", "en")}
        )
    assert fingerprint == CURRENT_POLICY.fingerprint, (
        "The policy, banner or declarations wording changed: append a PolicyVersion to "
        f"lorchestre/policy.py with fingerprint {fingerprint!r} (this re-asks consent)."
    )


def test_versions_are_unique_and_dated_in_order():
    versions = [v.version for v in POLICY_VERSIONS]
    assert len(versions) == len(set(versions))
    dates = [v.published for v in POLICY_VERSIONS]
    assert dates == sorted(dates)
