#!/usr/bin/env bash
# The README's main command: set up .venv if needed, then run the main job on the embedded data.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# Python writes the bytecode of the modules it imports (setup_env.sh installs without it),
# even where the environment says not to (PYTHONDONTWRITEBYTECODE, set in some container
# images): else every process compiles JAX, Flax and the rest from source again, about
# 5 s of each start (9.0 s -> 3.8 s to import the main job on 2 cores)
unset PYTHONDONTWRITEBYTECODE
workdir="${1:-runs/embedded}"
shift || true
exec .venv/bin/python -m experiments.run --config=experiments/configs/embedded.py --workdir="$workdir" "$@"
