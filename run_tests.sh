#!/usr/bin/env bash
# Set up (first run) and run the test suite. Extra arguments go to pytest.
#   ./run_tests.sh                 # the whole suite on SQLite; integration tests skip without servers
#   ./run_tests.sh -m integration  # only the PostgreSQL/Redis integration tests
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed-dev ] || [ requirements-dev.txt -nt .venv/.installed-dev ] \
   || [ requirements.txt -nt .venv/.installed-dev ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  touch .venv/.installed-dev
fi
exec .venv/bin/python -m pytest "$@"
