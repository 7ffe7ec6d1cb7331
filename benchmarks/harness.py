"""Servers, load and measurements for the benchmarks: all on 127.0.0.1, all bounded."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "benchmarks" / "work"
VENV_BIN = Path(sys.executable).parent
SECRET = "benchmark-secret-key-0123456789abcdef-not-for-production"


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(database_url: str, **extra: str) -> dict[str, str]:
    """Environment for a production-mode app process on ``database_url``."""
    env = dict(os.environ)
    env.update(
        {
            "LORCHESTRE_ENV_NAME": "production",
            "LORCHESTRE_SECRET_KEY": SECRET,
            "LORCHESTRE_SQLALCHEMY_DATABASE_URI": database_url,
            # A benchmark is one client hammering: the abuse limit would answer 429.
            "LORCHESTRE_CONSENT_RATE_LIMIT": "100000000 per minute",
            "LORCHESTRE_RATELIMIT_STORAGE_URI": "memory://",
        }
    )
    env.update(extra)
    return env


@contextmanager
def gunicorn(app: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """Run ``app`` under deploy/gunicorn.conf.py on a free port; yields its base URL."""
    port = free_port()
    env = dict(env, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_LOGLEVEL="warning")
    cmd = [str(VENV_BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", app]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn {app} exited: see {log}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn {app} did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http_get(
    url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict, bytes]:
    """One GET; returns status, headers (last value per name, Set-Cookie as a list)."""
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (127.0.0.1)
        head = {k.lower(): v for k, v in resp.headers.items()}
        head["set-cookie"] = resp.headers.get_all("Set-Cookie") or []
        return resp.status, head, resp.read()


def warm(url: str, count: int = 20) -> None:
    """A few requests so every worker has built its app and templates."""
    for _ in range(count):
        http_get(url)


WRK_LUA_POST = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
{headers}
"""


def wrk(
    url: str,
    seconds: float,
    connections: int = 16,
    threads: int = 2,
    lua: str | None = None,
) -> dict:
    """Run wrk against ``url`` (127.0.0.1 only) for a bounded time; parsed figures."""
    assert url.startswith("http://127.0.0.1:"), url
    cmd = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "10s", "--latency",
    ]  # fmt: skip
    script = None
    if lua:
        script = tempfile.NamedTemporaryFile("w", suffix=".lua", dir=WORK, delete=False)
        script.write(lua)
        script.close()
        cmd += ["-s", script.name]
    try:
        out = subprocess.run(
            [*cmd, url], capture_output=True, text=True, timeout=seconds + 60
        ).stdout
    finally:
        if script:
            os.unlink(script.name)
    return parse_wrk(out)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def parse_wrk(out: str) -> dict:
    """Requests/s, p50/p99 latency (ms), request and error counts from wrk's output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    if not rps or not total:
        raise RuntimeError(f"wrk gave no figures:\n{out}")
    lat = {
        p: _ms(v, u)
        for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    }
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "p50_ms": lat.get("50"),
        "p99_ms": lat.get("99"),
        "non_2xx_3xx": int(bad.group(1)) if bad else 0,
        "socket_errors": sum(map(int, sock.groups())) if sock else 0,
    }


def child(args: list[str], timeout: float = 900) -> dict:
    """Run benchmarks/child.py in a fresh process; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "child.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def machine(pg_version: str | None) -> dict:
    """What this ran on: the figures mean little without it."""
    mem_kib = 0
    model = platform.processor() or ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cli = shutil.which("sqlite3")
    cli_version = (
        subprocess.run(
            [cli, "--version"], capture_output=True, text=True
        ).stdout.split()[0]
        if cli
        else None
    )
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    return {
        "nproc": os.cpu_count(),
        "memory_mib": mem_kib // 1024,
        "cpu_model": model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite_library": sqlite3.sqlite_version,
        "sqlite_cli": cli_version,
        "postgres": pg_version,
        "wrk": (wrk_version.stdout + wrk_version.stderr).split("\n")[0].strip(),
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
