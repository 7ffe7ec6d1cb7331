"""Hostile input from docs bad-inputs.md; each test names its row (#n).

The first part runs against every endpoint of tests/public_posts.py, so the contact
form and the rights desk are covered as soon as they are added there. Rows already
proven elsewhere: #1/#2 for consent and #13 (most forged cookies) in
tests/test_consent.py; #24 in tests/test_consent.py and tests/test_properties.py;
#25/#26 (GET) in tests/test_i18n.py; #4's companion (Referrer-Policy on every page)
in tests/test_factory.py; #29/#30 in tests/test_ledger.py.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from werkzeug.datastructures import MultiDict

from lorchestre.consent import services
from lorchestre.extensions import db

from .conftest import csrf_from
from .public_posts import CONSENT, PUBLIC_POSTS, PublicPost

HTTPS = "https://localhost"
OWN_ORIGIN = {"Origin": HTTPS, "Referer": f"{HTTPS}/fr/"}
OPTIONAL_COOKIES = ("lorchestre_analytics", "lorchestre_ads", "lorchestre_prefs")
NASTY = {
    "NUL": "\x00",
    "NUL inside": "accept\x00_all",
    "ESC": "\x1b[31mred",
    "RTL override": "\u202eepyt",
    "zero-width": "a\u200bb\u200d",
    "BOM": "\ufeffx",
    "lone CR LF": "x\r\nBcc: victim@example.test",
}


@pytest.fixture(params=PUBLIC_POSTS, ids=lambda endpoint: endpoint.name)
def endpoint(request) -> PublicPost:
    """Each public POST endpoint in turn."""
    return request.param


def cookie_names(response) -> dict[str, str]:
    return {h.split("=", 1)[0]: h for h in response.headers.getlist("Set-Cookie")}


def token(client, endpoint: PublicPost, base_url: str = "http://localhost") -> str:
    return csrf_from(client.get(endpoint.form_page, base_url=base_url).data)


def submit(client, endpoint, csrf, *, base_url="http://localhost", headers=None, **kw):
    data = {"csrf_token": csrf, **endpoint.valid(), **kw}
    data = {key: value for key, value in data.items() if value is not None}
    return client.post(endpoint.path, data=data, base_url=base_url, headers=headers)


def assert_refused(app, endpoint, response, status: int) -> None:
    """Refused with ``status``, a page in both languages, and nothing stored."""
    assert response.status_code == status
    assert endpoint.stored(app) == 0
    for name in endpoint.success_cookies:
        assert name not in cookie_names(response)


def test_positive_control_over_https(app, endpoint):
    """The checks below refuse only the hostile part: the same request, clean, succeeds."""
    client = app.test_client()
    csrf = token(client, endpoint, HTTPS)
    response = submit(client, endpoint, csrf, base_url=HTTPS, headers=OWN_ORIGIN)
    assert response.status_code in endpoint.success
    assert endpoint.stored(app) > 0


def test_no_csrf_token(app, endpoint):
    """#1: a bilingual 400, nothing stored, no cookie."""
    client = app.test_client()
    client.get(endpoint.form_page)
    response = submit(client, endpoint, None)
    assert_refused(app, endpoint, response, 400)
    assert "Requête incorrecte" in response.text and "Bad request" in response.text


