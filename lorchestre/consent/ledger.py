"""The hash-chained consent ledger of spec §5: canonical form, append, verify, stream."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring as _json_str

import sqlalchemy as sa

from ..extensions import db
from ..models import ConsentRecord, LedgerCheckpoint
from .declarations import OPTIONAL_KEYS

GENESIS_HASH = "0" * 64
LEDGER_LOCK = "consent-ledger"
RECORD_FIELDS = (
    "seq", "consent_id", "recorded_at", "action", "choices", "policy_version",
    "banner_sha256", "locale", "channel", "gpc", "prev_hash", "hash",
)  # fmt: skip


def format_timestamp(moment: datetime) -> str:
    """UTC, ISO 8601 with microseconds and Z: 2026-11-24T21:03:07.123456Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_json(record: dict) -> str:
    """The record (without ``hash``) serialised exactly as the spec's hash input."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def compute_hash(record: dict) -> str:
    """SHA-256 hex of prev_hash + "\\n" + canonical JSON of the record."""
    body = _fast_canonical(record)
    if body is None:
        body = canonical_json(record)
    payload = record["prev_hash"] + "\n" + body
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def row_to_record(row) -> dict:
    """A ledger row (ORM object or Core row) as the spec's record dict, with its hash."""
    return {
        "seq": row.seq,
        "consent_id": row.consent_id,
        "recorded_at": format_timestamp(row.recorded_at),
        "action": row.action,
        "choices": {
            "necessary": True,
            "analytics": bool(row.analytics),
            "advertising": bool(row.advertising),
            "personalization": bool(row.personalization),
        },
        "policy_version": row.policy_version,
        "banner_sha256": row.banner_sha256,
        "locale": row.locale,
        "channel": row.channel,
        "gpc": bool(row.gpc),
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def chain_start() -> tuple[int, str]:
    """The seq and hash the surviving chain continues from (0 and zeros, or a checkpoint)."""
    checkpoint = db.session.scalars(
        sa.select(LedgerCheckpoint).order_by(LedgerCheckpoint.id.desc()).limit(1)
    ).first()
    if checkpoint is None:
        return 0, GENESIS_HASH
    return checkpoint.last_purged_seq, checkpoint.last_purged_hash


def build_record(
    last_seq: int,
    last_hash: str,
    *,
    consent_id: str,
    recorded_at: datetime,
    action: str,
    choices: Mapping[str, bool],
    policy_version: str,
    banner_sha256: str,
    locale: str,
    channel: str,
    gpc: bool,
) -> dict:
    """The record that follows (last_seq, last_hash), with its hash (spec §5)."""
    record = {
        "seq": last_seq + 1,
        "consent_id": consent_id,
        "recorded_at": format_timestamp(recorded_at),
        "action": action,
        "choices": {"necessary": True} | {k: bool(choices[k]) for k in OPTIONAL_KEYS},
        "policy_version": policy_version,
        "banner_sha256": banner_sha256,
        "locale": locale,
        "channel": channel,
        "gpc": gpc,
        "prev_hash": last_hash,
    }
    record["hash"] = compute_hash(record)
    return record


def record_columns(record: dict, recorded_at: datetime) -> dict:
    """The consent_record columns that store ``record`` (choices flattened)."""
    flat = {k: v for k, v in record.items() if k != "choices"}
    flat.update({k: record["choices"][k] for k in OPTIONAL_KEYS})
    flat["recorded_at"] = recorded_at
    return flat


_TABLE = ConsentRecord.__table__
_HEAD = sa.select(_TABLE.c.seq, _TABLE.c.hash).order_by(_TABLE.c.seq.desc()).limit(1)
_INSERT = sa.insert(_TABLE)


def head() -> tuple[int, str]:
    """The last seq and hash of the chain; the caller holds the ledger lock."""
    # On the session's connection, not session.execute(): Core statements need none
    # of the ORM's execution machinery, which cost more than the query itself.
    row = db.session.connection().execute(_HEAD).first()
    return (row[0], row[1]) if row is not None else chain_start()


def append_many(entries: list[dict]) -> list[dict]:
    """Append records in order (each dict: build_record()'s keyword arguments), one head
    read and one INSERT; the caller holds the ledger lock inside a write transaction."""
    last_seq, last_hash = head()
    records, rows = [], []
    for entry in entries:
        record = build_record(last_seq, last_hash, **entry)
        last_seq, last_hash = record["seq"], record["hash"]
        records.append(record)
        rows.append(record_columns(record, entry["recorded_at"]))
    # Core insert: no ORM unit of work, the same rows as the model's.
    db.session.connection().execute(_INSERT, rows)
    return records


def append_in_batches(entries: Iterable[dict], batch: int = 10_000) -> int:
    """Append many records (seeding, benchmarks) without holding them all; returns how
    many. The caller holds the ledger lock inside a write transaction."""
    count, chunk = 0, []
    for entry in entries:
        chunk.append(entry)
        if len(chunk) == batch:
            count += len(append_many(chunk))
            chunk = []
    if chunk:
        count += len(append_many(chunk))
    return count


def _tf(value: object) -> str:
    return "true" if value else "false"


def _fast_canonical(r: dict) -> str | None:
    """canonical_json() for a record of exactly the spec's shape, built by hand.

    Byte-identical to json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False) (same string escaper); None for anything else, so the
    caller falls back to json.dumps. Keys in sorted order, written out.
    """
    c = r.get("choices")
    if (
        type(r.get("seq")) is not int
        or type(r.get("gpc")) is not bool
        or type(c) is not dict
        or len(c) != 4
        or len(r) - ("hash" in r) != 11
    ):
        return None
    try:
        if any(type(c[k]) is not bool for k in _SORTED_CHOICES):
            return None
        strings = [r[k] for k in _STRING_FIELDS]
    except KeyError:
        return None
    if any(type(v) is not str for v in strings):
        return None
    a, b, ch, cid, loc, pv, ph, ra = map(_json_str, strings)
    return (
        f'{{"action":{a},"banner_sha256":{b},"channel":{ch},"choices":'
        f'{{"advertising":{_tf(c["advertising"])},"analytics":{_tf(c["analytics"])},'
        f'"necessary":{_tf(c["necessary"])},'
        f'"personalization":{_tf(c["personalization"])}}},'
        f'"consent_id":{cid},"gpc":{_tf(r["gpc"])},"locale":{loc},'
        f'"policy_version":{pv},"prev_hash":{ph},"recorded_at":{ra},"seq":{r["seq"]}}}'
    )


_SORTED_CHOICES = ("advertising", "analytics", "necessary", "personalization")
_STRING_FIELDS = (
    "action", "banner_sha256", "channel", "consent_id", "locale",
    "policy_version", "prev_hash", "recorded_at",
)  # fmt: skip


def _sqlite_timestamp(text: str) -> str:
    """SQLite's stored 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC) as the spec's timestamp."""
    if len(text) == 26 and text[10] == " " and text[19] == ".":
        return text[:10] + "T" + text[11:] + "Z"
    moment = datetime.fromisoformat(text)  # anything else: parse it properly
    return format_timestamp(
        moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    )


def iter_rows(
    since: datetime | None = None, until: datetime | None = None, batch: int = 5000
) -> Iterator[tuple]:
    """Stream the ledger's rows in seq order as plain tuples, in _ROW_COLUMNS order.

    Core, not ORM, and no per-value type processing: ``recorded_at`` comes out as the
    spec's text (on SQLite straight from the stored text, skipping a datetime round
    trip), the four flags as bools or 0/1. This loop is most of what export and verify
    cost, so it is kept this lean; memory stays flat (batches, server-side cursor).
    """
    table = ConsentRecord.__table__
    sqlite = db.session.get_bind().dialect.name == "sqlite"
    if sqlite:
        yield from _iter_sqlite_rows(since, until, batch)
        return
    columns = []
    for name in _ROW_COLUMNS:
        column = table.c[name]
        if sqlite and name == "recorded_at":
            column = sa.type_coerce(column, sa.String)
        elif name in _FLAG_COLUMNS:
            column = sa.type_coerce(column, sa.Integer)  # 0/1 as stored
        columns.append(column)
    query = sa.select(*columns).order_by(table.c.seq)
    if since is not None:
        query = query.where(table.c.recorded_at >= since)
    if until is not None:
        query = query.where(table.c.recorded_at < until)
    to_text = _sqlite_timestamp if sqlite else format_timestamp
    result = db.session.execute(query.execution_options(yield_per=batch))
    try:
        for row in result:
            yield (row[0], row[1], to_text(row[2]), *row[3:])
    finally:
        result.close()  # releases PostgreSQL's server-side cursor if the caller stops early


_SQLITE_ROWS = """SELECT seq, consent_id,
 CASE WHEN length(recorded_at) = 26 AND substr(recorded_at, 11, 1) = ' '
  THEN substr(recorded_at, 1, 10) || 'T' || substr(recorded_at, 12) || 'Z' END,
 action, analytics, advertising, personalization, policy_version, banner_sha256,
 locale, channel, gpc, prev_hash, hash FROM consent_record"""


def _iter_sqlite_rows(
    since: datetime | None, until: datetime | None, batch: int
) -> Iterator[tuple]:
    """iter_rows() on SQLite: the driver's own tuples, the timestamp rewritten in SQL.

    SQLAlchemy writes SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff'; SQL turns that
    into the spec's text, so a row needs no Python work at all. A row stored in any
    other form (not written by this app) gets NULL there and is converted in Python.
    """
    connection = db.session.connection()  # the session's transaction: one snapshot
    column = ConsentRecord.__table__.c.recorded_at
    to_param = column.type.bind_processor(connection.dialect)
    where, params = [], []
    if since is not None:
        where.append("recorded_at >= ?")
        params.append(to_param(since))
    if until is not None:
        where.append("recorded_at < ?")
        params.append(to_param(until))
    sql = _SQLITE_ROWS + (" WHERE " + " AND ".join(where) if where else "")
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        cursor.execute(sql + " ORDER BY seq", params)
        while rows := cursor.fetchmany(batch):
            for row in rows:
                if row[2] is None:
                    row = (row[0], row[1], _odd_timestamp(row[0]), *row[3:])
                yield row
    finally:
        cursor.close()


def _odd_timestamp(seq: int) -> str | None:
    table = ConsentRecord.__table__
    raw = db.session.scalar(
        sa.select(sa.type_coerce(table.c.recorded_at, sa.String)).where(
            table.c.seq == seq
        )
    )
    return None if raw is None else _sqlite_timestamp(raw)


def row_record(row: tuple) -> dict:
    """A tuple of iter_rows() as the spec's record dict."""
    (
        seq, consent_id, recorded_at, action, analytics, advertising,
        personalization, policy_version, banner, locale, channel, gpc, prev, hash_,
    ) = row  # fmt: skip
    return {
        "seq": seq,
        "consent_id": consent_id,
        "recorded_at": recorded_at,
        "action": action,
        "choices": {
            "necessary": True,
            "analytics": bool(analytics),
            "advertising": bool(advertising),
            "personalization": bool(personalization),
        },
        "policy_version": policy_version,
        "banner_sha256": banner,
        "locale": locale,
        "channel": channel,
        "gpc": bool(gpc),
        "prev_hash": prev,
        "hash": hash_,
    }


def iter_records(
    since: datetime | None = None, until: datetime | None = None, batch: int = 5000
) -> Iterator[dict]:
    """Stream records in seq order, in batches, without loading the table into memory."""
    rows = iter_rows(since, until, batch)
    try:
        for row in rows:
            yield row_record(row)
    finally:
        rows.close()


_TF = ("false", "true")


def row_hash(row: tuple) -> str:
    """compute_hash() of an iter_rows() tuple, the canonical JSON written out by hand."""
    (
        seq, consent_id, recorded_at, action, analytics, advertising,
        personalization, policy_version, banner, locale, channel, gpc, prev, _,
    ) = row  # fmt: skip
    try:
        body = (
            f'{{"action":{_json_str(action)},"banner_sha256":{_json_str(banner)},'
            f'"channel":{_json_str(channel)},"choices":{{"advertising":'
            f'{_TF[bool(advertising)]},"analytics":{_TF[bool(analytics)]},'
            f'"necessary":true,"personalization":{_TF[bool(personalization)]}}},'
            f'"consent_id":{_json_str(consent_id)},"gpc":{_TF[bool(gpc)]},'
            f'"locale":{_json_str(locale)},"policy_version":{_json_str(policy_version)},'
            f'"prev_hash":{_json_str(prev)},"recorded_at":{_json_str(recorded_at)},'
            f'"seq":{int(seq)}}}'
        )
    except TypeError:  # a NULL where the spec has a string: let json.dumps say null
        return compute_hash(row_record(row))
    return hashlib.sha256((prev + "\n" + body).encode("utf-8")).hexdigest()


_ROW_COLUMNS = (
    "seq", "consent_id", "recorded_at", "action", "analytics", "advertising",
    "personalization", "policy_version", "banner_sha256", "locale", "channel", "gpc",
    "prev_hash", "hash",
)  # fmt: skip
_FLAG_COLUMNS = ("analytics", "advertising", "personalization", "gpc")


@dataclass(frozen=True)
class Verification:
    """Outcome of re-checking the whole chain."""

    ok: bool
    count: int
    head_hash: str
    first_bad_seq: int | None = None
    reason: str = ""


def verify_chain() -> Verification:
    """Recompute every hash and check seq continuity and links, in one streamed pass."""
    expected_seq, expected_prev = chain_start()
    count = 0
    with closing(iter_rows()) as rows:
        for row in rows:
            seq, prev, hash_ = row[0], row[12], row[13]
            expected_seq += 1
            problem = None
            if seq != expected_seq:
                problem = f"expected seq {expected_seq}, found {seq} (gap or reorder)"
            elif prev != expected_prev:
                problem = "prev_hash does not match the previous record's hash"
            elif row_hash(row) != hash_:
                problem = "hash does not match the record's content"
            if problem:
                return Verification(False, count, expected_prev, expected_seq, problem)
            expected_prev = hash_
            count += 1
    return Verification(True, count, expected_prev)


def purge_before(cutoff: datetime, dry_run: bool = False) -> tuple[int, int | None]:
    """Delete the oldest records (a prefix of the chain) recorded before ``cutoff``.

    A checkpoint keeps the last purged seq and hash, so what remains still verifies.
    Returns (records purged, last purged seq).
    """
    from ..database import write_transaction

    table = ConsentRecord.__table__
    with write_transaction(lock=LEDGER_LOCK):
        # Only a prefix may go: stop at the first record that must stay.
        first_kept = db.session.scalar(
            sa.select(sa.func.min(table.c.seq)).where(table.c.recorded_at >= cutoff)
        )
        query = (
            sa.select(table.c.seq, table.c.hash).order_by(table.c.seq.desc()).limit(1)
        )
        if first_kept is not None:
            query = query.where(table.c.seq < first_kept)
        last = db.session.execute(query).first()
        if last is None:
            return 0, None
        count = db.session.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c.seq <= last.seq)
        )
        if dry_run:
            db.session.rollback()
            return count, last.seq
        db.session.execute(sa.delete(table).where(table.c.seq <= last.seq))
        db.session.add(
            LedgerCheckpoint(
                last_purged_seq=last.seq, last_purged_hash=last.hash, purged_count=count
            )
        )
    return count, last.seq
