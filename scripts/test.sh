#!/usr/bin/env bash
# Sets up a virtual environment (.venv) with SimpleTuner and its test dependencies, then runs the test suite.
# torch is pinned to the CPU build so that no multi-gigabyte CUDA wheel is downloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# DeepSpeed (the "cuda" extra) builds from source: build it against the torch above, without compiling its CUDA ops,
# so the tests can check generated configs with DeepSpeed's own parser.
DS_BUILD_OPS=0 .venv/bin/python -m pip install -q --no-build-isolation "deepspeed>=0.16"
exec .venv/bin/python -m pytest "$@"
