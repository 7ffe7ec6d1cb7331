"""P7: the staff statistics page over one year of consents, against the unindexed aggregate.

Called by benchmarks/run.py on its ledger (one year, [START, END)). Times in the same run:
the unindexed aggregate (the baseline), the one-off rollup of the year, and the dashboard
request itself (median of several, rollup warm), in process: that is server time.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from flask import Flask

from lorchestre.extensions import db
from lorchestre.models import (
    ConsentDailyCount,
    ConsentRecord,
    ConsentRollupMark,
    StaffUser,
)
from lorchestre.staff import stats
from tests.staff_support import PASSWORD, create_staff, new_client, sign_in

END = datetime(2026, 11, 1, tzinfo=UTC)
START = END - timedelta(days=365)
STAFF_EMAIL = "bench@lorchestreparfum.com"


def not_indexed(sql: str) -> str:
    """The statement with SQLite told to use no index on consent_record."""
    marker = "FROM consent_record"
    if marker not in sql:
        raise RuntimeError(f"cannot place NOT INDEXED in {sql!r}")
    return sql.replace(marker, marker + " NOT INDEXED", 1)


def timed(fn, repeat: int = 1) -> list[float]:
    """Wall-clock seconds of each of ``repeat`` calls."""
    out = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


def measure(app: Flask, repeat: int = 3, page_repeat: int = 7) -> dict:
    """The P7 figures on ``app``'s ledger; the app must use cheap Argon2 settings."""
    with app.app_context():
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
        sql = str(
            naive.compile(
                dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}
            )
        )
        if db.engine.dialect.name == "sqlite":
            # SQLAlchemy renders no table hint for SQLite: write NOT INDEXED in.
            sql = not_indexed(sql)

        def unindexed() -> None:
            db.session.connection().exec_driver_sql(sql).all()
            db.session.rollback()

        baseline = timed(unindexed, repeat)
        rollup = timed(lambda: stats.roll_up(END + timedelta(hours=12)))
        known = db.session.scalar(
            sa.select(sa.func.count())
            .select_from(StaffUser)
            .where(StaffUser.email == STAFF_EMAIL)
        )
        db.session.remove()
    if not known:
        create_staff(app, STAFF_EMAIL, "marketing")
    client = new_client(app)
    sign_in(client, STAFF_EMAIL, PASSWORD)
    first = (END - timedelta(days=365)).date()
    last = (END - timedelta(days=1)).date()
    query = f"/staff/?from={first}&to={last}"
    response = client.get(query)
    if response.status_code != 200:  # also warms templates and caches
        raise RuntimeError(f"staff dashboard answered {response.status_code}")
    page = timed(lambda: client.get(query).get_data(), page_repeat)
    return {
        "unindexed_aggregate_s": statistics.median(baseline),
        "rollup_of_a_year_once_s": rollup[0],
        "dashboard_request_median_s": statistics.median(page),
        "dashboard_request_max_s": max(page),
    }
