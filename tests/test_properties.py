"""Property tests: parsers and validators never crash and never let a visitor off-site."""

from __future__ import annotations

import json
from urllib.parse import urljoin, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from lorchestre.consent.forms import InvalidSubmission, parse_submission, safe_next
from lorchestre.consent.ledger import canonical_json, compute_hash

FIXTURE_OK = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200
)
tricky_paths = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda a, b: a + b,
        st.sampled_from(
            ["/", "//", "/\\", "\\", "\t/", "/\t/", "javascript:", "https:", "%2f"]
        ),
        st.text(max_size=40),
    ),
)


@given(tricky_paths)
def test_safe_next_stays_on_site(target):
    result = safe_next(target, "fr")
    assert result.startswith("/") and not result.startswith("//")
    # Resolved the way a browser would, against our origin, it stays on our origin.
    resolved = urlsplit(urljoin("https://site.example/fr/", result.replace("\\", "/")))
    assert resolved.netloc == "site.example"
    assert resolved.scheme == "https"


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "action",
                "lang",
                "next",
                "analytics",
                "advertising",
                "personalization",
                "necessary",
                "csrf_token",
                "other",
            ]
        ),  # fmt: skip
        st.text(max_size=20),
    )
)
def test_parse_submission_only_raises_invalid_submission(fields):
    try:
        submission = parse_submission(MultiDict(fields))
    except InvalidSubmission:
        return
    assert submission.action in ("accept_all", "reject_all", "custom", "withdraw")
    assert submission.lang in ("fr", "en")


@FIXTURE_OK
@given(st.text(max_size=600))
def test_cookie_decoder_never_raises(app, value):
    from lorchestre.consent.services import decode_cookie

    with app.test_request_context("/"):
        assert decode_cookie(value) is None


@FIXTURE_OK
@given(st.text(max_size=60))
def test_accept_language_never_errors(client, header):
    try:
        header.encode("latin-1")
        if any(ch in header for ch in "\r\n\x00"):
            return  # not a valid header value either
    except UnicodeEncodeError:
        return  # cannot be sent as an HTTP header
    response = client.get("/", headers={"Accept-Language": header})
    assert response.status_code == 302
    assert response.headers["Location"] in ("/fr/", "/en/")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(), children, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(st.text(), json_values, max_size=6),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
)
def test_canonical_form_is_stable_and_hash_covers_content(record, prev):
    record = {**record, "prev_hash": prev}
    text = canonical_json(record)
    assert json.loads(text) == {k: v for k, v in record.items() if k != "hash"}
    assert canonical_json(json.loads(text)) == text
    assert compute_hash({**record, "hash": "ignored"}) == compute_hash(record)
