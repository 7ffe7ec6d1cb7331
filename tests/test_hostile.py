"""Hostile input from docs bad-inputs.md: each test names its row (#n)."""

from __future__ import annotations

import pytest

TRUSTED = ["www.example.test", "localhost"]


@pytest.fixture
def guarded(app_factory):
    """An app that answers only to the production host names."""
    return app_factory(TRUSTED_HOSTS=TRUSTED)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fr/"),
        ("GET", "/en/my-data"),
        ("GET", "/healthz"),
        ("POST", "/consent"),
    ],
)
def test_untrusted_host_is_a_bilingual_400_without_reflection(guarded, method, path):
    """#23: Host not in TRUSTED_HOSTS answers 400 (it used to fail with a 500)."""
    client = guarded.test_client()
    response = client.open(path, method=method, headers={"Host": "evil.example"})
    assert response.status_code == 400
    assert "Requête incorrecte" in response.text and "Bad request" in response.text
    assert "evil" not in response.text
    assert 'href="/fr/"' in response.text  # links stay relative to our own site
