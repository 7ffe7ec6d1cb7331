"""Consent statistics for the dashboard: a daily rollup of finished days plus live counts.

Sized for a million consents a year: finished UTC days are counted once into
``consent_daily_count`` (GROUP BY over the ``recorded_at`` index, a month per
transaction) and never again; only the days after the rollup mark, normally just
today, are counted live from the ledger. Aggregates only: no consent ID leaves here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ..consent.declarations import OPTIONAL_KEYS
from ..consent.services import ACTIONS
from ..database import DatabaseUnavailable, utcnow, write_transaction
from ..extensions import db
from ..models import ConsentDailyCount, ConsentRecord, ConsentRollupMark

LOCALES = ("fr", "en")
ROLLUP_LOCK = "consent-rollup"
ROLLUP_CHUNK_DAYS = 31
_MARK_ID = 1
_GROUPS = ("action", "locale", "gpc", *OPTIONAL_KEYS)


class utc_day(FunctionElement):  # noqa: N801 - reads like the SQL function it stands for
    """The UTC calendar day of an aware timestamp column, in each dialect's terms."""

    type = sa.Date()
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element, compiler, **kw) -> str:
    # SQLite holds our timestamps as naive UTC text ("2026-11-24 21:03:07.123456").
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element, compiler, **kw) -> str:
    return (
        f"CAST(({compiler.process(element.clauses, **kw)} AT TIME ZONE 'UTC') AS DATE)"
    )


@compiles(utc_day)
def _utc_day_default(element, compiler, **kw) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


def midnight(day: date) -> datetime:
    """The first instant of a UTC day."""
    return datetime.combine(day, time(), tzinfo=UTC)


def _ledger_counts(start: date, stop: date) -> sa.Select:
    """Counts per day and group, straight from the ledger, for days in [start, stop)."""
    table = ConsentRecord.__table__
    day = utc_day(table.c.recorded_at)
    groups = [table.c[name] for name in _GROUPS]
    return (
        sa.select(day.label("day"), *groups, sa.func.count().label("count"))
        .where(
            table.c.recorded_at >= midnight(start), table.c.recorded_at < midnight(stop)
        )
        .group_by(day, *groups)
    )


def _closed_until(now: datetime) -> date:
    """The first day that may still receive records (a grace period covers clock skew)."""
    grace = timedelta(minutes=current_app.config["STAFF_ROLLUP_GRACE_MINUTES"])
    return (now - grace).date()


def _rolled_until() -> date | None:
    mark = db.session.get(ConsentRollupMark, _MARK_ID)
    return mark.rolled_until if mark is not None else None


def roll_up(now: datetime | None = None) -> int:
    """Count every finished day not yet in the rollup; returns how many days were added."""
    closed_until = _closed_until(now or utcnow())
    rolled = _rolled_until()
    if rolled is not None and rolled >= closed_until:
        return 0  # the usual case: nothing to do, and no write lock taken
    added = 0
    while True:
        with write_transaction(lock=ROLLUP_LOCK):
            mark = db.session.get(ConsentRollupMark, _MARK_ID)
            if mark is None:
                first = db.session.scalar(
                    sa.select(sa.func.min(ConsentRecord.recorded_at))
                )
                if first is None:
                    return added  # an empty ledger: start counting when it is not
                mark = ConsentRollupMark(id=_MARK_ID, rolled_until=first.date())
                db.session.add(mark)
            start = mark.rolled_until
            if start >= closed_until:
                return added
            stop = min(start + timedelta(days=ROLLUP_CHUNK_DAYS), closed_until)
            counts = _ledger_counts(start, stop).subquery()
            db.session.execute(
                sa.insert(ConsentDailyCount).from_select(
                    ["day", *_GROUPS, "count"], sa.select(counts)
                )
            )
            mark.rolled_until = stop
            mark.updated_at = utcnow()
            added += (stop - start).days


def _counts(start: date, end: date) -> sa.Subquery:
    """Grouped counts for the days start..end: the rollup for rolled days, else the ledger."""
    rolled = _rolled_until()
    parts: list[sa.Select] = []
    if rolled is not None and start < rolled:
        table = ConsentDailyCount.__table__
        parts.append(
            sa.select(table.c.day, *(table.c[n] for n in _GROUPS), table.c.count).where(
                table.c.day >= start, table.c.day <= end, table.c.day < rolled
            )
        )
    live_from = max(start, rolled) if rolled is not None else start
    if live_from <= end:
        parts.append(_ledger_counts(live_from, end + timedelta(days=1)))
    return (sa.union_all(*parts) if len(parts) > 1 else parts[0]).subquery("counts")


@dataclass
class Rate:
    """How many of ``total`` said yes."""

    yes: int = 0
    total: int = 0

    @property
    def value(self) -> float | None:
        """The share, or None when there is nothing to divide."""
        return self.yes / self.total if self.total else None


@dataclass
class DayCounts:
    """One day's choices by action."""

    day: date
    actions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    gpc: int = 0

    @property
    def total(self) -> int:
        """Every choice recorded that day."""
        return sum(self.actions.values())


