#!/usr/bin/env bash
# Quick start, part 2: install (with the test extras) and run the whole test suite.
# Browser tests use Debian's /usr/bin/chromium (`apt-get install chromium`).
set -euo pipefail
cd "$(dirname "$0")/.."
LORCHESTRE_EXTRAS="[test]" source scripts/_venv.sh
flask --app lorchestre translate compile >/dev/null
exec python -m pytest "$@"
