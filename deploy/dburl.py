"""Turn the app's database URL into shell assignments for backup-db.sh and restore-db.sh.

PostgreSQL: libpq variables (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE, and
those of the URL's connect_timeout, sslmode...), so that pg_dump/pg_restore need
no URL and no password shows in the process list. SQLite: SQLITE_PATH. Standard
library only: it runs with any python3.
"""

from __future__ import annotations

import shlex
import sys
from urllib.parse import parse_qs, unquote, urlsplit

LIBPQ_PARAMETERS = {
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "options": "PGOPTIONS",
}


def assignments(url: str) -> dict[str, str]:
    """The variables describing ``url``; SystemExit for anything else."""
    scheme = url.split("://", 1)[0]
    if scheme.startswith("sqlite"):
        path = url.split(":///", 1)[1].split("?", 1)[0] if ":///" in url else ""
        if not path or path == ":memory:":
            raise SystemExit("an in-memory SQLite database cannot be backed up")
        return {"DB_KIND": "sqlite", "SQLITE_PATH": unquote(path)}
    if scheme.split("+", 1)[0] in ("postgresql", "postgres"):
        parts = urlsplit(url)
        found = {
            "DB_KIND": "postgresql",
            "PGHOST": parts.hostname or "",
            "PGPORT": str(parts.port or 5432),
            "PGUSER": unquote(parts.username or ""),
            "PGPASSWORD": unquote(parts.password or ""),
            "PGDATABASE": unquote(parts.path.lstrip("/")),
        }
        query = parse_qs(parts.query)
        for param, variable in LIBPQ_PARAMETERS.items():
            if query.get(param):
                found[variable] = query[param][0]
        return {key: value for key, value in found.items() if value}
    raise SystemExit(f"unsupported database URL scheme: {scheme}")


if __name__ == "__main__":
    for name, value in assignments(sys.argv[1]).items():
        print(f"export {name}={shlex.quote(value)}")
