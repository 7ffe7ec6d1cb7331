"""Fuzz every public POST (tests/public_posts.py): random fields, encodings and headers.

Whatever arrives, the answer is never a 5xx, and something is stored exactly when the
endpoint says it succeeded.
"""

from __future__ import annotations

import io
import json
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from .conftest import csrf_from
from .public_posts import PUBLIC_POSTS, PublicPost

FUZZ = settings(
    max_examples=300,
    deadline=None,  # database round trips, PostgreSQL in CI: no per-example deadline
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ALLOWED = {200, 303, 400, 413, 415, 429}
INTERESTING = [
    "",
    "accept_all",
    "reject_all",
    "custom",
    "withdraw",
    "fr",
    "en",
    "/fr/",
    "//evil.example",
    "/\\evil.example",
    "javascript:alert(1)",
    "on",
    "1",
    "\x00",
    "\u202e\u200b",
    "' OR 1=1--",
    "%_\\",
    '"><img src=x onerror=alert(1)>',
    '=HYPERLINK("http://evil")',
    "a@x.fr\r\nBcc: v@evil.example",
    "x" * 3000,
]
CONTENT_TYPES = [
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=zzz",
    "application/json",
    "text/plain",
    "application/octet-stream",
    "application/x-www-form-urlencoded; charset=utf-16",
    "application/x-www-form-urlencoded; charset=bogus",
    ";;;",
    "",
]


def values() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(INTERESTING), st.text(max_size=40))


BENIGN_HEADERS = {
    "Accept": ["application/json", "text/html", "*/*", "application/json;q=0", ";;"],
    "Accept-Language": ["de-DE", "en;q=abc", ";;;,,,", "en-GB"],
    "X-Forwarded-For": ["6.6.6.6, 203.0.113.1", "junk", ""],
    "Sec-GPC": ["1", "0", "yes"],
    "Origin": ["http://localhost"],
    "Host": ["localhost", "localhost:80"],
}
HOSTILE_HEADERS = {
    "Origin": ["https://evil.example", "null", "http://[x"],
    "Referer": ["https://evil.example/", "::"],
    "Host": ["evil.example", "localhost.evil.example"],
}


@st.composite
def requests(draw, endpoint: PublicPost) -> dict:
    """Keyword arguments for client.post: a body in some encoding, and headers.

    Half the requests are plausible (the endpoint's own fields, a real token, a form
    encoding) with random values, so they get past the CSRF check and exercise the
    endpoint itself; the other half are anything at all.
    """
    plausible = draw(st.booleans())
    known = st.sampled_from(endpoint.fields)
    names = known if plausible else st.one_of(known, st.text(max_size=12))
    pairs = list(endpoint.valid().items()) if plausible or draw(st.booleans()) else []
    extra = draw(st.lists(st.tuples(names, values()), max_size=6))
    if plausible:  # replace rather than repeat: a repeated field is refused early
        pairs = list((dict(pairs) | dict(extra)).items())
    else:
        pairs += extra
    if plausible or draw(st.booleans()):
        pairs.append(("csrf_token", "TOKEN"))
    encodings = ["urlencoded", "multipart", "bad-charset", "broken-escapes"]
    if not plausible:
        encodings += ["json", "garbage"]
    encoding = draw(st.sampled_from(encodings))
    headers = {}
    if not plausible and draw(st.booleans()):
        headers["X-CSRFToken"] = "TOKEN"
    pools = [BENIGN_HEADERS] if plausible else [BENIGN_HEADERS, HOSTILE_HEADERS]
    for pool in pools:
        for name, choices in pool.items():
            if draw(st.booleans()):
                headers[name] = draw(st.sampled_from(choices))
    kwargs: dict = {"headers": headers}
    if encoding == "urlencoded":
        kwargs["data"] = MultiDict(pairs)
    elif encoding == "multipart":
        data = MultiDict(pairs)
        if draw(st.booleans()):
            data.add("upload", (io.BytesIO(draw(st.binary(max_size=200))), "x.bin"))
        kwargs.update(data=data, content_type="multipart/form-data")
    elif encoding == "json":
        kwargs.update(data=json.dumps(dict(pairs)), content_type="application/json")
    elif encoding == "bad-charset":
        charset = draw(st.sampled_from(["utf-16", "latin-1", "cp1252", "bogus", ""]))
        body = urlencode(pairs).encode("utf-8")
        if charset in ("utf-16", "latin-1"):
            body = urlencode(pairs, encoding=charset, errors="replace").encode("ascii")
        kwargs.update(
            data=body,
            content_type=f"application/x-www-form-urlencoded; charset={charset}",
        )
    elif encoding == "broken-escapes":
        junk = draw(st.sampled_from(["%", "%z", "%ff%fe", "%00", "&&", "==", "%%25"]))
        body = "&".join(f"{quote(k)}={quote(v)}{junk}" for k, v in pairs)
        kwargs.update(data=body, content_type="application/x-www-form-urlencoded")
    else:
        kwargs.update(
            data=draw(st.binary(max_size=400)),
            content_type=draw(st.sampled_from(CONTENT_TYPES)),
        )
    return kwargs


def _with_token(kwargs: dict, token: str) -> dict:
    """Swap the TOKEN placeholder for a real CSRF token, wherever it was put."""
    headers = kwargs["headers"]
    if headers.get("X-CSRFToken") == "TOKEN":
        headers["X-CSRFToken"] = token
    data = kwargs.get("data")
    if isinstance(data, MultiDict):
        for key, value in list(data.items(multi=True)):
            if key == "csrf_token" and value == "TOKEN":
                data.setlist(
                    key, [token if v == "TOKEN" else v for v in data.getlist(key)]
                )
    elif isinstance(data, str):
        kwargs["data"] = data.replace("TOKEN", token)
    elif isinstance(data, bytes):
        kwargs["data"] = data.replace(b"TOKEN", token.encode())
    return kwargs


@pytest.mark.parametrize("endpoint", PUBLIC_POSTS, ids=lambda e: e.name)
def test_fuzz_public_post_never_fails(app_factory, endpoint):
    app = app_factory(
        PROXY_COUNT=1,
        TRUSTED_HOSTS=["localhost"],
        **{endpoint.rate_limit_setting: "100000 per minute"},
    )
    client = app.test_client()
    token = csrf_from(client.get(endpoint.form_page).data)

    @FUZZ
    @given(requests(endpoint))
    def one_request(kwargs):
        before = endpoint.stored(app)
        response = client.post(endpoint.path, **_with_token(kwargs, token))
        status = response.status_code
        assert status in ALLOWED, (status, kwargs)
        stored = endpoint.stored(app)
        if status in endpoint.success:
            assert stored > before or not endpoint.success_always_stores, kwargs
        else:
            assert stored == before, (status, kwargs)

    one_request()
