#!/usr/bin/env bash
# The Python package's tests with real parts: a venv under .dukasync/venv with the package and its test extras
# (Django 5, psycopg, pytest, mypy), the real dukasync server binary, and the checkout's PostgreSQL (URL from
# .dukasync/env, written by `deploy/services.sh start`, or DUKASYNC_DATABASE_URL). Then mypy --strict and pytest.
#   python/run-tests.sh [pytest args...]
# Needs: python3 (>= 3.10) with the venv module (Debian: python3-venv), PyPI reachable the first time, cargo, and
# node with npm (a real Dexie device, the reference JS client, checks what Django writes).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
VENV=${DUKASYNC_VENV:-$ROOT/.dukasync/venv}
PYTHON=${PYTHON:-python3}

if [[ ! -x $VENV/bin/python ]]; then
  "$PYTHON" -m venv "$VENV"
fi
# Editable, so the tests and mypy run the sources of this checkout; quiet unless something changed.
"$VENV/bin/pip" install --quiet --disable-pip-version-check -e "$HERE[test]"

if [[ -z ${DUKASYNC_BIN:-} ]]; then
  (cd "$ROOT" && cargo build --quiet --bin dukasync)
  export DUKASYNC_BIN=$ROOT/target/debug/dukasync
fi

if [[ ! -d $ROOT/client-fixtures/node_modules ]]; then
  (cd "$ROOT/client-fixtures" && npm ci --silent --no-audit --no-fund)
fi

cd "$HERE"
echo "python: mypy --strict" >&2
"$VENV/bin/mypy" --strict src/dukasync
echo "python: pytest" >&2
exec "$VENV/bin/python" -m pytest -q "$@"
