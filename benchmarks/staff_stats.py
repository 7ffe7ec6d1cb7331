"""P7: the staff statistics page over one year of one million consents.

Run: .venv/bin/python benchmarks/staff_stats.py [--rows 1000000] [--database-url URL]
Seeds a valid ledger (once, cached under benchmarks/work/ for SQLite), then times in
the same run: the unindexed aggregate (the baseline P7 compares against), the one-off
rollup of a year, and the dashboard request itself (median of several, rollup warm).
Prints a table and writes benchmarks/work/staff_stats.json. Timings are ratios on a
shared, noisy machine: compare within one run only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"
sys.path.insert(0, str(ROOT))

from lorchestre import create_app  # noqa: E402
from lorchestre.extensions import db  # noqa: E402
from lorchestre.models import (  # noqa: E402
    ConsentDailyCount,
    ConsentRecord,
    ConsentRollupMark,
    StaffUser,
)
from lorchestre.staff import stats  # noqa: E402
from tests.staff_support import (  # noqa: E402
    FAST_ARGON2,
    create_staff,
    new_client,
    seed_ledger,
    sign_in,
)

END = datetime(2026, 11, 1, tzinfo=UTC)
START = END - timedelta(days=365)


def timed(fn, repeat: int = 1) -> list[float]:
    """Wall-clock seconds of each of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    url = args.database_url or f"sqlite:///{WORK / f'staff-stats-{args.rows}.db'}"
    app = create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
            "COOKIE_SECURE": False,
            "STAFF_ARGON2_PARAMS": FAST_ARGON2,
        }
    )
    with app.app_context():
        db.create_all()
        present = db.session.scalar(
            sa.select(sa.func.count()).select_from(ConsentRecord)
        )
        db.session.rollback()  # end the read, or DROP TABLE waits for it on PostgreSQL
        if present != args.rows:
            db.drop_all()
            db.create_all()
            print(f"seeding {args.rows:,} records…", flush=True)
            seed_ledger(args.rows, START, END)
        # Every run starts without a rollup, so its one-off cost is measured too.
        db.session.execute(sa.delete(ConsentDailyCount))
        db.session.execute(sa.delete(ConsentRollupMark))
        db.session.commit()

        table = ConsentRecord.__table__
        day = stats.utc_day(table.c.recorded_at)
        groups = [
            table.c[n]
            for n in (
                "action",
                "locale",
                "gpc",
                "analytics",
                "advertising",
                "personalization",
            )
        ]
        naive = sa.select(day, *groups, sa.func.count()).group_by(day, *groups)
        if db.engine.dialect.name == "sqlite":
            naive = naive.with_hint(table, "NOT INDEXED", "sqlite")

        def unindexed() -> None:
            db.session.execute(naive).all()
            db.session.rollback()

        baseline = timed(unindexed, 3)
        rollup = timed(lambda: stats.roll_up(END + timedelta(hours=12)))
        db.session.remove()

    with app.app_context():
        known = db.session.scalar(sa.select(sa.func.count()).select_from(StaffUser))
    if not known:
        create_staff(app, "bench@lorchestreparfum.com", "marketing")
    client = new_client(app)
    sign_in(client, "bench@lorchestreparfum.com", "correct horse battery staple")
    query = f"/staff/?from={(END - timedelta(days=365)).date()}&to={(END - timedelta(days=1)).date()}"
    assert client.get(query).status_code == 200  # warm templates and caches
    page = timed(lambda: client.get(query).get_data(), 7)

    results = {
        "rows": args.rows,
        "database": url.split(":", 1)[0],
        "unindexed_aggregate_s": statistics.median(baseline),
        "rollup_of_a_year_once_s": rollup[0],
        "dashboard_request_median_s": statistics.median(page),
        "dashboard_request_max_s": max(page),
    }
    results["ratio_dashboard_to_unindexed"] = (
        results["dashboard_request_median_s"] / results["unindexed_aggregate_s"]
    )
    width = max(len(k) for k in results)
    for key, value in results.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"{key:<{width}}  {shown}")
    print("P7 targets: dashboard ≤ 0.200 s and ≤ 0.25 × the unindexed aggregate")
    (WORK / "staff_stats.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
