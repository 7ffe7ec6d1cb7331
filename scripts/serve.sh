#!/usr/bin/env bash
# Quick start, part 1: create the virtual environment, install, compile the
# translations, migrate the database and serve the site on http://127.0.0.1:5000/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
export LORCHESTRE_COOKIE_SECURE="${LORCHESTRE_COOKIE_SECURE:-false}"
flask --app lorchestre translate compile >/dev/null
flask --app lorchestre db upgrade
exec flask --app lorchestre run --host 127.0.0.1 --port "${PORT:-5000}" "$@"
