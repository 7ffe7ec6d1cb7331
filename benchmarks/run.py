"""Benchmarks P1-P8 of docs/performance.md, each against a baseline measured in this run.

    .venv/bin/python benchmarks/run.py            # 1M-row ledger, full runs (~15 min)
    .venv/bin/python benchmarks/run.py --quick    # 20k rows, short runs (< 3 min, CI)

Builds its data under benchmarks/work/ (the 1M-row SQLite ledger is kept for the next
run), starts its gunicorn servers on free 127.0.0.1 ports and a throw-away PostgreSQL
database, prints a table and writes benchmarks/results/latest.json (quick mode:
benchmarks/work/quick.json). A full run exits 1 when a target is missed; both modes exit
1 when a benchmark crashes, a request fails, the chain forks or does not verify, or the
P1 byte budget is exceeded. Quick mode does not judge speed: its timings are too short.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import time
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from benchmarks import harness  # noqa: E402
from benchmarks.baseline_apps import prepare_insert_database  # noqa: E402
from benchmarks.harness import WORK, app_env, gunicorn, http_get, warm, wrk  # noqa: E402
from benchmarks.ledgerdata import banner_digests, bulk_append, synthetic_choices  # noqa: E402
from benchmarks.staff_stats import END, START  # noqa: E402
from lorchestre import create_app  # noqa: E402
from lorchestre.extensions import db  # noqa: E402

PG_ADMIN = os.environ.get(
    "BENCH_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
P1_HTML_CSS_BUDGET = 4096
P1_JS_BUDGET = 2048
BANNER_SELECTOR = re.compile(r"\.consent-(banner|actions|btn|layer|title|text|gpc)\b")


class Bench:
    """Collects table rows and the failures that make even quick mode fail."""

    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.rows: list[dict] = []
        self.failures: list[str] = []

    def row(self, key, name, measured, baseline, ratio, target, met, **details) -> None:
        self.rows.append(
            {
                "id": key,
                "benchmark": name,
                "measured": measured,
                "baseline": baseline,
                "ratio": ratio,
                "target": target,
                "met": bool(met),
                "details": details,
            }
        )

    def fail(self, message: str) -> None:
        print(f"!! {message}", flush=True)
        self.failures.append(message)


def test_app(url: str, **config):
    """An in-process app on ``url`` (cheap Argon2 so P7 can sign in quickly)."""
    from tests.staff_support import FAST_ARGON2

    return create_app(
        {
            "SQLALCHEMY_DATABASE_URI": url,
            "SECRET_KEY": harness.SECRET,
            "COOKIE_SECURE": False,
            "STAFF_ARGON2_PARAMS": FAST_ARGON2,
            "CONSENT_RATE_LIMIT": "100000000 per minute",
            **config,
        }
    )


# ---------------------------------------------------------------- data


def ledger_database(rows: int) -> str:
    """The SQLite file holding a ``rows``-record, one-year ledger (built once, kept)."""
    path = WORK / f"ledger-{rows}-v1.db"
    url = f"sqlite:///{path}"
    if path.exists():
        return url
    tmp = path.with_suffix(".tmp.db")
    for stale in WORK.glob(tmp.name + "*"):
        stale.unlink()
    print(f"building a {rows:,}-record ledger (once) …", flush=True)
    began = time.perf_counter()
    app = test_app(f"sqlite:///{tmp}")
    with app.app_context():
        db.create_all()
        banners = banner_digests(app)
        bulk_append(synthetic_choices(rows, START, END, banners))
        db.session.remove()
        db.engine.dispose()
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    tmp.rename(path)
    print(f"  built in {time.perf_counter() - began:.1f} s", flush=True)
    return url


def fresh_sqlite(name: str) -> tuple[str, Path]:
    """An empty app database file (schema from the models)."""
    WORK.mkdir(parents=True, exist_ok=True)  # also when called from a test
    path = WORK / f"{name}.db"
    for old in WORK.glob(f"{name}.db*"):
        old.unlink()
    url = f"sqlite:///{path}"
    app = test_app(url)
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    return url, path


def verify(url: str) -> tuple[bool, int, str, int]:
    """verify_chain on ``url``, plus the number of prev_hash values used twice (forks)."""
    from lorchestre.consent.ledger import verify_chain
    from lorchestre.models import ConsentRecord

    app = test_app(url)
    with app.app_context():
        result = verify_chain()
        t = ConsentRecord.__table__
        forks = db.session.scalar(
            sa.select(sa.func.count() - sa.func.count(sa.distinct(t.c.prev_hash)))
        )
        db.session.remove()
        db.engine.dispose()
    return result.ok, result.count, result.reason, int(forks or 0)


# ---------------------------------------------------------------- P1


def p1_banner(bench: Bench) -> None:
    """Banner weight, measured on the privacy page the app really renders."""
    url, _ = fresh_sqlite("p1")
    app = test_app(url)
    client = app.test_client()
    sizes, other_origin = {}, []
    for lang in ("fr", "en"):
        page = client.get(f"/{lang}/privacy")
        html = page.get_data(as_text=True)
        match = re.search(r'<section class="consent-banner".*?</section>', html, re.S)
        if page.status_code != 200 or not match:
            bench.fail(f"P1: no banner on /{lang}/privacy")
            return
        sizes[lang] = len(gzip.compress(match.group(0).encode(), 6))
        # What the browser fetches or posts to (links to other sites are not requests).
        loads = re.findall(
            r'<(?:script|img|iframe|source|video|audio)\b[^>]*\bsrc="([^"]*)"', html
        )
        loads += re.findall(r'<link\b[^>]*\bhref="([^"]*)"', html)
        loads += re.findall(r'<form\b[^>]*\baction="([^"]*)"', html)
        for ref in loads:
            parts = urllib.parse.urlsplit(ref)
            if parts.netloc or parts.scheme:
                other_origin.append(ref)
        if "default-src 'self'" not in page.headers.get("Content-Security-Policy", ""):
            other_origin.append("CSP does not restrict to 'self'")
        sheets = re.findall(r'<link rel="stylesheet" href="([^"]+)"', html)
    if "/static/css/banner.css" not in [s.split("?")[0] for s in sheets]:
        bench.fail("P1: the banner page does not link static/css/banner.css")
        return
    css = (ROOT / "static/css/banner.css").read_bytes()
    css_gz = len(gzip.compress(css, 6))
    for other in (ROOT / "static/css").glob("*.css"):
        if other.name != "banner.css" and BANNER_SELECTOR.search(other.read_text()):
            bench.fail(f"P1: banner rules outside banner.css, in {other.name}")
    js_gz = len(gzip.compress((ROOT / "static/js/consent.js").read_bytes(), 6))
    # Works with JavaScript off: the plain form post records and redirects.
    page = client.get("/en/privacy").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    posted = client.post(
        "/consent",
        data={
            "csrf_token": token,
            "action": "reject_all",
            "lang": "en",
            "next": "/en/",
        },
    )
    no_js = posted.status_code == 303 and "lorchestre_consent=" in posted.headers.get(
        "Set-Cookie", ""
    )
    total = max(sizes.values()) + css_gz
    budget_ok = total <= P1_HTML_CSS_BUDGET and js_gz <= P1_JS_BUDGET
    if not budget_ok:
        bench.fail(f"P1: byte budget exceeded: {total} B (+ JS {js_gz} B)")
    if other_origin:
        bench.fail(f"P1: references to another origin: {other_origin[:5]}")
    if not no_js:
        bench.fail("P1: the banner form does not work without JavaScript")
    bench.row(
        "P1",
        "banner HTML + CSS, gzip (JS separately)",
        f"{total} B (HTML {max(sizes.values())} + CSS {css_gz}); JS {js_gz} B",
        "vanilla-cookieconsent 3: 16.4 KB",
        round(total / 16_400, 3),
        "≤ 4096 B; JS ≤ 2048 B; 0 other origin; no-JS works",
        budget_ok and not other_origin and no_js,
        html_gzip_by_lang=sizes,
        css_gzip=css_gz,
        js_gzip=js_gz,
        other_origin_refs=len(other_origin),
        works_without_js=no_js,
    )


# ---------------------------------------------------------------- P2, P3


def _session_and_token(base: str) -> tuple[str, str]:
    """A session cookie and its CSRF token, as a first visit would get them."""
    _, head, body = http_get(base + "/en/privacy")
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
    cookies = [c.split(";", 1)[0] for c in head["set-cookie"]]
    return "; ".join(cookies), token


def _post_lua(body: str, headers: dict[str, str]) -> str:
    lines = "\n".join(
        f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()
    )
    return harness.WRK_LUA_POST.format(body=json.dumps(body), headers=lines)


def _errors(run: dict) -> int:
    return run["non_2xx_3xx"] + run["socket_errors"]


def _consent_lua(base: str) -> str:
    """A wrk script POSTing the banner's "accept all" with a first visit's session."""
    cookie, token = _session_and_token(base)
    form = f"csrf_token={urllib.parse.quote(token)}&action=accept_all&lang=en&next=%2Fen%2F"
    return _post_lua(form, {"Cookie": cookie})


def _check_appends(bench: Bench, name: str, runs: list[dict], url: str) -> tuple:
    """Fail on any failed request, fork, broken chain or answered-but-missing record;
    returns (errors, ok, count, forks) for the table."""
    ok, count, reason, forks = verify(url)
    errors = sum(_errors(r) for r in runs)
    answered = sum(r["requests"] for r in runs)
    if errors:
        bench.fail(f"{name}: {errors} failed requests")
    if not ok or forks:
        bench.fail(f"{name}: chain does not verify or forked: {reason} forks={forks}")
    if count < answered:
        bench.fail(f"{name}: {answered} answered requests but {count} records")
    return errors, ok, count, forks


def p2_p3(bench: Bench, seconds: float, repeats: int) -> None:
    """Pages and consent appends under gunicorn, each against its bare baseline."""
    log = WORK / "gunicorn.log"
    app_url, _ = fresh_sqlite("p3-app")
    bare_path = WORK / "p3-bare.db"
    for old in WORK.glob("p3-bare.db*"):
        old.unlink()
    prepare_insert_database(str(bare_path))
    with (
        gunicorn("benchmarks.baseline_apps:hello", app_env(app_url), log) as hello,
        gunicorn("wsgi:app", app_env(app_url), log) as site,
        gunicorn(
            "benchmarks.baseline_apps:insert",
            app_env(app_url, BENCH_SQLITE_PATH=str(bare_path)),
            log,
        ) as bare,
    ):
        warm(hello + "/")
        warm(site + "/en/privacy")
        hellos, pages = [], []
        for _ in range(repeats):
            hellos.append(wrk(hello + "/", seconds))
            pages.append(wrk(site + "/en/privacy", seconds))
        rps_h = statistics.median(r["rps"] for r in hellos)
        rps_p = statistics.median(r["rps"] for r in pages)
        p99 = statistics.median(r["p99_ms"] for r in pages)
        errors = sum(_errors(r) for r in hellos + pages)
        if errors:
            bench.fail(f"P2: {errors} failed requests")
        ratio = rps_p / rps_h
        bench.row(
            "P2",
            "privacy page with banner, gunicorn, 16 conns",
            f"{rps_p:.0f} req/s, p99 {p99:.1f} ms",
            f"{rps_h:.0f} req/s (bare Flask hello)",
            round(ratio, 3),
            "≥ 0.40×; p99 ≤ 100 ms",
            ratio >= 0.40 and p99 <= 100 and not errors,
            runs_page=pages,
            runs_hello=hellos,
        )

        lua_site = _consent_lua(site)
        lua_bare = _post_lua("action=accept_all", {})
        sites, bares = [], []
        for _ in range(repeats):
            bares.append(wrk(bare + "/insert", seconds, lua=lua_bare))
            sites.append(wrk(site + "/consent", seconds, lua=lua_site))
    bare_errors = sum(_errors(r) for r in bares)
    if bare_errors:
        bench.fail(f"P3: {bare_errors} failed requests to the bare baseline")
    errors, ok, count, forks = _check_appends(bench, "P3", sites, app_url)
    errors += bare_errors
    rps_s = statistics.median(r["rps"] for r in sites)
    rps_b = statistics.median(r["rps"] for r in bares)
    ratio = rps_s / rps_b
    bench.row(
        "P3",
        "POST /consent on SQLite, 16 clients",
        f"{rps_s:.0f} req/s, {errors} errors, {forks} forks, chain {'ok' if ok else 'BAD'}",
        f"{rps_b:.0f} req/s (bare sqlite3 insert route)",
        round(ratio, 3),
        "≥ 0.50×; 0 errors; 0 forks",
        ratio >= 0.50 and not errors and ok and not forks,
        records=count,
        runs_consent=sites,
        runs_bare=bares,
    )


# ---------------------------------------------------------------- P4


def p4_postgres(bench: Bench, seconds: float) -> str | None:
    """Two app servers appending to one PostgreSQL ledger; returns the server version."""
    name = f"lorchestre_bench_{os.getpid()}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            version = conn.exec_driver_sql("SHOW server_version").scalar()
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        app = test_app(url)
        with app.app_context():
            db.create_all()
            db.engine.dispose()
        log = WORK / "gunicorn.log"
        env = app_env(url)
        with (
            gunicorn("wsgi:app", env, log) as one,
            gunicorn("wsgi:app", env, log) as two,
        ):
            jobs = []
            for base in (one, two):
                warm(base + "/en/privacy", 5)
                jobs.append((base + "/consent", _consent_lua(base)))
            with ThreadPoolExecutor(2) as pool:
                futures = [pool.submit(wrk, u, seconds, 8, 1, lua) for u, lua in jobs]
                runs = [f.result() for f in futures]
        errors, ok, count, forks = _check_appends(bench, "P4", runs, url)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
    rps = sum(r["rps"] for r in runs)
    bench.row(
        "P4",
        "POST /consent on PostgreSQL, 2 app servers",
        f"{rps:.0f} req/s, {errors} errors, {forks} forks, chain {'ok' if ok else 'BAD'}",
        "—",
        None,
        "0 errors; 0 forks; verifies; throughput reported",
        not errors and ok and not forks,
        records=count,
        runs=runs,
    )
    return version


# ---------------------------------------------------------------- P5, P6


def p5_p6(bench: Bench, url: str, rows: int, repeats: int) -> None:
    """Exports and verify of the big ledger, each in its own process."""
    path = url.removeprefix("sqlite:///")
    cli_out = WORK / "dump-cli.csv"
    times: dict[str, list[float]] = {"cli": [], "jsonl": [], "csv": [], "verify": []}
    growth: dict[str, float] = {}
    first: dict[str, float] = {}
    for _ in range(repeats):
        began = time.perf_counter()
        with open(cli_out, "wb") as out:
            subprocess.run(
                ["sqlite3", "-csv", "-header", path,
                 "SELECT * FROM consent_record ORDER BY seq"],
                stdout=out, check=True, timeout=600,
            )  # fmt: skip
        times["cli"].append(time.perf_counter() - began)
        for fmt in ("jsonl", "csv"):
            result = harness.child(["export", fmt, url, str(WORK / f"export.{fmt}")])
            if result["rows"] != rows:
                bench.fail(f"P5: {fmt} export wrote {result['rows']} of {rows} rows")
            times[fmt].append(result["seconds"])
            growth[fmt] = max(growth.get(fmt, 0.0), result["rss_growth_mib"])
            first[fmt] = max(first.get(fmt, 0.0), result["first_byte_s"] or 99.0)
        result = harness.child(["verify", url])
        if not result["ok"] or result["rows"] != rows:
            bench.fail(f"P6: verify failed: {result}")
        times["verify"].append(result["seconds"])
    for f in ("jsonl", "csv"):
        (WORK / f"export.{f}").unlink(missing_ok=True)
    cli_out.unlink(missing_ok=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    for fmt in ("jsonl", "csv"):
        ratio = med[fmt] / med["cli"]
        bench.row(
            "P5",
            f"export {rows:,} rows, {fmt.upper()}",
            f"{med[fmt]:.2f} s, +{growth[fmt]:.1f} MiB RSS, first byte {first[fmt] * 1000:.0f} ms",
            f"{med['cli']:.2f} s (sqlite3 CLI CSV dump)",
            round(ratio, 3),
            "≤ 3×; RSS growth ≤ 50 MiB; first byte < 1 s",
            ratio <= 3 and growth[fmt] <= 50 and first[fmt] < 1,
            runs_s=times[fmt],
            runs_cli_s=times["cli"],
        )
    ratio = med["verify"] / med["jsonl"]
    bench.row(
        "P6",
        f"consent verify, {rows:,} rows",
        f"{med['verify']:.2f} s",
        f"{med['jsonl']:.2f} s (P5 JSONL export)",
        round(ratio, 3),
        "≤ 2×",
        ratio <= 2,
        runs_s=times["verify"],
    )


# ---------------------------------------------------------------- P7, P8


def p7_stats(bench: Bench, url: str, rows: int, repeats: int) -> None:
    """The staff dashboard over the year, against the unindexed aggregate."""
    from benchmarks import staff_stats

    got = staff_stats.measure(test_app(url), repeat=repeats)
    ratio = got["dashboard_request_median_s"] / got["unindexed_aggregate_s"]
    server = got["dashboard_request_median_s"]
    bench.row(
        "P7",
        f"staff stats page, 1 year, {rows:,} consents",
        f"{server * 1000:.1f} ms server time",
        f"{got['unindexed_aggregate_s'] * 1000:.0f} ms (unindexed aggregate)",
        round(ratio, 3),
        "≤ 200 ms; ≤ 0.25×",
        server <= 0.2 and ratio <= 0.25,
        **got,
    )


def p8_history(bench: Bench, url: str, rows: int, lookups: int) -> None:
    """/cookies history lookups of visitors spread over the ledger."""
    from lorchestre.consent.services import history
    from lorchestre.models import ConsentRecord

    app = test_app(url)
    t = ConsentRecord.__table__
    with app.app_context():
        step = max(1, rows // lookups)
        ids = list(
            db.session.scalars(
                sa.select(t.c.consent_id).where(t.c.seq % step == 0).limit(lookups)
            )
        )
        history(ids[0])  # warm the statement cache
        spent = []
        for cid in ids:
            began = time.perf_counter()
            records = history(cid)
            spent.append(time.perf_counter() - began)
            if not records:
                bench.fail(f"P8: no history for {cid}")
        from benchmarks.staff_stats import not_indexed

        query = (
            sa.select(t)
            .where(t.c.consent_id == ids[0])
            .order_by(t.c.seq.desc())
            .limit(100)
        )
        sql = not_indexed(
            str(
                query.compile(
                    dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}
                )
            )
        )
        began = time.perf_counter()
        db.session.connection().exec_driver_sql(sql).all()
        base = time.perf_counter() - began
        db.session.remove()
    spent.sort()
    p95 = spent[int(len(spent) * 0.95) - 1]
    median = statistics.median(spent)
    bench.row(
        "P8",
        f"/cookies history lookup, {rows:,} rows",
        f"median {median * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms",
        f"{base * 1000:.1f} ms (same lookup, unindexed)",
        round(p95 / base, 4),
        "≤ 5 ms (p95)",
        p95 <= 0.005,
        lookups=len(spent),
    )


# ---------------------------------------------------------------- table


def fmt_ratio(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def print_table(bench: Bench) -> None:
    head = ("#", "benchmark", "measured", "baseline", "ratio", "target", "met")
    lines = [
        (r["id"], r["benchmark"], r["measured"], r["baseline"], fmt_ratio(r["ratio"]),
         r["target"], "yes" if r["met"] else "NO")
        for r in bench.rows
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=True)]
    for line in (head, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data, short runs")
    parser.add_argument("--rows", type=int, help="ledger size (default 1M; quick 20k)")
    parser.add_argument("--only", default="", help="e.g. P2,P5 (development; no JSON)")
    args = parser.parse_args()
    quick = args.quick
    rows = args.rows or (20_000 if quick else 1_000_000)
    seconds, repeats = (2, 1) if quick else (10, 5)
    WORK.mkdir(parents=True, exist_ok=True)
    bench = Bench(quick)
    began = time.perf_counter()
    pg_version = None
    steps = [
        ("P1", lambda: p1_banner(bench)),
        ("P2/P3", lambda: p2_p3(bench, seconds, repeats)),
        ("P4", lambda: p4_postgres(bench, seconds)),
    ]
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()}

    def wanted(name: str) -> bool:
        return not only or bool(only & set(name.split("/")))

    url = None
    for name, step in steps:
        if not wanted(name):
            continue
        print(f"== {name}", flush=True)
        try:
            value = step()
            pg_version = value if name == "P4" else pg_version
        except Exception:
            bench.fail(f"{name} crashed:\n{traceback.format_exc()}")
    print("== ledger", flush=True)
    try:
        url = ledger_database(rows)
    except Exception:
        bench.fail(f"building the ledger crashed:\n{traceback.format_exc()}")
    if url:
        for name, step in (
            ("P5/P6", lambda: p5_p6(bench, url, rows, repeats)),
            ("P7", lambda: p7_stats(bench, url, rows, repeats)),
            ("P8", lambda: p8_history(bench, url, rows, 50 if quick else 200)),
        ):
            if not wanted(name):
                continue
            print(f"== {name}", flush=True)
            try:
                step()
            except Exception:
                bench.fail(f"{name} crashed:\n{traceback.format_exc()}")
    elapsed = time.perf_counter() - began
    print()
    print_table(bench)
    missed = [r["id"] for r in bench.rows if not r["met"]]
    report = {
        "mode": "quick" if quick else "full",
        "rows": rows,
        "wrk_seconds": seconds,
        "repeats": repeats,
        "elapsed_s": round(elapsed, 1),
        "machine": harness.machine(pg_version),
        "results": bench.rows,
        "failures": bench.failures,
        "all_targets_met": not missed and len(bench.rows) == 9,
    }
    out = WORK / "quick.json" if quick else ROOT / "benchmarks/results/latest.json"
    if only:
        out = WORK / "partial.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(
        f"\n{len(bench.rows)} rows, {elapsed:.0f} s; figures in {out.relative_to(ROOT)}"
    )
    if bench.failures:
        print(f"FAILED: {len(bench.failures)} problem(s) above")
        return 1
    if missed:
        if quick:
            print(f"targets missed (not judged in quick mode): {', '.join(missed)}")
            return 0
        print(f"targets missed: {', '.join(missed)}")
        return 1
    print("every target met" if not quick else "quick run clean")
    return 0


if __name__ == "__main__":
    sys.exit(main())
