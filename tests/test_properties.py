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


# --- Accept-Language: structured headers, against the rule the spec states ---------

LANGUAGE_TAGS = [
    "fr",
    "fr-FR",
    "fr-CA",
    "en",
    "en-GB",
    "en-US",
    "de",
    "de-DE",
    "it",
    "*",
]
QUALITIES = ["", ";q=0", ";q=0.1", ";q=0.5", ";q=0.9", ";q=1", ";q=1.0", ";q=abc"]


@st.composite
def accept_language_headers(draw):
    """A well-formed-ish header: tags with optional q values, spaces, empty items."""
    items = draw(
        st.lists(
            st.tuples(st.sampled_from(LANGUAGE_TAGS), st.sampled_from(QUALITIES)),
            max_size=6,
        )
    )
    separator = draw(st.sampled_from([",", ", ", " , ", ",,"]))
    return separator.join(tag + q for tag, q in items)


@FIXTURE_OK
@given(accept_language_headers())
def test_accept_language_picks_a_served_language(app, header):
    """Always fr or en; fr when no English range is acceptable; en when only English is."""
    from lorchestre.i18n import preferred_language

    with app.test_request_context("/", headers={"Accept-Language": header}):
        result = preferred_language()
    assert result in ("fr", "en")

    def acceptable(prefix):
        return any(
            part.strip().split(";")[0].startswith(prefix)
            and not part.strip().endswith(";q=0")
            for part in header.split(",")
            if part.strip()
        )

    if not acceptable("en") and not acceptable("*"):
        assert result == "fr"
    if acceptable("en") and not acceptable("fr") and not acceptable("*"):
        # werkzeug drops ranges whose q it cannot parse, which may leave none at all
        assert result == "en" or ";q=abc" in header


# --- next: what it keeps, and that its answer is stable ----------------------------

local_paths = st.builds(
    lambda segments, query: "/" + "/".join(segments) + (f"?{query}" if query else ""),
    st.lists(
        st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~%", max_size=10),
        max_size=4,
    ),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789=&%-_", max_size=20),
)


@given(local_paths, st.sampled_from(["fr", "en"]))
def test_safe_next_keeps_every_plain_local_path(path, lang):
    if path.startswith("//"):
        assert safe_next(path, lang) == f"/{lang}/"
    else:
        assert safe_next(path, lang) == path


@given(tricky_paths, st.sampled_from(["fr", "en"]))
def test_safe_next_is_the_target_or_home_and_idempotent(target, lang):
    result = safe_next(target, lang)
    assert result in (target, f"/{lang}/")
    assert result.isascii() and result.isprintable()
    assert safe_next(result, lang) == result


# --- the form parser, with repeated fields -----------------------------------------


@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                ["action", "lang", "next", "analytics", "advertising", "csrf_token"]
            ),
            st.one_of(
                st.sampled_from(["accept_all", "custom", "withdraw", "fr", "1", ""]),
                st.text(max_size=10),
            ),
        ),
        max_size=8,
    )
)
def test_parse_submission_with_repeats_only_raises_invalid_submission(pairs):
    form = MultiDict(pairs)
    try:
        submission = parse_submission(form)
    except InvalidSubmission:
        return
    assert all(len(form.getlist(key)) == 1 for key in form)
    assert submission.action == form["action"]
    assert set(submission.selected) == {"analytics", "advertising", "personalization"}


# --- the cookie decoder, with genuinely signed payloads ----------------------------

json_payloads = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.one_of(st.text(max_size=50), st.integers(), st.none()),
            "v": st.one_of(st.sampled_from(["2026-11-25.1"]), st.text(max_size=12)),
            "c": st.one_of(st.text(alphabet="01x", max_size=5), st.integers()),
            "t": st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans()),
        },
    ),
)


@FIXTURE_OK
@given(json_payloads)
def test_signed_but_odd_cookies_decode_to_none_or_a_valid_state(app, payload):
    """Only the secret's holder can sign; even so, nothing it signs can crash us."""
    from itsdangerous import URLSafeTimedSerializer

    from lorchestre.consent.services import decode_cookie
    from lorchestre.tokens import SALT_CONSENT_COOKIE

    signed = URLSafeTimedSerializer(
        app.config["SECRET_KEY"], salt=SALT_CONSENT_COOKIE
    ).dumps(payload)
    with app.test_request_context("/"):
        state = decode_cookie(signed)
    if state is not None:
        assert set(state.choices) == {"analytics", "advertising", "personalization"}
        assert all(isinstance(v, bool) for v in state.choices.values())


@FIXTURE_OK
@given(
    st.fixed_dictionaries(
        {k: st.booleans() for k in ("analytics", "advertising", "personalization")}
    )
)
def test_cookie_round_trip(app, choices):
    from lorchestre.consent import services

    with app.test_request_context("/"):
        consent_id = services.new_consent_id()
        value = services.encode_cookie(consent_id, choices, services.utcnow())
        state = services.decode_cookie(value)
    assert state.consent_id == consent_id and state.choices == choices


# --- the canonicaliser, on records shaped like the ledger's ------------------------

ledger_records = st.fixed_dictionaries(
    {
        "seq": st.integers(min_value=1, max_value=2**53),
        "consent_id": st.text(max_size=43),
        "recorded_at": st.text(max_size=27),
        "action": st.sampled_from(["accept_all", "reject_all", "custom", "withdraw"]),
        "choices": st.fixed_dictionaries(
            {
                "necessary": st.just(True),
                "analytics": st.booleans(),
                "advertising": st.booleans(),
                "personalization": st.booleans(),
            }
        ),
        "policy_version": st.text(max_size=12),
        "banner_sha256": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
        "locale": st.sampled_from(["fr", "en"]),
        "channel": st.sampled_from(["form", "js"]),
        "gpc": st.booleans(),
        "prev_hash": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    }
)


def _spec_hash(record: dict) -> str:
    """spec §5 written out again, sharing nothing with the app."""
    import hashlib

    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((record["prev_hash"] + "\n" + text).encode()).hexdigest()


@given(ledger_records, st.randoms())
def test_hash_matches_the_spec_whatever_the_key_order(record, rnd):
    shuffled = list(record.items())
    rnd.shuffle(shuffled)
    assert compute_hash(dict(shuffled)) == compute_hash(record) == _spec_hash(record)
    assert json.loads(canonical_json(record)) == record


@given(ledger_records, st.data())
def test_changing_any_field_changes_the_hash(record, data):
    key = data.draw(st.sampled_from(sorted(record)))
    original = compute_hash(record)
    changed = dict(record)
    if key == "choices":
        category = data.draw(
            st.sampled_from(["analytics", "advertising", "personalization"])
        )
        changed["choices"] = {
            **record["choices"],
            category: not record["choices"][category],
        }
    elif isinstance(record[key], bool):
        changed[key] = not record[key]
    elif isinstance(record[key], int):
        changed[key] = record[key] + 1
    else:
        changed[key] = record[key] + "x"
    assert compute_hash(changed) != original
