"""Staff downloads: formula-safe CSV, the streamed ledger export with its trailer, the bundle.

A streamed download can be cut short (a worker timeout, a dropped connection) while the
browser still reports success, so every ledger export ends with a trailer line giving the
row count, the first and last seq, the head hash and the SHA-256 of everything above it:
no trailer, or a trailer that does not match, means the file is incomplete.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa

from ..consent.exports import CSV_COLUMNS, csv_row, jsonl_line, write_audit_bundle
from ..consent.ledger import chain_start, format_timestamp, iter_records
from ..database import utcnow
from ..extensions import db
from ..models import ConsentRecord

# Cells a spreadsheet would read as a formula (OWASP "CSV injection", ASVS 5 1.2.10).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CHUNK_ROWS = 2000
TRAILER_MARK = "#trailer"


def safe_cell(value: Any) -> Any:
    """A cell no spreadsheet will evaluate: text starting like a formula gets a ' prefix."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return value  # a number is data, never a formula, even when negative
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def csv_lines(header: list[str], rows: Iterable[Iterable[Any]]) -> Iterator[str]:
    """CSV lines, every cell neutralised: for anything that may hold free text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in itertools.chain([header], rows):
        writer.writerow([safe_cell(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def ledger_export(
    fmt: str, since: datetime | None = None, until: datetime | None = None
) -> Iterator[bytes]:
    """The ledger in seq order as JSONL or CSV bytes, in chunks, ending with the trailer.

    Record lines are exactly those of ``flask consent export``; the ledger holds no free
    text, and its CSV stays unaltered so every hash can be recomputed from it.
    """
    digest = hashlib.sha256()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    count, first_seq, last_seq, head_hash = 0, None, None, None
    # closing(): a download cut short closes this generator, and with it the cursor.
    with closing(iter_records(since, until)) as records:
        for record in records:
            if writer is not None:
                writer.writerow(csv_row(record))
            else:
                buffer.write(jsonl_line(record))
            count += 1
            first_seq = record["seq"] if first_seq is None else first_seq
            last_seq, head_hash = record["seq"], record["hash"]
            if count % CHUNK_ROWS == 0:
                yield _spend(buffer, digest)
    yield _spend(buffer, digest)
    summary = {
        "format": fmt,
        "row_count": count,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "head_hash": head_hash,
        "sha256": digest.hexdigest(),
        "since": format_timestamp(since) if since else None,
        "until": format_timestamp(until) if until else None,
        "generated_at": format_timestamp(utcnow()),
    }
    yield trailer_line(fmt, summary).encode("utf-8")


def _spend(buffer: io.StringIO, digest: Any) -> bytes:
    """Take what the buffer holds as bytes, hashing them on the way out."""
    data = buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    digest.update(data)
    return data


def trailer_line(fmt: str, summary: dict[str, Any]) -> str:
    """The last line: a JSON object for JSONL, a '#trailer key=value …' line for CSV."""
    if fmt == "jsonl":
        return json.dumps({"trailer": summary}, separators=(",", ":")) + "\n"
    pairs = " ".join(
        f"{key}={'' if value is None else value}" for key, value in summary.items()
    )
    return f"{TRAILER_MARK} {pairs}\n"


def parse_trailer(data: bytes) -> dict[str, Any]:
    """Split an export into body and trailer and check them; for tests and auditors."""
    body, _, last = data.rstrip(b"\n").rpartition(b"\n")
    body += b"\n" if body else b""
    text = last.decode("utf-8")
    if text.startswith("{"):
        summary = json.loads(text)["trailer"]
    elif text.startswith(TRAILER_MARK + " "):
        summary = dict(
            pair.split("=", 1) for pair in text[len(TRAILER_MARK) + 1 :].split(" ")
        )
        summary["row_count"] = int(summary["row_count"])
    else:
        raise ValueError("no trailer: the export is incomplete")
    summary["intact"] = hashlib.sha256(body).hexdigest() == summary["sha256"]
    return summary


def ledger_head() -> dict[str, Any] | None:
    """The last record's seq, hash and time (one indexed row), or None for an empty ledger."""
    row = db.session.execute(
        sa.select(ConsentRecord.seq, ConsentRecord.hash, ConsentRecord.recorded_at)
        .order_by(ConsentRecord.seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    start_seq, _start_hash = chain_start()
    return {
        "seq": row.seq,
        "hash": row.hash,
        "recorded_at": row.recorded_at,
        "count": row.seq - start_seq,  # what an intact chain holds; verify checks it
    }


def audit_bundle_file() -> tuple[IO[bytes], dict[str, Any]]:
    """Build the audit bundle in a temporary file; return it open, rewound, and its manifest.

    The file is unlinked at once: the open handle keeps the data until the download
    closes it, so nothing is left behind however the request ends.
    """
    fd, name = tempfile.mkstemp(prefix="lorchestre-audit-", suffix=".zip")
    os.close(fd)
    path = Path(name)
    try:
        manifest = write_audit_bundle(path)
        handle = path.open("rb")
    finally:
        path.unlink(missing_ok=True)
    return handle, manifest
