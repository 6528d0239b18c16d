#!/usr/bin/env bash
# Set up (first run) and serve Rhetor with daphne: HTTP and WebSocket on one port.
#   ./run_rhetor.sh                       # 127.0.0.1:8300, SQLite, simulated provider without keys
#   RHETOR_LOG_LEVEL=debug ./run_rhetor.sh
#   RHETOR_PORT=9000 ANTHROPIC_API_KEY=... ./run_rhetor.sh
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ requirements.txt -nt .venv/.installed ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
  touch .venv/.installed
fi

.venv/bin/python manage.py migrate --noinput
HOST=${RHETOR_HOST:-127.0.0.1}
PORT=${RHETOR_PORT:-8300}
LEVEL=$(echo "${RHETOR_LOG_LEVEL:-info}" | tr '[:upper:]' '[:lower:]')
VERBOSITY=1
[ "$LEVEL" = "debug" ] && VERBOSITY=2
echo "Create an admin account with: .venv/bin/python manage.py createsuperuser"
exec .venv/bin/python manage.py serve --host "$HOST" --port "$PORT" --daphne-verbosity "$VERBOSITY"