def test_token_after_secret_key_rotation(app_factory, endpoint):
    """#2: a token (and session) signed with the previous key is refused."""
    old = app_factory(SECRET_KEY="old-secret-key-0123456789abcdef0123456789")
    old_client = old.test_client()
    csrf = token(old_client, endpoint)
    session = old_client.get_cookie("lorchestre_session").value
    new = app_factory(SECRET_KEY="new-secret-key-0123456789abcdef0123456789")
    client = new.test_client()
    client.set_cookie("lorchestre_session", session)
    assert_refused(new, endpoint, submit(client, endpoint, csrf), 400)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Referer": "https://evil.example/x"},
        {"Origin": "https://evil.example", "Referer": f"{HTTPS}/fr/"},
        {"Origin": HTTPS, "Referer": "https://evil.example/x"},
        {"Origin": "null", "Referer": f"{HTTPS}/fr/"},
        {"Origin": "https://localhost.evil.example", "Referer": f"{HTTPS}/fr/"},
        {"Referer": "https://evil.example/fr/"},
        {"Origin": "https://[localhost", "Referer": f"{HTTPS}/fr/"},
        {"Origin": "localhost", "Referer": f"{HTTPS}/fr/"},
    ],
    ids=[
        "both",
        "origin",
        "referer",
        "null-origin",
        "suffix-origin",
        "referer-only",
        "malformed-origin",
        "bare-origin",
    ],  # fmt: skip
)
def test_cross_site_post_over_https(app, endpoint, headers):
    """#3: forged cross-site POST, even carrying a valid token: 400, nothing stored."""
    client = app.test_client()
    csrf = token(client, endpoint, HTTPS)
    response = submit(client, endpoint, csrf, base_url=HTTPS, headers=headers)
    assert_refused(app, endpoint, response, 400)


def test_foreign_origin_over_plain_http(app, endpoint):
    """#3 without HTTPS, where Flask-WTF checks no Referer: the Origin check holds."""
    client = app.test_client()
    csrf = token(client, endpoint)
    response = submit(client, endpoint, csrf, headers={"Origin": "http://evil.example"})
    assert_refused(app, endpoint, response, 400)


def test_https_post_without_referer(app, endpoint):
    """#4: Flask-WTF's strict Referer check; pages send a policy that keeps it."""
    client = app.test_client()
    page = client.get(endpoint.form_page, base_url=HTTPS)
    assert page.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    response = submit(client, endpoint, csrf_from(page.data), base_url=HTTPS)
    assert_refused(app, endpoint, response, 400)


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_body_over_max_content_length(app, endpoint, encoding):
    """#5: 413, nothing stored."""
    client = app.test_client()
    csrf = token(client, endpoint)
    big = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    response = client.post(
        endpoint.path,
        data={"csrf_token": csrf, **endpoint.valid(), endpoint.fields[-1]: big},
        content_type="multipart/form-data" if encoding == "multipart" else None,
    )
    assert_refused(app, endpoint, response, 413)
    assert "Trop de données" in response.text and "Too much data" in response.text


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_more_fields_than_max_form_parts(app, endpoint, encoding):
    """#5: 413 for both encodings (Werkzeug alone counted only multipart parts)."""
    client = app.test_client()
    csrf = token(client, endpoint)
    parts = app.config["MAX_FORM_PARTS"]
    data = [("csrf_token", csrf), *endpoint.valid().items()]
    data += [(endpoint.fields[0], "x")] * parts
    body_type = "multipart/form-data" if encoding == "multipart" else None
    response = client.post(endpoint.path, data=MultiDict(data), content_type=body_type)
    assert_refused(app, endpoint, response, 413)


@pytest.mark.parametrize(
    "disposition",
    [
        'form-data; filename="x.txt"',
        "form-data",
        "form-data; name=",
        "attachment",
    ],
)
def test_multipart_part_without_a_name(app, endpoint, disposition):
    """A nameless part used to reach Flask-WTF as the key None: a 500 for anyone."""
    client = app.test_client()
    csrf = token(client, endpoint)
    parts = [("csrf_token", csrf), *endpoint.valid().items()]
    body = "".join(
        f'--b\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in parts
    )
    body += f"--b\r\nContent-Disposition: {disposition}\r\n\r\nvalue\r\n--b--\r\n"
    response = client.post(
        endpoint.path,
        data=body.encode(),
        content_type="multipart/form-data; boundary=b",
    )
    assert response.status_code < 500
    no_token = client.post(
        endpoint.path,
        data=b"--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--\r\n",
        content_type="multipart/form-data; boundary=b",
    )
    assert no_token.status_code == 400


