"""Consent statistics: equal to direct counts, rollup and live agree, CSV safety, big exports."""

from __future__ import annotations

import csv
import io
import tracemalloc
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask

from lorchestre.consent.services import ACTIONS
from lorchestre.database import DatabaseUnavailable
from lorchestre.extensions import db
from lorchestre.models import ConsentDailyCount, ConsentRecord, ConsentRollupMark
from lorchestre.staff import stats
from lorchestre.staff.charts import count_axis, label_every
from lorchestre.staff.exports import csv_lines, parse_trailer, safe_cell
from tests.staff_support import (
    FAST_ARGON2,
    create_staff,
    csrf_of,
    new_client,
    seed_ledger,
    sign_in,
)

CATEGORIES = ("analytics", "advertising", "personalization")
START = datetime(2026, 3, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)  # "today" is 11 March, half gone


@pytest.fixture(autouse=True)
def _cheap_hashing(app: Flask) -> None:
    app.config["STAFF_ARGON2_PARAMS"] = FAST_ARGON2


@pytest.fixture
def seeded(app: Flask) -> None:
    """3,000 records from 1 March to now, today included."""
    with app.app_context():
        seed_ledger(3000, START, NOW)


def direct_counts(app: Flask) -> dict:
    """The expected figures, counted one row at a time in Python."""
    with app.app_context():
        rows = db.session.execute(sa.select(ConsentRecord.__table__)).all()
    per_day = Counter((r.recorded_at.date(), r.action) for r in rows)
    return {
        "total": len(rows),
        "per_day": per_day,
        "actions": Counter(r.action for r in rows),
        "gpc": sum(r.gpc for r in rows),
        "yes": {k: sum(getattr(r, k) for r in rows) for k in CATEGORIES},
        "lang": Counter(r.locale for r in rows),
        "lang_yes": {
            (lang, k): sum(getattr(r, k) for r in rows if r.locale == lang)
            for lang in ("fr", "en")
            for k in CATEGORIES
        },
        "lang_withdrawals": Counter(r.locale for r in rows if r.action == "withdraw"),
    }


def assert_matches(result: stats.ConsentStats, expected: dict) -> None:
    overall = result.overall
    assert overall.total == expected["total"]
    assert overall.actions == {a: expected["actions"][a] for a in ACTIONS}
    assert overall.gpc == expected["gpc"]
    assert overall.withdrawals == expected["actions"]["withdraw"]
    for day in result.days:
        assert day.actions == {a: expected["per_day"][(day.day, a)] for a in ACTIONS}
    for key in CATEGORIES:
        assert overall.opt_in[key].yes == expected["yes"][key]
        assert overall.opt_in[key].total == expected["total"]
    for lang in ("fr", "en"):
        group = result.languages[lang]
        assert group.total == expected["lang"][lang]
        assert group.withdrawals == expected["lang_withdrawals"][lang]
        for key in CATEGORIES:
            assert group.opt_in[key].yes == expected["lang_yes"][(lang, key)]


def test_stats_equal_a_direct_count_of_the_ledger(app: Flask, seeded) -> None:
    expected = direct_counts(app)
    assert expected["total"] == 3000 and len({d for d, _ in expected["per_day"]}) == 11
    with app.app_context(), time_machine.travel(NOW, tick=False):
        result = stats.consent_stats(date(2026, 3, 1), date(2026, 3, 11))
        mark = db.session.get(ConsentRollupMark, 1)
        assert mark.rolled_until == date(2026, 3, 11)  # every finished day, not today
    assert_matches(result, expected)
    assert len(result.days) == 11
    assert result.busiest_day == max(d.total for d in result.days)


def test_rollup_and_live_counts_agree(app: Flask, seeded, monkeypatch) -> None:
    days = (date(2026, 3, 1), date(2026, 3, 11))
    real_roll_up = stats.roll_up
    with app.app_context(), time_machine.travel(NOW, tick=False):
        monkeypatch.setattr(stats, "roll_up", lambda now=None: 0)
        live = stats.consent_stats(*days)  # no rollup: everything from the ledger
        assert db.session.get(ConsentRollupMark, 1) is None
        monkeypatch.setattr(stats, "roll_up", real_roll_up)
        rolled = stats.consent_stats(*days)
        again = stats.consent_stats(*days)
        assert db.session.get(ConsentRollupMark, 1).rolled_until == date(2026, 3, 11)
    assert live == rolled == again


def test_a_sub_range_and_an_empty_range(app: Flask, seeded) -> None:
    expected = direct_counts(app)
    with app.app_context(), time_machine.travel(NOW, tick=False):
        part = stats.consent_stats(date(2026, 3, 4), date(2026, 3, 6))
        empty = stats.consent_stats(date(2025, 1, 1), date(2025, 1, 31))
    days = {date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)}
    assert part.overall.total == sum(
        n for (d, _), n in expected["per_day"].items() if d in days
    )
    assert empty.overall.total == 0 and empty.busiest_day == 0
    assert empty.overall.opt_in["analytics"].value is None


