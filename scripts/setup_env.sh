#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs the package with the given extras; idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=".venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ setup.py -nt "$stamp" ]; then
  # --no-compile: Python writes the bytecode of the modules it imports as it imports them,
  # instead of pip compiling every installed module up front (20 s of a 40 s install)
  .venv/bin/python -m pip install -q --no-compile -e ".${extras:+[$extras]}"
  touch "$stamp"
fi