def test_untrusted_host(app_factory, endpoint):
    """#23: the POST and its form page answer 400 for a Host we do not serve."""
    app = app_factory(TRUSTED_HOSTS=["www.example.test", "localhost"])
    client = app.test_client()
    csrf = token(client, endpoint)
    evil = {"Host": "evil.example"}
    assert client.get(endpoint.form_page, headers=evil).status_code == 400
    response = submit(client, endpoint, csrf, headers=evil)
    assert_refused(app, endpoint, response, 400)
    assert "evil" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "headers"),
    [
        ("GET", "/fr/", {}),
        ("GET", "/en/my-data", {}),
        ("GET", "/healthz", {}),
        ("POST", "/consent", {}),
        # refused by the Origin check before the Host is looked at (found by the fuzz)
        ("POST", "/consent", {"Origin": "null"}),
    ],
)
def test_untrusted_host_is_a_bilingual_400_without_reflection(
    app_factory, method, path, headers
):
    """#23: Host not in TRUSTED_HOSTS answers 400 (it used to fail with a 500)."""
    app = app_factory(TRUSTED_HOSTS=["www.example.test", "localhost"])
    client = app.test_client()
    headers = {"Host": "evil.example", **headers}
    response = client.open(path, method=method, headers=headers)
    assert response.status_code == 400
    assert "Requête incorrecte" in response.text and "Bad request" in response.text
    assert "evil" not in response.text
    assert 'href="/fr/"' in response.text  # links stay relative to our own site


@pytest.mark.parametrize("nasty", NASTY.values(), ids=NASTY.keys())
def test_control_and_bidi_characters_in_every_field(app, endpoint, nasty):
    """#10: never a 500; either refused with nothing stored, or accepted."""
    client = app.test_client()
    csrf = token(client, endpoint)
    for name in endpoint.fields:
        for value in (nasty, endpoint.valid().get(name, "x") + nasty):
            before = endpoint.stored(app)
            response = submit(client, endpoint, csrf, **{name: value})
            assert response.status_code < 500, (name, value)
            assert "\x00" not in response.text
            if response.status_code not in endpoint.success:
                assert endpoint.stored(app) == before, (name, value)


@pytest.mark.parametrize("proxy_count", [0, 1])
def test_forged_forwarded_for_does_not_reset_the_limit(
    app_factory, endpoint, proxy_count
):
    """#21: 429 + Retry-After (FR/EN) after the limit; a forged XFF changes nothing.

    Behind one proxy (PROXY_COUNT=1) the key is the address the proxy appended
    last; without a proxy, X-Forwarded-For is ignored altogether.
    """
    app = app_factory(
        PROXY_COUNT=proxy_count, **{endpoint.rate_limit_setting: "3 per minute"}
    )
    client = app.test_client()
    csrf = token(client, endpoint)
    statuses = []
    for i in range(5):
        forged = {"X-Forwarded-For": f"198.51.100.{i}, 203.0.113.7"}
        statuses.append(submit(client, endpoint, csrf, headers=forged))
    assert [r.status_code in endpoint.success for r in statuses] == [True] * 3 + [
        False
    ] * 2
    stored = endpoint.stored(app)
    limited = statuses[-1]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) > 0
    assert "Trop de requêtes" in limited.text and "Too many requests" in limited.text
    # another client (as the proxy reports it) is not affected by the first one's limit
    other = {"X-Forwarded-For": "203.0.113.8"}
    expected = endpoint.success if proxy_count else frozenset({429})
    assert submit(client, endpoint, csrf, headers=other).status_code in expected
    if not proxy_count:
        assert endpoint.stored(app) == stored


# --- consent-specific --------------------------------------------------------------


def ledger_rows(app) -> list[dict]:
    with app.app_context():
        return [
            dict(row._mapping)
            for row in db.session.execute(sa.text("SELECT * FROM consent_record"))
        ]


