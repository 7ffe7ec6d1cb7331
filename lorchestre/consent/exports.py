"""Ledger exports (JSONL, CSV) and the auditor's bundle, streamed in flat memory."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import datetime
from json.encoder import encode_basestring as _json_str
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
    iter_rows,
    row_record,
    verify_chain,
)

CSV_COLUMNS = [f for f in RECORD_FIELDS if f != "choices"]
CSV_COLUMNS[CSV_COLUMNS.index("action") + 1 : CSV_COLUMNS.index("action") + 1] = (
    CATEGORY_KEYS
)


_STRINGS = (
    "consent_id", "recorded_at", "action", "policy_version", "banner_sha256",
    "locale", "channel", "prev_hash", "hash",
)  # fmt: skip
_CHOICES = ("necessary", "analytics", "advertising", "personalization")


def jsonl_line(record: dict) -> str:
    """One record as a JSONL line, exactly the spec's fields."""
    fast = _fast_jsonl(record)
    if fast is not None:
        return fast
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"


def _fast_jsonl(r: dict) -> str | None:
    """jsonl_line() for a record of exactly the shape iter_records() yields, by hand.

    Byte-identical to json.dumps(ensure_ascii=False, separators=(",", ":")) with the
    same string escaper, about four times faster; None for any other shape.
    """
    c = r.get("choices")
    if (
        tuple(r) != RECORD_FIELDS
        or type(r["seq"]) is not int
        or type(r["gpc"]) is not bool
        or type(c) is not dict
        or tuple(c) != _CHOICES
        or any(type(v) is not bool for v in c.values())
    ):
        return None
    strings = [r[k] for k in _STRINGS]
    if any(type(v) is not str for v in strings):
        return None
    cid, ra, ac, pv, bs, lo, ch, ph, h = map(_json_str, strings)
    tf = ("false", "true")
    return (
        f'{{"seq":{r["seq"]},"consent_id":{cid},"recorded_at":{ra},"action":{ac},'
        f'"choices":{{"necessary":{tf[c["necessary"]]},'
        f'"analytics":{tf[c["analytics"]]},"advertising":{tf[c["advertising"]]},'
        f'"personalization":{tf[c["personalization"]]}}},"policy_version":{pv},'
        f'"banner_sha256":{bs},"locale":{lo},"channel":{ch},"gpc":{tf[r["gpc"]]},'
        f'"prev_hash":{ph},"hash":{h}}}\n'
    )


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
    """Write the records to ``out`` in seq order; returns how many were written.

    Lines are formatted straight from the rows (same bytes as jsonl_line/csv_row of
    the records), the cost that P5 of docs/performance.md measures.
    """
    count = 0
    rows = iter_rows(since, until)
    try:
        if fmt == "csv":
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for batch in _batches(map(csv_line, rows)):
                for i, line in enumerate(batch):
                    if type(line) is tuple:  # needs the csv module's quoting
                        buffer = io.StringIO()
                        csv.writer(buffer, lineterminator="\n").writerow(line)
                        batch[i] = buffer.getvalue()
                out.write("".join(batch))
                count += len(batch)
        else:
            for batch in _batches(map(row_jsonl_line, rows)):
                out.write("".join(batch))
                count += len(batch)
    finally:
        rows.close()
    return count


def _batches(lines: Iterator, size: int = 2000) -> Iterator[list]:
    batch = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def csv_cells(row: tuple) -> tuple:
    """An iter_rows() tuple as CSV cells: csv_row() of its record."""
    tf = _TF
    return (
        *row[:4], "true", tf[bool(row[4])], tf[bool(row[5])], tf[bool(row[6])],
        *row[7:11], tf[bool(row[11])], *row[12:],
    )  # fmt: skip


def csv_line(row: tuple) -> str | tuple:
    """An iter_rows() tuple as its CSV line, or its cells if any needs quoting."""
    tf = _TF
    try:
        line = ",".join(
            (
                str(row[0]), *row[1:4], "true", tf[bool(row[4])], tf[bool(row[5])],
                tf[bool(row[6])], *row[7:11], tf[bool(row[11])], *row[12:],
            )
        )  # fmt: skip
    except TypeError:  # a NULL: let the csv module write it
        return csv_cells(row)
    if line.count(",") != 14 or '"' in line or "\n" in line or "\r" in line:
        return csv_cells(row)  # quoting needed: the csv module does it
    return line + "\n"


def row_jsonl_line(row: tuple) -> str:
    """An iter_rows() tuple as its JSONL line: jsonl_line() of its record."""
    try:
        seq, cid, ra, ac, an, ad, pe, pv, bs, lo, ch, gpc, ph, h = row
        probe = cid + ra + ac + pv + bs + lo + ch + ph + h
    except TypeError:  # a NULL where the spec has a string
        return jsonl_line(row_record(row))
    if '"' in probe or "\\" in probe or not probe.isprintable():
        return _escaped_jsonl_line(row)
    # Nothing to escape (the usual case: IDs, hex, fixed words): quote as is.
    tf = _TF
    return (
        f'{{"seq":{int(seq)},"consent_id":"{cid}","recorded_at":"{ra}",'
        f'"action":"{ac}","choices":{{"necessary":true,"analytics":{tf[bool(an)]},'
        f'"advertising":{tf[bool(ad)]},"personalization":{tf[bool(pe)]}}},'
        f'"policy_version":"{pv}","banner_sha256":"{bs}","locale":"{lo}",'
        f'"channel":"{ch}","gpc":{tf[bool(gpc)]},"prev_hash":"{ph}","hash":"{h}"}}\n'
    )


def _escaped_jsonl_line(row: tuple) -> str:
    try:
        cid, ra, ac, pv, bs, lo, ch, ph, h = map(
            _json_str, (*row[1:4], *row[7:11], *row[12:])
        )
        return (
            f'{{"seq":{int(row[0])},"consent_id":{cid},"recorded_at":{ra},'
            f'"action":{ac},"choices":{{"necessary":true,'
            f'"analytics":{_TF[bool(row[4])]},"advertising":{_TF[bool(row[5])]},'
            f'"personalization":{_TF[bool(row[6])]}}},"policy_version":{pv},'
            f'"banner_sha256":{bs},"locale":{lo},"channel":{ch},'
            f'"gpc":{_TF[bool(row[11])]},"prev_hash":{ph},"hash":{h}}}\n'
        )
    except TypeError:  # a NULL where the spec has a string
        return jsonl_line(row_record(row))


_TF = ("false", "true")


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
