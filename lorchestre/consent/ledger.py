"""The hash-chained consent ledger of spec §5: canonical form, append, verify, stream."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime

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
    payload = record["prev_hash"] + "\n" + canonical_json(record)
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


def append(
    *,
    consent_id: str,
    recorded_at: datetime,
    action: str,
    choices: dict[str, bool],
    policy_version: str,
    banner_sha256: str,
    locale: str,
    channel: str,
    gpc: bool,
) -> dict:
    """Append one record; the caller holds the ledger lock inside a write transaction."""
    head = db.session.execute(
        sa.select(ConsentRecord.seq, ConsentRecord.hash)
        .order_by(ConsentRecord.seq.desc())
        .limit(1)
    ).first()
    last_seq, last_hash = head if head is not None else chain_start()
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
    db.session.add(
        ConsentRecord(
            seq=record["seq"],
            consent_id=consent_id,
            recorded_at=recorded_at,
            action=action,
            **{k: record["choices"][k] for k in OPTIONAL_KEYS},
            policy_version=policy_version,
            banner_sha256=banner_sha256,
            locale=locale,
            channel=channel,
            gpc=gpc,
            prev_hash=last_hash,
            hash=record["hash"],
        )
    )
    db.session.flush()
    return record


def iter_records(
    since: datetime | None = None, until: datetime | None = None, batch: int = 5000
) -> Iterator[dict]:
    """Stream records in seq order, in batches, without loading the table into memory."""
    table = ConsentRecord.__table__
    query = sa.select(table).order_by(table.c.seq)
    if since is not None:
        query = query.where(table.c.recorded_at >= since)
    if until is not None:
        query = query.where(table.c.recorded_at < until)
    result = db.session.execute(query.execution_options(yield_per=batch))
    try:
        for row in result:
            yield row_to_record(row)
    finally:
        result.close()  # releases PostgreSQL's server-side cursor if the caller stops early


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
    with closing(iter_records()) as records:
        for record in records:
            expected_seq += 1
            problem = None
            if record["seq"] != expected_seq:
                problem = f"expected seq {expected_seq}, found {record['seq']} (gap or reorder)"
            elif record["prev_hash"] != expected_prev:
                problem = "prev_hash does not match the previous record's hash"
            elif compute_hash(record) != record["hash"]:
                problem = "hash does not match the record's content"
            if problem:
                return Verification(False, count, expected_prev, expected_seq, problem)
            expected_prev = record["hash"]
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
