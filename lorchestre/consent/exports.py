"""Ledger exports (JSONL, CSV) and the auditor's bundle, streamed in flat memory."""

from __future__ import annotations

import csv
import hashlib
import json
import zipfile
from datetime import datetime
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from flask import current_app

from ..config import LANGUAGES
from ..database import utcnow
from ..extensions import db
from ..models import BannerText
from ..policy import CURRENT_POLICY, POLICY_VERSIONS
from .declarations import CATEGORY_KEYS, DECLARATIONS_FILE
from .ledger import (
    RECORD_FIELDS,
    chain_start,
    format_timestamp,
    iter_records,
    verify_chain,
)

CSV_COLUMNS = [f for f in RECORD_FIELDS if f != "choices"]
CSV_COLUMNS[CSV_COLUMNS.index("action") + 1 : CSV_COLUMNS.index("action") + 1] = (
    CATEGORY_KEYS
)


def jsonl_line(record: dict) -> str:
    """One record as a JSONL line, exactly the spec's fields."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def csv_row(record: dict) -> list[str]:
    """One record as CSV cells, choices flattened to true/false."""
    flat = {k: v for k, v in record.items() if k != "choices"}
    flat.update(record["choices"])
    return [
        ("true" if v else "false") if isinstance(v, bool) else str(v)
        for v in (flat[c] for c in CSV_COLUMNS)
    ]


def write_export(
    out: TextIO, fmt: str, since: datetime | None = None, until: datetime | None = None
) -> int:
    """Write the records to ``out`` in seq order; returns how many were written."""
    count = 0
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for record in iter_records(since, until):
            writer.writerow(csv_row(record))
            count += 1
    else:
        for record in iter_records(since, until):
            out.write(jsonl_line(record))
            count += 1
    return count


BUNDLE_README = """\
L'ORCHESTRE PARFUM - consent ledger audit bundle
================================================

Files
- ledger.jsonl: every consent record, one JSON object per line, in seq order.
- banner_texts.json: every distinct banner wording shown, with its SHA-256 and language.
- policy_versions.json: the published policy versions and dates.
- declarations.toml: the categories, services and cookies the banner described.
- retention.json: the retention settings in force.
- processing_register.fr.md / .en.md / .fr.json / .en.json: the GDPR art. 30 register
  of processing activities, generated from the declarations and retention settings.
- screenshots/<policy version>/: dated screenshots of the banner, desktop and phone,
  when they were taken (a proof method suggested by the CNIL).
- manifest.json: SHA-256 of each file, row count, first/last seq, head hash, result of
  our own verification, generation time.

How to verify without our software (Python 3, standard library only)

    import hashlib, json
    manifest = json.load(open("manifest.json", encoding="utf-8"))
    prev = manifest["chain_starts_after"]["hash"]   # 64 zeros unless a purge happened
    for line in open("ledger.jsonl", encoding="utf-8"):
        rec = json.loads(line)
        assert rec["prev_hash"] == prev, rec["seq"]
        body = {k: v for k, v in rec.items() if k != "hash"}
        c = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256((prev + "\\n" + c).encode()).hexdigest() == rec["hash"], rec["seq"]
        prev = rec["hash"]
    print("head", prev)      # must equal manifest.json's head_hash

Also check that seq runs on from manifest["chain_starts_after"]["seq"] + 1 without gaps, that each record's banner_sha256 is
the SHA-256 of a text in banner_texts.json, and that the file hashes match manifest.json.
"""


def write_audit_bundle(path: Path) -> dict:
    """Write the zip with ledger, wordings, declarations and a manifest; return the manifest."""
    from ..policy import retention_settings
    from ..staff.register import build_register, register_json, register_markdown

    verification = verify_chain()
    start_seq, start_hash = chain_start()
    files: dict[str, str] = {}
    first_seq = last_seq = None
    row_count = 0
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        digest = hashlib.sha256()
        with bundle.open("ledger.jsonl", "w", force_zip64=True) as raw:
            head = start_hash
            for record in iter_records():
                line = jsonl_line(record).encode("utf-8")
                raw.write(line)
                digest.update(line)
                first_seq = record["seq"] if first_seq is None else first_seq
                last_seq, head = record["seq"], record["hash"]
                row_count += 1
        files["ledger.jsonl"] = digest.hexdigest()

        texts = [
            {
                "sha256": t.sha256,
                "policy_version": t.policy_version,
                "locale": t.locale,
                "first_seen_at": format_timestamp(t.first_seen_at),
                "text": t.text,
            }
            for t in db.session.scalars(
                sa.select(BannerText).order_by(BannerText.first_seen_at)
            )
        ]
        versions = [
            {"version": v.version, "published": v.published.isoformat()}
            for v in POLICY_VERSIONS
        ]
        extra = {
            "banner_texts.json": _json_bytes(texts),
            "policy_versions.json": _json_bytes(versions),
            "declarations.toml": DECLARATIONS_FILE.read_bytes(),
            "retention.json": _json_bytes(retention_settings()),
            "README.txt": BUNDLE_README.encode("utf-8"),
        }
        for locale in LANGUAGES:
            register = build_register(locale)
            extra[f"processing_register.{locale}.md"] = register_markdown(
                register
            ).encode("utf-8")
            extra[f"processing_register.{locale}.json"] = _json_bytes(
                register_json(register)
            )
        for screenshot in sorted(
            Path(current_app.config["BANNER_SCREENSHOTS_DIR"]).glob("*/*.png")
        ):
            extra[f"screenshots/{screenshot.parent.name}/{screenshot.name}"] = (
                screenshot.read_bytes()
            )
        for name, data in extra.items():
            bundle.writestr(name, data)
            files[name] = hashlib.sha256(data).hexdigest()

        manifest = {
            "generated_at": format_timestamp(utcnow()),
            "current_policy_version": CURRENT_POLICY.version,
            "files": files,
            "chain_starts_after": {"seq": start_seq, "hash": start_hash},
            "row_count": row_count,
            "first_seq": first_seq,
            "last_seq": last_seq,
            "head_hash": head,
            "verification": {
                "ok": verification.ok,
                "count": verification.count,
                "first_bad_seq": verification.first_bad_seq,
                "reason": verification.reason,
            },
        }
        bundle.writestr("manifest.json", _json_bytes(manifest))
    return manifest


def _json_bytes(data: object) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