def test_each_finished_day_is_rolled_up_once_and_today_stays_live(
    app: Flask, seeded
) -> None:
    with app.app_context():
        with time_machine.travel(NOW, tick=False):
            assert stats.roll_up() == 10
            assert stats.roll_up() == 0
            rolled = db.session.scalar(sa.select(sa.func.sum(ConsentDailyCount.count)))
            before = db.session.scalar(
                sa.select(sa.func.count()).where(ConsentRecord.recorded_at < datetime(2026, 3, 11, tzinfo=UTC))
            )  # fmt: skip
            assert rolled == before
            today = stats.consent_stats(
                date(2026, 3, 11), date(2026, 3, 11)
            ).overall.total
            # A visitor clicks the banner: today's figures move at once.
            seed_ledger(7, NOW, NOW + timedelta(minutes=1), seed=99)
            assert (
                stats.consent_stats(date(2026, 3, 11), date(2026, 3, 11)).overall.total
                == today + 7
            )
        # Just after midnight, within the grace period, yesterday is still counted live.
        with time_machine.travel(datetime(2026, 3, 12, 0, 10, tzinfo=UTC), tick=False):
            assert stats.roll_up() == 0
        with time_machine.travel(datetime(2026, 3, 12, 0, 20, tzinfo=UTC), tick=False):
            assert stats.roll_up() == 1
            assert (
                stats.consent_stats(date(2026, 3, 11), date(2026, 3, 11)).overall.total
                == today + 7
            )


def test_an_empty_ledger_is_not_marked_and_a_busy_database_falls_back(
    app: Flask, seeded, monkeypatch
) -> None:
    expected = direct_counts(app)

    def busy(now=None):
        raise DatabaseUnavailable("database is locked")

    monkeypatch.setattr(stats, "roll_up", busy)
    with app.app_context(), time_machine.travel(NOW, tick=False):
        result = stats.consent_stats(date(2026, 3, 1), date(2026, 3, 11))
        assert db.session.get(ConsentRollupMark, 1) is None
    assert_matches(result, expected)


def test_an_empty_ledger_rolls_nothing_up(app: Flask) -> None:
    with app.app_context(), time_machine.travel(NOW, tick=False):
        assert stats.roll_up() == 0
        assert db.session.get(ConsentRollupMark, 1) is None
        assert (
            stats.consent_stats(date(2026, 3, 1), date(2026, 3, 11)).overall.total == 0
        )


# --- The dashboard and its CSV ----------------------------------------------------------


@pytest.fixture
def frozen():
    """The whole test at NOW (a session signed at another time would look expired)."""
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def marketing(app: Flask, frozen):
    create_staff(app, "m@lorchestreparfum.com", "marketing")
    client = new_client(app)
    assert sign_in(client, "m@lorchestreparfum.com").status_code == 303
    return client


def test_dashboard_and_csv_show_the_direct_counts(
    app: Flask, seeded, marketing
) -> None:
    expected = direct_counts(app)
    with time_machine.travel(NOW, tick=False):
        page = marketing.get("/staff/?from=2026-03-01&to=2026-03-11")
        daily = marketing.get(
            "/staff/stats.csv?table=daily&from=2026-03-01&to=2026-03-11"
        )
        languages = marketing.get(
            "/staff/stats.csv?table=languages&from=2026-03-01&to=2026-03-11"
        )
    assert page.status_code == 200
    assert "3,000" in page.text  # the total tile
    assert page.text.count('<rect class="series-') >= 11  # bars were drawn
    rows = list(csv.reader(io.StringIO(daily.text)))
    assert rows[0] == ["day", *ACTIONS, "total", "gpc"]
    for row in rows[1:-1]:
        day = date.fromisoformat(row[0])
        assert [int(n) for n in row[1:5]] == [
            expected["per_day"][(day, a)] for a in ACTIONS
        ]
    assert (
        rows[-1][0] == "total"
        and int(rows[-1][5]) == 3000
        and int(rows[-1][6]) == expected["gpc"]
    )
    langs = {row[0]: row for row in csv.reader(io.StringIO(languages.text))}
    assert int(langs["fr"][1]) + int(langs["en"][1]) == 3000
    assert float(langs["fr"][5]) == pytest.approx(
        expected["lang_yes"][("fr", "analytics")] / expected["lang"]["fr"], abs=1e-4
    )
    assert daily.headers["Content-Disposition"] == (
        'attachment; filename="consent-stats-daily-2026-03-01_2026-03-11.csv"'
    )


