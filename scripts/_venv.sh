# Sourced by serve.sh and test.sh: create .venv on first use and keep it installed.
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
stamp=".venv/.installed${LORCHESTRE_EXTRAS:-}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet -e ".${LORCHESTRE_EXTRAS:-}"
  touch "$stamp"
fi
