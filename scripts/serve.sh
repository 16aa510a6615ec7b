#!/usr/bin/env bash
# Sets up a virtual environment (.venv) with SimpleTuner, then starts the web UI on http://127.0.0.1:8001/ with the
# embedded SQLite database in the workspace. Extra arguments go to 'simpletuner server' (e.g. --ssl, --port 8443).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e .
.venv/bin/simpletuner plugins list
exec .venv/bin/simpletuner server "$@"
