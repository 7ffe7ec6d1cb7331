"""Gunicorn settings for L'ORCHESTRE PARFUM: gthread workers, sized from the environment.

Run from the project directory:  gunicorn -c deploy/gunicorn.conf.py wsgi:app

GUNICORN_BIND      addresses to listen on, comma-separated (default 127.0.0.1:8000)
GUNICORN_WORKERS   processes (default: CPU count, at least 2)
GUNICORN_THREADS   threads per process (default 8)
GUNICORN_TIMEOUT   seconds before a silent worker is killed and replaced (default 30)
GUNICORN_MAX_REQUESTS  requests before a worker is recycled (default 100000, 0 = never)
GUNICORN_FORWARDED_ALLOW_IPS  proxies gunicorn itself believes (default 127.0.0.1,::1);
                   the app trusts X-Forwarded-* through ProxyFix and
                   LORCHESTRE_PROXY_COUNT, not through this.
"""

from __future__ import annotations

import os


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


bind = [a.strip() for a in os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")]
worker_class = "gthread"
workers = _int("GUNICORN_WORKERS", max(2, os.cpu_count() or 1))
# Requests mostly wait on I/O (SQLite's fsync, PostgreSQL): 8 threads a worker keep the
# cores busy and let group commit gather bigger batches (docs/performance.md, item 9).
threads = _int("GUNICORN_THREADS", 8)
# Each worker builds its own app and database pool after the fork: no connection is
# ever shared between processes.
preload_app = False
# A request waits at most 5 s for a database lock (SQLITE_BUSY_TIMEOUT_MS /
# POSTGRES_LOCK_TIMEOUT_MS) and answers 503; 30 s only catches a truly stuck worker.
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = 30
keepalive = 5  # nginx keeps upstream connections open (keepalive 16)
# Recycle workers now and then (a leak cannot grow for ever), spread out by the jitter.
# Each recycle rebuilds the app and its template cache in the new worker, a pause the
# p99 shows: at 5,000 a busy worker restarted every few seconds (docs/performance.md).
max_requests = _int("GUNICORN_MAX_REQUESTS", 100_000)
max_requests_jitter = max_requests // 10
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
if os.path.isdir("/dev/shm"):
    worker_tmp_dir = "/dev/shm"  # heartbeat files off the disk

# Logs to stdout/stderr (journald under systemd). No client address in the access
# log: nginx keeps those for abuse handling, with its own short retention.
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
access_log_format = '%(t)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
