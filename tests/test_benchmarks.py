"""The benchmark's own parts that must be right (no timing here): its data and P1's bytes."""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st

from benchmarks.ledgerdata import banner_digests, bulk_append, synthetic_choices
from benchmarks.staff_stats import END, START
from lorchestre.consent import ledger
from lorchestre.consent.exports import jsonl_line
from lorchestre.database import write_transaction
from lorchestre.extensions import db
from lorchestre.models import ConsentRecord


def _rows() -> list[tuple]:
    table = ConsentRecord.__table__
    return [
        tuple(r) for r in db.session.execute(sa.select(table).order_by(table.c.seq))
    ]


def test_bulk_ledger_is_the_chain_the_append_path_builds(app: Flask):
    with app.app_context():
        banners = banner_digests(app)
        inputs = list(synthetic_choices(60, START, END, banners, seed=3))
        assert bulk_append(inputs, batch=25) == 60
        bulk = _rows()
        assert ledger.verify_chain().ok
        db.session.execute(sa.delete(ConsentRecord))
        db.session.commit()
        for kwargs in inputs:
            with write_transaction(lock=ledger.LEDGER_LOCK):
                ledger.append(**kwargs)
        assert _rows() == bulk
        result = ledger.verify_chain()
        assert result.ok and result.count == 60
        # some visitors come back: the history lookup P8 times has something to find
        assert len({row.consent_id for row in db.session.query(ConsentRecord)}) < 60


def test_p1_measures_the_rendered_banner_and_its_stylesheet():
    from benchmarks.run import Bench, p1_banner

    bench = Bench(quick=True)
    p1_banner(bench)
    assert not bench.failures, bench.failures
    (row,) = bench.rows
    assert row["met"]
    details = row["details"]
    assert set(details["html_gzip_by_lang"]) == {"fr", "en"}
    assert (
        min(details["html_gzip_by_lang"].values()) > 500
    )  # the real banner, not a stub
    assert details["css_gzip"] > 300 and details["js_gzip"] > 300
    assert details["works_without_js"] and details["other_origin_refs"] == 0


text = st.text(max_size=30)
records = st.fixed_dictionaries(
    {
        "seq": st.integers(min_value=1, max_value=2**62),
        "consent_id": text,
        "recorded_at": text,
        "action": text,
        "choices": st.fixed_dictionaries(
            {
                "necessary": st.booleans(),
                "analytics": st.booleans(),
                "advertising": st.booleans(),
                "personalization": st.booleans(),
            }
        ),
        "policy_version": text,
        "banner_sha256": text,
        "locale": text,
        "channel": text,
        "gpc": st.booleans(),
        "prev_hash": text,
        "hash": text,
    }
)


@given(records)
def test_hand_built_jsonl_line_is_json_dumps(record):
    expected = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    assert jsonl_line(record) == expected
