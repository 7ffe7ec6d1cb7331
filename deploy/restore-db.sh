#!/usr/bin/env bash
# Restore a backup made by deploy/backup-db.sh into the database named by
# LORCHESTRE_SQLALCHEMY_DATABASE_URI, then verify the consent ledger.
#   PostgreSQL: pg_restore --clean --if-exists in one transaction (all or nothing)
#               into an existing database, empty or not.
#   SQLite:     integrity-checked copy moved into place; the previous file is kept
#               beside it as <name>.before-restore-<time>. Stop the app first.
# Usage: deploy/restore-db.sh BACKUP_FILE --yes      (with the app's environment loaded)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
backup="${1:?usage: restore-db.sh BACKUP_FILE --yes}"
[ "${2:-}" = "--yes" ] || { echo "this replaces the database's content: add --yes" >&2; exit 2; }
[ -f "$backup" ] || { echo "no such backup: $backup" >&2; exit 2; }
url="${LORCHESTRE_SQLALCHEMY_DATABASE_URI:?set LORCHESTRE_SQLALCHEMY_DATABASE_URI}"
python="${PYTHON:-python3}"
flask="${FLASK:-$here/../.venv/bin/flask}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"

eval "$("$python" "$here/dburl.py" "$url")"

case "$DB_KIND" in
  postgresql)
    pg_restore --clean --if-exists --no-owner --no-privileges \
      --single-transaction --exit-on-error --dbname="$PGDATABASE" "$backup"
    ;;
  sqlite)
    "$python" - "$backup" <<'PY'
import sqlite3, sys
with sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True) as db:
    result = db.execute("PRAGMA integrity_check").fetchone()[0]
if result != "ok":
    sys.exit(f"backup failed its integrity check: {result}")
PY
    umask 077
    cp -- "$backup" "$SQLITE_PATH.restoring"
    if [ -e "$SQLITE_PATH" ]; then
      mv -- "$SQLITE_PATH" "$SQLITE_PATH.before-restore-$stamp"
    fi
    rm -f -- "$SQLITE_PATH-wal" "$SQLITE_PATH-shm"  # belonged to the replaced file
    mv -- "$SQLITE_PATH.restoring" "$SQLITE_PATH"
    ;;
esac

# The restored ledger must verify (exit 0, record count and head hash printed).
"$flask" --app lorchestre consent verify
