#!/usr/bin/env bash
# The README's main command: set up .venv if needed, then run the main job on the embedded data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
workdir="${1:-runs/embedded}"
shift || true
exec .venv/bin/python -m experiments.run --config=experiments/configs/embedded.py --workdir="$workdir" "$@"
