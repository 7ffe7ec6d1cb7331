"""External anchors of the ledger's head, so a truncated tail cannot go unnoticed.

The chain proves that no record was edited, reordered or removed from the middle,
but deleting the newest records leaves a shorter chain that still verifies. An
anchor is one JSON line ``{"anchored_at", "hash", "recorded_at", "seq"}`` naming the
head at some moment, appended to a file kept outside the database (another machine,
a mailbox). ``consent verify --anchor FILE`` then requires every anchored record to
be still there with the same hash.

Retention purges delete the oldest records and leave a ``ledger_checkpoint``: an
anchor at a checkpoint's seq is checked against the checkpoint's hash, one below the
latest checkpoint can no longer be checked and is reported as purged, never as a
failure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from ..extensions import db
from ..models import ConsentRecord, LedgerCheckpoint
from .ledger import GENESIS_HASH, chain_start, format_timestamp

HASH_PATTERN = re.compile(r"[0-9a-f]{64}")
LOOKUP_BATCH = 500  # anchored seqs fetched per query


class AnchorFileError(ValueError):
    """An anchor file that cannot be read or parsed; the message names file and line."""


@dataclass(frozen=True)
class Anchor:
    """The head of the ledger at one moment, as written to an anchor file."""

    seq: int
    hash: str
    recorded_at: str | None
    anchored_at: str | None
    source: str = ""  # "file:line", for messages

    def to_line(self) -> str:
        """The anchor as one JSON line (sorted keys), without a newline."""
        body = {
            "anchored_at": self.anchored_at,
            "hash": self.hash,
            "recorded_at": self.recorded_at,
            "seq": self.seq,
        }
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class AnchorProblem:
    """An anchored record that is missing or changed."""

    anchor: Anchor
    first_bad_seq: int
    reason: str


@dataclass(frozen=True)
class AnchorCheck:
    """Outcome of comparing anchors with the ledger."""

    checked: int
    purged: int  # below the latest checkpoint: no longer checkable
    problems: tuple[AnchorProblem, ...]

    @property
    def ok(self) -> bool:
        """Whether every checkable anchor matched."""
        return not self.problems


def current_head(now: datetime) -> Anchor | None:
    """An anchor of the ledger's head now, or None when nothing was ever recorded."""
    table = ConsentRecord.__table__
    row = db.session.execute(
        sa.select(table.c.seq, table.c.hash, table.c.recorded_at)
        .order_by(table.c.seq.desc())
        .limit(1)
    ).first()
    anchored_at = format_timestamp(now)
    if row is not None:
        return Anchor(row.seq, row.hash, format_timestamp(row.recorded_at), anchored_at)
    seq, head_hash = chain_start()  # everything purged: the checkpoint is the head
    if seq == 0 and head_hash == GENESIS_HASH:
        return None
    return Anchor(seq, head_hash, None, anchored_at)


def append_anchor(path: Path, anchor: Anchor) -> None:
    """Append one line to an anchor file, creating it (owner and group only)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    with os.fdopen(fd, "a", encoding="utf-8") as handle:
        handle.write(anchor.to_line() + "\n")
        handle.flush()
        os.fsync(handle.fileno())  # an anchor that vanishes in a crash proves nothing


def parse_anchor(line: str, source: str) -> Anchor:
    """One anchor line; AnchorFileError naming ``source`` if it is not one."""
    try:
        body = json.loads(line)
    except ValueError as exc:
        raise AnchorFileError(f"{source}: not a JSON object ({exc.msg})") from None
    if not isinstance(body, dict):
        raise AnchorFileError(f"{source}: not a JSON object")
    seq, head_hash = body.get("seq"), body.get("hash")
    # bool is an int subclass: "seq": true must not pass as 1.
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise AnchorFileError(f"{source}: 'seq' must be a positive integer")
    if not isinstance(head_hash, str) or not HASH_PATTERN.fullmatch(head_hash):
        raise AnchorFileError(f"{source}: 'hash' must be 64 lower-case hex digits")
    texts = {}
    for key in ("recorded_at", "anchored_at"):
        value = body.get(key)
        if value is not None and not isinstance(value, str):
            raise AnchorFileError(f"{source}: {key!r} must be a string")
        texts[key] = value
    return Anchor(seq, head_hash, texts["recorded_at"], texts["anchored_at"], source)


def read_anchors(paths: Iterable[Path]) -> list[Anchor]:
    """Every anchor in these files (blank lines skipped); AnchorFileError otherwise."""
    anchors = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise AnchorFileError(f"{path}: cannot be read ({exc})") from None
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                anchors.append(parse_anchor(line, f"{path}:{number}"))
    return anchors


def check_anchors(anchors: Sequence[Anchor]) -> AnchorCheck:
    """Compare each anchor with the record (or checkpoint) at its seq."""
    table = ConsentRecord.__table__
    checkpoints = dict(
        db.session.execute(
            sa.select(
                LedgerCheckpoint.last_purged_seq, LedgerCheckpoint.last_purged_hash
            )
        ).all()
    )
    purged_up_to = max(checkpoints, default=0)
    head_seq = db.session.scalar(sa.select(sa.func.max(table.c.seq))) or purged_up_to
    wanted = sorted({a.seq for a in anchors if a.seq > purged_up_to})
    stored: dict[int, str] = {}
    for start in range(0, len(wanted), LOOKUP_BATCH):
        batch = wanted[start : start + LOOKUP_BATCH]
        stored |= dict(
            db.session.execute(
                sa.select(table.c.seq, table.c.hash).where(table.c.seq.in_(batch))
            ).all()
        )
    db.session.rollback()  # end the read: a CLI command must not idle in a transaction
    checked = purged = 0
    problems = []
    for anchor in anchors:
        if anchor.seq in checkpoints:  # the checkpoint kept this record's hash
            found = checkpoints[anchor.seq]
        elif anchor.seq <= purged_up_to:
            purged += 1
            continue
        else:
            found = stored.get(anchor.seq)
        checked += 1
        if found == anchor.hash:
            continue
        if found is not None:
            reason = f"record {anchor.seq} differs from its anchor ({anchor.source})"
            problems.append(AnchorProblem(anchor, anchor.seq, reason))
        elif anchor.seq > head_seq:
            reason = (
                f"the ledger ends at seq {head_seq} but seq {anchor.seq} was anchored "
                f"at {anchor.anchored_at or 'an unknown time'} ({anchor.source}): "
                "records were removed from its end"
            )
            problems.append(AnchorProblem(anchor, head_seq + 1, reason))
        else:
            reason = f"anchored record {anchor.seq} is missing ({anchor.source})"
            problems.append(AnchorProblem(anchor, anchor.seq, reason))
    problems.sort(key=lambda problem: problem.first_bad_seq)
    return AnchorCheck(checked, purged, tuple(problems))