@pytest.mark.parametrize("nasty", NASTY.values(), ids=NASTY.keys())
def test_consent_never_stores_or_redirects_to_raw_characters(app, nasty):
    """#10 for consent: only enumerated values reach the ledger; next stays ASCII."""
    client = app.test_client()
    csrf = token(client, CONSENT)
    for fields in (
        {"lang": "en" + nasty},
        {"next": "/fr/privacy" + nasty},
        {"next": "/fr/" + nasty + "privacy"},
        {"action": "custom", "analytics": nasty},
    ):
        response = submit(client, CONSENT, csrf, **fields)
        assert response.status_code == 303, fields
        location = response.headers["Location"]
        assert location.isascii() and location.startswith("/"), fields
        if "next" in fields:
            assert location == "/fr/"
    for row in ledger_rows(app):
        assert row["locale"] in ("fr", "en") and row["action"] in services.ACTIONS
        assert all(str(value).isascii() for value in row.values())


def test_forged_forwarded_for_is_never_stored(app_factory):
    """#22: the ledger holds no address at all, forged or real."""
    app = app_factory(PROXY_COUNT=1)
    client = app.test_client()
    csrf = token(client, CONSENT)
    headers = {"X-Forwarded-For": "6.6.6.6, 203.0.113.9"}
    assert submit(client, CONSENT, csrf, headers=headers).status_code == 303
    [row] = ledger_rows(app)
    dump = repr(row)
    assert "6.6.6.6" not in dump and "203.0.113" not in dump


def test_rate_limited_consent_leaves_nothing_optional(app_factory):
    """A refusal stopped by the limit still expires optional cookies, like a 503."""
    app = app_factory(CONSENT_RATE_LIMIT="1 per minute")
    client = app.test_client()
    csrf = token(client, CONSENT)
    assert submit(client, CONSENT, csrf).status_code == 303  # accept all, recorded
    response = submit(client, CONSENT, csrf, action="reject_all")
    assert response.status_code == 429
    cookies = cookie_names(response)
    for name in (*OPTIONAL_COOKIES, services.COOKIE_NAME):
        assert "Max-Age=0" in cookies[name], name
    assert "analytics-example.js" not in client.get("/fr/").text


def test_unknown_language_in_consent_post_is_not_reflected(app):
    """#26 for POST: an unknown lang falls back to French and is echoed nowhere."""
    client = app.test_client()
    csrf = token(client, CONSENT)
    response = submit(client, CONSENT, csrf, lang="<script>alert(1)</script>", next="")
    assert response.headers["Location"] == "/fr/"
    assert "<script>alert" not in response.text
    assert ledger_rows(app)[0]["locale"] == "fr"


@pytest.mark.parametrize(
    "cookie",
    [
        "A" * 10_240,
        "\xff\xfe\xfd",
        '"quoted"',
        "x" * 200 + "." + "y" * 200,
    ],
    ids=["10KB", "latin-1 bytes", "quoted", "dotted junk"],
)
def test_more_forged_consent_cookies(app, cookie):
    """#13 (other cases in test_consent.py): treated as no choice, 200, banner shown."""
    client = app.test_client()
    response = client.get("/fr/", headers={"Cookie": f"lorchestre_consent={cookie}"})
    assert response.status_code == 200
    assert 'id="consent-banner"' in response.text
    assert "analytics-example.js" not in response.text


def test_two_consent_cookies_the_forged_one_never_wins(app):
    """#13: a second, forged cookie of the same name grants nothing."""
    client = app.test_client()
    with app.test_request_context("/"):
        refusal = services.encode_cookie(
            services.new_consent_id(),
            services.choices_for("reject_all"),
            services.utcnow(),
        )
    header = f"lorchestre_consent=forged-accept-all; lorchestre_consent={refusal}"
    response = client.get("/fr/", headers={"Cookie": header})
    assert response.status_code == 200
    assert "analytics-example.js" not in response.text
