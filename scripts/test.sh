#!/usr/bin/env bash
# The README's test command: set up .venv (and, as root, Debian's chromium and
# chromium-driver for the browser test) if needed, then run the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh test
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing chromium and chromium-driver (apt) for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
      >/dev/null 2>&1 || echo "warning: apt could not install chromium / chromium-driver"
  fi
fi
exec .venv/bin/python -m pytest -q --durations=10 tests "$@"
