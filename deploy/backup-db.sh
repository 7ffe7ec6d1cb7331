#!/usr/bin/env bash
# Back up the database named by LORCHESTRE_SQLALCHEMY_DATABASE_URI into DIR, check the
# copy, and keep the newest LORCHESTRE_BACKUP_KEEP (default 14). Prints the file made.
#   PostgreSQL: pg_dump --format=custom (restore with deploy/restore-db.sh or pg_restore),
#               checked by listing it with pg_restore.
#   SQLite:     VACUUM INTO, a consistent snapshot while the app keeps writing,
#               checked with PRAGMA integrity_check.
# Usage: deploy/backup-db.sh DIR      (with the app's environment loaded)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dir="${1:?usage: backup-db.sh DIR}"
url="${LORCHESTRE_SQLALCHEMY_DATABASE_URI:?set LORCHESTRE_SQLALCHEMY_DATABASE_URI}"
keep="${LORCHESTRE_BACKUP_KEEP:-14}"
python="${PYTHON:-python3}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
umask 077
mkdir -p "$dir"

# Sets PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE... or SQLITE_PATH from the URL,
# so no password ever appears on a command line.
eval "$("$python" "$here/dburl.py" "$url")"

case "$DB_KIND" in
  postgresql)
    out="$dir/lorchestre-$stamp.dump"
    pg_dump --format=custom --no-owner --no-privileges --file="$out.partial"
    pg_restore --list "$out.partial" >/dev/null
    ;;
  sqlite)
    out="$dir/lorchestre-$stamp.sqlite3"
    "$python" - "$SQLITE_PATH" "$out.partial" <<'PY'
import sqlite3, sys
source, target = sys.argv[1], sys.argv[2]
with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as db:
    db.execute("VACUUM INTO ?", (target,))
with sqlite3.connect(target) as copy:
    result = copy.execute("PRAGMA integrity_check").fetchone()[0]
if result != "ok":
    sys.exit(f"backup failed its integrity check: {result}")
PY
    ;;
esac
mv "$out.partial" "$out"

# Keep the newest $keep backups of this kind.
find "$dir" -maxdepth 1 -name "lorchestre-*.${out##*.}" -printf '%f\n' | sort -r \
  | tail -n +"$((keep + 1))" | while read -r old; do rm -f -- "$dir/$old"; done
echo "$out"