def test_dashboard_in_french(app: Flask, seeded, frozen) -> None:
    create_staff(app, "f@lorchestreparfum.com", "marketing")
    client = new_client(app, "fr")
    sign_in(client, "f@lorchestreparfum.com")
    page = client.get("/staff/?from=2026-03-01&to=2026-03-11").text
    assert '<html lang="fr">' in page
    assert "Statistiques de consentement" in page
    assert "3\u202f000" in page or "3\u00a0000" in page


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=yesterday", "Enter a date as YYYY-MM-DD."),
        ("from=2026-02-30", "Enter a date as YYYY-MM-DD."),
        ("to=2026-13-01", "Enter a date as YYYY-MM-DD."),
        ("from=2026-01-01&from=2026-01-02", "Enter a date as YYYY-MM-DD."),
        ("from=" + "9" * 5000, "Enter a date as YYYY-MM-DD."),
        ("from=%00%27%20OR%201%3D1--", "Enter a date as YYYY-MM-DD."),
        ("from=2026-03-10&to=2026-03-01", "The end date is before the start date."),
        ("from=2024-01-01&to=2026-01-01", "Choose a range of at most 366 days."),
        ("from=9999-12-31", "Choose a date between 2020-01-01 and 2099-12-31."),
        ("to=0001-01-01", "Choose a date between 2020-01-01 and 2099-12-31."),
    ],
)
def test_bad_dates_get_a_clear_form_error_never_a_500(
    marketing, query, message
) -> None:
    page = marketing.get(f"/staff/?{query}")
    assert page.status_code == 200
    assert message in page.text
    assert 'aria-invalid="true"' in page.text
    assert '<svg class="chart"' not in page.text
    assert marketing.get(f"/staff/stats.csv?{query}").status_code == 400


def test_bad_dates_are_explained_in_french(app: Flask) -> None:
    create_staff(app, "f@lorchestreparfum.com", "marketing")
    client = new_client(app, "fr")
    sign_in(client, "f@lorchestreparfum.com")
    page = client.get("/staff/?from=demain").text
    assert "Saisissez une date au format AAAA-MM-JJ." in page


@pytest.mark.parametrize(
    ("query", "first", "last"),
    [
        ("", date(2026, 2, 10), date(2026, 3, 11)),
        ("from=2026-03-01", date(2026, 3, 1), date(2026, 3, 11)),
        ("to=2026-03-05", date(2026, 2, 4), date(2026, 3, 5)),
        ("from=2026-06-01", date(2026, 6, 1), date(2026, 6, 1)),
    ],
)
def test_missing_dates_default_sensibly(marketing, query, first, last) -> None:
    response = marketing.get(f"/staff/stats.csv?{query}")
    days = [row[0] for row in csv.reader(io.StringIO(response.text))][1:-1]
    assert days[0] == first.isoformat() and days[-1] == last.isoformat()


# --- CSV safety -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        (
            '=HYPERLINK("http://evil.example","x")',
            '\'=HYPERLINK("http://evil.example","x")',
        ),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("José", "José"),
        ("a=b", "a=b"),
        ("", ""),
        (None, ""),
        (-3, -3),
        (0.25, 0.25),
        (True, "true"),
    ],
)
def test_csv_cells_that_look_like_formulas_are_neutralised(value, cell) -> None:
    assert safe_cell(value) == cell


def test_csv_lines_neutralise_every_cell_and_stay_parseable() -> None:
    rows = [["=1+1", "Nom, avec virgule", '"quoted"', 42], ["@x", "-y", "+z", -1]]
    text = "".join(csv_lines(["a", "b", "c", "d"], rows))
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[1] == ["'=1+1", "Nom, avec virgule", '"quoted"', "42"]
    assert parsed[2] == ["'@x", "'-y", "'+z", "-1"]


# --- A big export streams in flat memory ------------------------------------------------


def test_a_100k_row_export_streams_in_flat_memory(app: Flask, tmp_path) -> None:
    fmt = "csv"  # JSONL takes the same path; see test_staff.py for its trailer
    rows = 100_000
    with app.app_context():
        seed_ledger(rows, START, START + timedelta(days=60))
    create_staff(app, "dpo@lorchestreparfum.com", "dpo")
    client = new_client(app)
    sign_in(client, "dpo@lorchestreparfum.com")
    token = csrf_of(client.get("/staff/ledger").data)
    target = tmp_path / f"export.{fmt}"
    chunks = 0
    tracemalloc.start()
    try:
        response = client.post(
            "/staff/ledger/export",
            data={"csrf_token": token, "format": fmt},
            buffered=False,
        )
        with target.open("wb") as out:
            for chunk in response.response:
                out.write(chunk)
                chunks += 1
        response.close()
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = target.stat().st_size
    trailer = parse_trailer(target.read_bytes())
    assert trailer["row_count"] == rows and trailer["intact"]
    assert str(trailer["last_seq"]) == str(rows)
    assert size > 30 * 1024 * 1024 and chunks > 40  # it really came in pieces
    # Flat: the peak is a small, fixed amount, not a share of the 30+ MiB written.
    assert peak < 12 * 1024 * 1024, (
        f"peak {peak / 2**20:.1f} MiB for {size / 2**20:.0f} MiB"
    )


# --- Chart scales ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("largest", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (7, [0, 2, 4, 6, 8]),
        (687, [0, 200, 400, 600, 800]),
        (1000, [0, 250, 500, 750, 1000]),
        (12_345, [0, 5000, 10000, 15000]),
    ],
)
def test_count_axis_is_round_and_covers_the_largest(largest, ticks) -> None:
    assert count_axis(largest) == ticks


def test_label_every_keeps_the_axis_readable() -> None:
    assert label_every(7) == 1 and label_every(30) == 3 and label_every(366) == 37