@dataclass
class GroupCounts:
    """Totals for the whole range or one language."""

    total: int = 0
    gpc: int = 0
    actions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(ACTIONS, 0))
    opt_in: dict[str, Rate] = field(
        default_factory=lambda: {k: Rate() for k in OPTIONAL_KEYS}
    )

    @property
    def withdrawals(self) -> int:
        """Choices that withdrew every consent."""
        return self.actions["withdraw"]

    def share(self, count: int) -> float | None:
        """``count`` as a share of every choice in this group."""
        return count / self.total if self.total else None

    def add(self, action: str, count: int, gpc: int, yes: dict[str, int]) -> None:
        """Count in ``count`` choices of one action, of which ``gpc`` and ``yes`` said so."""
        self.total += count
        self.gpc += gpc
        self.actions[action] = self.actions.get(action, 0) + count
        for key in OPTIONAL_KEYS:
            self.opt_in[key].total += count
            self.opt_in[key].yes += yes[key]


@dataclass
class ConsentStats:
    """Everything the dashboard shows for one range of days."""

    start: date
    end: date
    days: list[DayCounts]
    overall: GroupCounts
    languages: dict[str, GroupCounts]

    @property
    def busiest_day(self) -> int:
        """The largest daily total (the chart's scale)."""
        return max((d.total for d in self.days), default=0)


def _as_date(value: date | str) -> date:
    # SQLite hands back a union's dates as text.
    return value if isinstance(value, date) else date.fromisoformat(value)


def consent_stats(start: date, end: date, now: datetime | None = None) -> ConsentStats:
    """The dashboard's figures for UTC days start..end, bringing the rollup up to date.

    The database folds the counts: a few hundred rows per day and action, and one
    per language and action, whatever the number of consents.
    """
    try:
        roll_up(now)
    except DatabaseUnavailable:
        # The live query below still answers, only more slowly: never fail the page.
        current_app.logger.warning("consent rollup skipped: database busy")
    counts = _counts(start, end)

    def said_yes(column: sa.ColumnElement) -> sa.ColumnElement:
        return sa.func.sum(sa.case((column, counts.c["count"]), else_=0))

    total = sa.func.sum(counts.c["count"])
    by_day = db.session.execute(
        sa.select(
            counts.c.day, counts.c.action, total, said_yes(counts.c.gpc)
        ).group_by(counts.c.day, counts.c.action)
    ).all()
    by_language = db.session.execute(
        sa.select(
            counts.c.locale,
            counts.c.action,
            total,
            said_yes(counts.c.gpc),
            *(said_yes(counts.c[key]) for key in OPTIONAL_KEYS),
        ).group_by(counts.c.locale, counts.c.action)
    ).all()

    span = range((end - start).days + 1)
    per_day = {day: DayCounts(day) for day in (start + timedelta(days=i) for i in span)}
    for day, action, count, gpc in by_day:
        counted = per_day[_as_date(day)]
        counted.actions[action] = counted.actions.get(action, 0) + int(count)
        counted.gpc += int(gpc)
    overall = GroupCounts()
    languages = {locale: GroupCounts() for locale in LOCALES}
    for locale, action, count, gpc, *yes in by_language:
        said = {key: int(n) for key, n in zip(OPTIONAL_KEYS, yes, strict=True)}
        for group in (overall, languages.setdefault(locale, GroupCounts())):
            group.add(action, int(count), int(gpc), said)
    return ConsentStats(start, end, list(per_day.values()), overall, languages)


def _rate_cell(rate: float | None) -> str:
    return "" if rate is None else f"{rate:.4f}"


def csv_tables(stats: ConsentStats) -> dict[str, tuple[list[str], list[list]]]:
    """The dashboard's three tables as CSV headers and rows (rates as 0..1 decimals)."""
    daily = [
        [d.day.isoformat(), *(d.actions[a] for a in ACTIONS), d.total, d.gpc]
        for d in stats.days
    ]
    overall = stats.overall
    daily.append(
        ["total", *(overall.actions[a] for a in ACTIONS), overall.total, overall.gpc]
    )
    categories = [
        [
            key,
            overall.opt_in[key].yes,
            overall.opt_in[key].total,
            _rate_cell(overall.opt_in[key].value),
        ]
        for key in OPTIONAL_KEYS
    ]
    languages = [
        [
            locale,
            group.total,
            _rate_cell(overall.share(group.total)),
            group.withdrawals,
            group.gpc,
            *(_rate_cell(group.opt_in[key].value) for key in OPTIONAL_KEYS),
        ]
        for locale, group in stats.languages.items()
    ]
    return {
        "daily": (["day", *ACTIONS, "total", "gpc"], daily),
        "categories": (["category", "accepted", "choices", "opt_in_rate"], categories),
        "languages": (
            [
                "language",
                "choices",
                "share",
                "withdrawals",
                "gpc",
                *(f"{key}_opt_in_rate" for key in OPTIONAL_KEYS),
            ],
            languages,
        ),
    }
