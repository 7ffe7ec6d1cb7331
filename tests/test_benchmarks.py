"""The benchmark's own parts that must be right (no timing here): its data and P1's bytes."""

from __future__ import annotations

import json

import sqlalchemy as sa
from flask import Flask
from hypothesis import given, settings
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
                ledger.append_many([kwargs])  # what one consent alone commits
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


@settings(deadline=None)  # pure functions; a loaded CI box is slow, not wrong
@given(records)
def test_hand_built_jsonl_line_is_json_dumps(record):
    expected = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    assert jsonl_line(record) == expected


def _as_row(record: dict) -> tuple:
    c = record["choices"]
    return (
        record["seq"], record["consent_id"], record["recorded_at"], record["action"],
        c["analytics"], c["advertising"], c["personalization"],
        record["policy_version"], record["banner_sha256"], record["locale"],
        record["channel"], record["gpc"], record["prev_hash"], record["hash"],
    )  # fmt: skip


@settings(deadline=None)
@given(records, st.booleans())
def test_row_formatters_match_the_record_formatters(record, as_ints):
    import csv
    import io

    from lorchestre.consent.exports import (
        csv_cells,
        csv_line,
        csv_row,
        row_jsonl_line,
    )

    record = {k: record[k] for k in ledger.RECORD_FIELDS}  # the order records have
    record["choices"] = {
        k: True if k == "necessary" else record["choices"][k]  # no such column
        for k in ("necessary", "analytics", "advertising", "personalization")
    }
    row = _as_row(record)
    if as_ints:  # SQLite hands the flags back as 0/1
        row = tuple(int(v) if isinstance(v, bool) else v for v in row)
    assert row_jsonl_line(row) == jsonl_line(record)
    assert ledger.row_hash(row) == ledger.compute_hash(record)
    assert ledger.row_record(row) == record
    a, b = io.StringIO(), io.StringIO()
    csv.writer(a, lineterminator="\n").writerow(csv_cells(row))
    csv.writer(b, lineterminator="\n").writerow(csv_row(record))
    assert a.getvalue() == b.getvalue()
    line = csv_line(row)
    assert (line if isinstance(line, str) else a.getvalue()) == a.getvalue()
