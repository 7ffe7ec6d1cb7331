"""One measured operation in a fresh process (its peak RSS is its own): export or verify.

python benchmarks/child.py export jsonl|csv DATABASE_URL OUTPUT
python benchmarks/child.py verify DATABASE_URL
Prints one JSON line: seconds, first_byte_s, rss_before_mib, rss_peak_mib, rows, ...
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import SECRET  # noqa: E402
from lorchestre import create_app  # noqa: E402


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


class _FirstByte:
    """A file wrapper that notes when the first byte was written."""

    def __init__(self, out, began: float) -> None:
        self.out, self.began, self.first = out, began, None

    def write(self, text: str) -> int:
        if self.first is None and text:
            self.first = time.perf_counter() - self.began
        return self.out.write(text)


def main() -> None:
    op = sys.argv[1]
    url = sys.argv[3] if op == "export" else sys.argv[2]
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": SECRET})
    with app.app_context():
        from lorchestre.consent.exports import write_export
        from lorchestre.consent.ledger import verify_chain
        from lorchestre.extensions import db

        db.session.execute(db.text("SELECT 1"))  # connect before the clock starts
        db.session.rollback()
        before = _status_mib("VmRSS")
        out: dict = {}
        began = time.perf_counter()
        if op == "export":
            fmt, path = sys.argv[2], sys.argv[4]
            with open(path, "w", encoding="utf-8", newline="", buffering=1 << 20) as f:
                sink = _FirstByte(f, began)
                out["rows"] = write_export(sink, fmt)
            out["first_byte_s"] = sink.first
            out["bytes"] = Path(path).stat().st_size
        else:
            result = verify_chain()
            out.update(rows=result.count, ok=result.ok, head=result.head_hash)
            out["reason"] = result.reason
        out["seconds"] = time.perf_counter() - began
        out["rss_before_mib"] = before
        out["rss_peak_mib"] = _status_mib("VmHWM")
        out["rss_growth_mib"] = max(0.0, out["rss_peak_mib"] - before)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
