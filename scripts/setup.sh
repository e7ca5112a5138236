#!/usr/bin/env bash
# Set up .venv with the pinned CPU torch and lstmbyhand (editable, C++ fast path compiled once here).
#   bash scripts/setup.sh         # library + CLI
#   bash scripts/setup.sh --dev   # + pytest (xdist), hypothesis, ruff, mypy, triton
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
[ -x .venv/bin/python ] || python3 -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt)
"${pip[@]}" torch==2.13.0 "setuptools>=64" wheel
# --no-build-isolation: build against the torch above; never fetch another one.
"${pip[@]}" --no-build-isolation -e ".${extra}"
# --dev: triton too (it pulls no torch), so the tests check the Triton kernels in its CPU interpreter.
if [ "${1:-}" = "--dev" ]; then "${pip[@]}" triton==3.9.0; fi
